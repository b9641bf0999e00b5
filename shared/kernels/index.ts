/**
 * Backend selection. `auto` prefers a hardware WebGPU adapter, then the WebAssembly backend; a software
 * WebGPU adapter (Mesa llvmpipe through Dawn's OpenGL ES backend) is listed by `availableBackends` so
 * tests cover the webgpu code path, but `auto` never trains on it. `cpu` is the WebAssembly backend
 * under its older name.
 */
import { existsSync, readdirSync } from 'node:fs';
import type { Backend, BackendName } from './backend.js';
import { ReferenceBackend } from './reference.js';
import { WasmBackend } from './wasm/backend.js';
import { WebgpuBackend, type WebgpuOptions } from './webgpu/backend.js';
import { setupWebgpu } from './webgpu/setup.js';

export type { Backend, BackendName } from './backend.js';
export { WasmBackend } from './wasm/backend.js';
export { WebgpuBackend } from './webgpu/backend.js';
export { setupWebgpu } from './webgpu/setup.js';

export type BackendChoice = BackendName | 'auto';

export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'reference', 'cpu', 'webasm', 'webgpu'];

/**
 * Device nodes a hardware GPU shows on Linux (NVIDIA, DRM render nodes for AMD/Intel/Mesa, WSL's
 * D3D12 bridge). Without any, Dawn finds nothing but prints its driver-loader warnings while
 * looking, so `auto` does not ask it.
 */
function mayHaveGpu(): boolean {
  if (process.platform !== 'linux') return true;
  if (existsSync('/dev/nvidia0') || existsSync('/dev/dxg')) return true;
  try {
    return readdirSync('/dev/dri').some((f) => f.startsWith('renderD'));
  } catch {
    return false;
  }
}

/** Settings of one backend, from the run config (`run.webgpu_*`); unset ones take the backend's default. */
export interface BackendOptions {
  webgpu?: WebgpuOptions;
}

export async function createBackend(
  name: BackendChoice,
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  options: BackendOptions = {},
): Promise<Backend> {
  switch (name) {
    case 'reference':
      return new ReferenceBackend();
    case 'cpu':
    case 'webasm':
      return WasmBackend.create(name);
    case 'webgpu':
      return WebgpuBackend.create(options.webgpu);
    case 'auto': {
      if (!mayHaveGpu()) {
        log('no GPU adapter: using webasm');
        return WasmBackend.create('webasm');
      }
      const gpu = await setupWebgpu();
      if (gpu.ok && !gpu.software) return WebgpuBackend.create(options.webgpu);
      log(`no hardware GPU adapter (${gpu.ok ? 'software renderer only' : gpu.reason}): using webasm`);
      return WasmBackend.create('webasm');
    }
    default:
      throw new Error(`unknown backend ${String(name)}; expected one of ${BACKEND_CHOICES.join(', ')}`);
  }
}

/**
 * The backends that work on this machine, software WebGPU included: one name per implementation
 * (`cpu` is `webasm` under another name, so it is not listed).
 */
export async function availableBackends(): Promise<BackendName[]> {
  const names: BackendName[] = ['reference'];
  if (WasmBackend.unavailableReason() === '') names.push('webasm');
  if ((await setupWebgpu()).ok) names.push('webgpu');
  return names;
}
