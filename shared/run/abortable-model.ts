import type { Decoder } from '../model/decoder.js';

/**
 * The model as seen by one job: every forward pass first checks `signal`, so a cancelled call (or
 * one past its deadline) stops generating within one decode step instead of running to the hard cap
 * while its worker stays busy. Reads fall through to the model itself (same parameters, same cache
 * layouts); only the forward passes are guarded.
 */
export function stopOnAbort(model: Decoder, signal: AbortSignal | undefined): Decoder {
  if (!signal) return model;
  const guarded = Object.create(model) as Decoder;
  for (const name of ['forward', 'forwardCached'] as const) {
    const f = model[name] as (...a: unknown[]) => unknown;
    if (typeof f !== 'function') continue;
    Object.defineProperty(guarded, name, {
      value: (...args: unknown[]) => {
        signal.throwIfAborted();
        return f.apply(model, args);
      },
    });
  }
  return guarded;
}
