import type { Backend, Buf } from '../kernels/backend.js';
import type { ModelConfig } from './config.js';

/**
 * Keys and values of every layer for a batch of sequences, [batch, capacity, kvHeads, headDim] per
 * layer, on the backend. Slot j of sequence b is attended to only once `valid[b*capacity + j]` is set,
 * so sequences of different lengths share one cache (left-padded prompts leave their first slots
 * invalid).
 */
export class KVCache {
  readonly k: Buf[];
  readonly v: Buf[];
  readonly valid: Uint8Array;
  private readonly rowDim: number;

  constructor(
    readonly backend: Backend,
    config: ModelConfig,
    readonly batch: number,
    readonly capacity: number,
  ) {
    this.rowDim = config.num_key_value_heads * config.head_dim;
    const n = batch * capacity * this.rowDim;
    this.k = Array.from({ length: config.num_hidden_layers }, () => backend.zeros(n));
    this.v = Array.from({ length: config.num_hidden_layers }, () => backend.zeros(n));
    this.valid = new Uint8Array(batch * capacity);
  }

  /** Writes rows of keys/values ([rows.length, kvHeads*headDim]) into the cache rows given. */
  async write(layer: number, k: Buf, v: Buf, rows: Int32Array): Promise<void> {
    const be = this.backend;
    if (be.writeRows) {
      // in place where the backend can: a copy of the whole cache per token is what costs
      await be.writeRows(this.k[layer], k, rows, this.rowDim);
      await be.writeRows(this.v[layer], v, rows, this.rowDim);
      return;
    }
    const nk = await be.scatterRows(this.k[layer], k, rows, this.rowDim);
    const nv = await be.scatterRows(this.v[layer], v, rows, this.rowDim);
    be.free(this.k[layer]);
    be.free(this.v[layer]);
    this.k[layer] = nk;
    this.v[layer] = nv;
  }

  /** Marks slots as attendable (before the forward that writes them, so a token sees itself). */
  markValid(b: number, slot: number, isValid: boolean): void {
    this.valid[b * this.capacity + slot] = isValid ? 1 : 0;
  }

  free(): void {
    for (const b of [...this.k, ...this.v]) this.backend.free(b);
  }
}
