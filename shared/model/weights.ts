import type { Backend } from '../kernels/backend.js';
import type { Params } from './decoder.js';

/** Host weights (float32, by Hugging Face name) onto a backend. */
export function uploadParams(be: Backend, host: Map<string, ArrayLike<number>>): Params {
  return new Map([...host].map(([name, data]) => [name, be.upload(data)]));
}

/** Backend buffers back to float32 host arrays, e.g. for a checkpoint. */
export async function downloadParams(be: Backend, params: Params): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, buf] of params) out.set(name, Float32Array.from(await be.read(buf)));
  return out;
}
