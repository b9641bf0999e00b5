import type { BackendName } from '../../shared/kernels/backend.js';
import { availableBackends } from '../../shared/kernels/index.js';

/** The float32 backends that work on this machine: every kernel-level test runs on each. */
export async function testBackends(): Promise<Exclude<BackendName, 'reference'>[]> {
  return (await availableBackends()).filter((n): n is Exclude<BackendName, 'reference'> => n !== 'reference');
}
