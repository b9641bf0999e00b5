import type { Backend, Buf } from '../kernels/backend.js';

/**
 * Buffer lifetimes by block instead of free lists kept beside the code. Each buffer a block makes is
 * registered as it is made (`own`); what the block hands out is taken back (`keep`); the rest is
 * freed when the block ends, on success or error. A free list written separately from the code that
 * allocates drifts from it (a buffer added to one path and not to the list leaks on webgpu); here an
 * allocation and its release are one expression.
 */
export class Scope {
  private readonly owned = new Set<Buf>();

  constructor(private readonly backend: Pick<Backend, 'free'>) {}

  /** Registers a buffer made in this scope and returns it. */
  own<T extends Buf | null>(b: T): T {
    if (b) this.owned.add(b);
    return b;
  }

  /** Registers every buffer of a kernel's result record ({ y, rstd }, { out, probs }, ...). */
  ownAll<T extends { [K in keyof T]: Buf | null }>(r: T): T {
    for (const b of Object.values(r) as (Buf | null)[]) this.own(b);
    return r;
  }

  /** Takes a buffer out of the scope: the caller owns it from here on. */
  keep<T extends Buf | null>(b: T): T {
    if (b) this.owned.delete(b);
    return b;
  }

  /** Takes every buffer of a record out of the scope. */
  keepAll<T extends { [K in keyof T]: Buf | null }>(r: T): T {
    for (const b of Object.values(r) as (Buf | null)[]) this.keep(b);
    return r;
  }

  /** Frees every buffer still owned. */
  close(): void {
    for (const b of this.owned) this.backend.free(b);
    this.owned.clear();
  }
}

/** Runs `fn` with a fresh scope and frees what it still owns when `fn` returns or throws. */
export async function scoped<T>(backend: Pick<Backend, 'free'>, fn: (s: Scope) => Promise<T>): Promise<T> {
  const s = new Scope(backend);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}
