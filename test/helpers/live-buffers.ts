import type { Backend, Buf } from '../../shared/kernels/backend.js';

/** Backend methods that return one new buffer. */
const RETURNS_BUF = new Set([
  'upload',
  'zeros',
  'matmul',
  'add',
  'addBias',
  'sumRows',
  'embedding',
  'embeddingBackward',
  'rope',
  'swiglu',
  'scatterRows',
  'gatherRows',
]);

/** Backend methods that return a record of new buffers ({ y, rstd }, { out, probs }, ...). */
const RETURNS_RECORD = new Set([
  'rmsnorm',
  'rmsnormBackward',
  'attention',
  'attentionBackward',
  'swigluBackward',
  'crossEntropy',
  'adamw',
]);

/**
 * A view of a backend that counts the buffers made through it and not yet freed. It sees the
 * model's bookkeeping, not the device: on the CPU backends free() is a no-op, so a leak shows only
 * here, while on webgpu the same leak is device memory that is never returned.
 */
export function countLiveBuffers(inner: Backend): { backend: Backend; live: () => number } {
  const alive = new Set<Buf>();
  const track = (name: string, result: unknown) => {
    if (RETURNS_BUF.has(name)) alive.add(result as Buf);
    else if (RETURNS_RECORD.has(name)) for (const b of Object.values(result as object)) alive.add(b as Buf);
    return result;
  };
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      if (prop === 'free') {
        return (b: Buf) => {
          alive.delete(b);
          target.free(b);
        };
      }
      return (...args: unknown[]) => {
        const r = value.apply(target, args);
        return r instanceof Promise ? r.then((x) => track(prop, x)) : track(prop, r);
      };
    },
  });
  return { backend, live: () => alive.size };
}
