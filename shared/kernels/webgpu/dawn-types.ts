/**
 * The part of Dawn's GPUDevice and GPUBuffer the hand-written WGSL kernels use, typed structurally
 * (the `webgpu` package ships no types of its own for the objects gpu.js hands over).
 */
export interface DawnBuffer {
  size: number;
  destroy(): void;
  mapAsync(mode: number): Promise<void>;
  getMappedRange(): ArrayBuffer;
  unmap(): void;
}

export interface DawnDevice {
  queue: {
    writeBuffer(b: object, offset: number, data: ArrayBuffer | ArrayBufferView): void;
    submit(c: object[]): void;
  };
  limits: { maxComputeWorkgroupsPerDimension: number; maxStorageBufferBindingSize: number };
  createBuffer(d: { size: number; usage: number }): DawnBuffer;
  createShaderModule(d: { code: string }): object;
  createBindGroupLayout(d: { entries: unknown[] }): object;
  createPipelineLayout(d: { bindGroupLayouts: object[] }): object;
  createComputePipeline(d: { layout: object; compute: { module: object; entryPoint: string } }): object;
  createBindGroup(d: { layout: object; entries: unknown[] }): object;
  createCommandEncoder(): {
    beginComputePass(): {
      setPipeline(p: object): void;
      setBindGroup(i: number, g: object, offsets?: number[]): void;
      dispatchWorkgroups(x: number, y?: number, z?: number): void;
      end(): void;
    };
    copyBufferToBuffer(s: object, so: number, d: object, dO: number, n: number): void;
    finish(): object;
  };
}
