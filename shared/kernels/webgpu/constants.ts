/**
 * WebGPU's numeric flags (fixed by the WebGPU specification), for the code that talks to Dawn's device
 * directly: buffer usages, map modes and shader stages.
 */

/** GPUBufferUsage / GPUMapMode bits. MAP_READ is also GPUMapMode.READ, MAP_WRITE GPUMapMode.WRITE. */
export const MAP_READ = 0x0001;
export const MAP_WRITE = 0x0002;
export const COPY_SRC = 0x0004;
export const COPY_DST = 0x0008;
export const UNIFORM = 0x0040;
export const STORAGE = 0x0080;

/** GPUShaderStage.COMPUTE. */
export const COMPUTE = 0x4;
