/**
 * Backend selection. `auto` prefers a hardware WebGPU adapter, then WebAssembly, then plain JavaScript;
 * a software WebGPU adapter (Mesa llvmpipe through Dawn's OpenGL ES backend) is listed by
 * `availableBackends` so tests cover the webgpu code path, but `auto` never trains on it.
 */
import type { Backend, BackendName } from './backend.js';
import { GpujsBackend, isWebAssemblySupported } from './gpujs/backend.js';
import { ReferenceBackend } from './reference.js';
import { setupWebgpu } from './webgpu-setup.js';

export type { Backend, BackendName } from './backend.js';
export { setupWebgpu } from './webgpu-setup.js';

export type BackendChoice = BackendName | 'auto';

export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'reference', 'cpu', 'webasm', 'webgpu'];

export async function createBackend(name: BackendChoice): Promise<Backend> {
  switch (name) {
    case 'reference':
      return new ReferenceBackend();
    case 'cpu':
    case 'webasm':
    case 'webgpu':
      return GpujsBackend.create(name);
    case 'auto': {
      const gpu = await setupWebgpu();
      if (gpu.ok && !gpu.software) return GpujsBackend.create('webgpu');
      return GpujsBackend.create(isWebAssemblySupported() ? 'webasm' : 'cpu');
    }
    default:
      throw new Error(`unknown backend ${String(name)}; expected one of ${BACKEND_CHOICES.join(', ')}`);
  }
}

/** The backends that work on this machine, software WebGPU included. */
export async function availableBackends(): Promise<BackendName[]> {
  const names: BackendName[] = ['reference', 'cpu'];
  if (isWebAssemblySupported()) names.push('webasm');
  if ((await setupWebgpu()).ok) names.push('webgpu');
  return names;
}
