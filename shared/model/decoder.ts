import type { AttentionShape, Backend, Buf, RopeFrequencies } from '../kernels/backend.js';
import type { TokenBatch } from './batch.js';
import { hasOBias, hasQkNorm, hasQkvBias, type ModelConfig } from './config.js';
import type { KVCache } from './kv-cache.js';
import { layerPrefix } from './params.js';
import { ropeFrequencies } from './rope.js';
import { scoped } from './scope.js';

/**
 * The decoder's forward and backward passes, written as explicit pairs over the kernel interface
 * (llm.c's shape): `forward` keeps what `backward` needs in a `Tape`, `backward` walks the layers in
 * reverse and returns a gradient for every parameter. No autograd.
 */
export type Params = Map<string, Buf>;

interface LayerTape {
  xIn: Buf;
  y1: Buf;
  rstd1: Buf;
  qPre: Buf | null;
  kPre: Buf | null;
  rstdQ: Buf | null;
  rstdK: Buf | null;
  q: Buf;
  k: Buf;
  v: Buf;
  probs: Buf;
  attnOut: Buf;
  xMid: Buf;
  y2: Buf;
  rstd2: Buf;
  gate: Buf;
  up: Buf;
  h: Buf;
}

/** How a layer's queries see keys and values: the batch's own (training, prefill) or a KV cache's. */
type Attend = (layer: number, q: Buf, k: Buf, v: Buf) => Promise<{ out: Buf; probs: Buf }>;

export interface Tape {
  batch: TokenBatch;
  attn: AttentionShape;
  layers: LayerTape[];
  xFinal: Buf;
  yFinal: Buf;
  rstdFinal: Buf;
}

/** Attention shape of a training/prefill batch: queries and keys are the same positions. */
export function selfAttentionShape(c: ModelConfig, b: TokenBatch): AttentionShape {
  return {
    batch: b.batch,
    tq: b.seqLen,
    tk: b.seqLen,
    heads: c.num_attention_heads,
    kvHeads: c.num_key_value_heads,
    headDim: c.head_dim,
    kValid: b.mask,
    qOffset: new Int32Array(b.batch),
  };
}

export class Decoder {
  readonly qkNorm: boolean;
  readonly qkvBias: boolean;
  readonly oBias: boolean;

  constructor(
    readonly config: ModelConfig,
    readonly backend: Backend,
    public params: Params,
  ) {
    this.qkNorm = hasQkNorm(config);
    this.qkvBias = hasQkvBias(config);
    this.oBias = hasOBias(config);
  }

  /** The RoPE frequencies for a call over `positions` (they vary only under dynamic NTK scaling). */
  ropeFreq(positions: Int32Array): RopeFrequencies {
    return ropeFrequencies(this.config, positions);
  }

  p(name: string): Buf {
    const b = this.params.get(name);
    if (!b) throw new Error(`missing parameter ${name}`);
    return b;
  }

  lmHead(): Buf {
    return this.p(this.config.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  }

  /** y = x @ W^T (+ bias) for W stored [out, in]. */
  async linear(
    x: Buf,
    rows: number,
    weight: string,
    inDim: number,
    outDim: number,
    bias?: string,
  ): Promise<Buf> {
    const be = this.backend;
    const y = await be.matmul(x, this.p(weight), { m: rows, k: inDim, n: outDim, transB: true });
    if (!bias) return y;
    const yb = await be.addBias(y, this.p(bias), rows, outDim);
    be.free(y);
    return yb;
  }

  /** Projects normalised q or k: optional per-head RMSNorm (Qwen3), then RoPE. */
  async prepareQk(
    raw: Buf,
    rows: number,
    heads: number,
    norm: string,
    positions: Int32Array,
  ): Promise<{ out: Buf; pre: Buf | null; rstd: Buf | null }> {
    const c = this.config;
    const be = this.backend;
    if (!this.qkNorm) {
      return {
        out: await be.rope(raw, positions, heads, c.head_dim, this.ropeFreq(positions), false),
        pre: null,
        rstd: null,
      };
    }
    const { y, rstd } = await be.rmsnorm(raw, this.p(norm), rows * heads, c.head_dim, c.rms_norm_eps);
    const out = await be.rope(y, positions, heads, c.head_dim, this.ropeFreq(positions), false);
    be.free(y);
    return { out, pre: raw, rstd };
  }

  /**
   * One decoder layer on `rows` rows: x -> xOut, and the layer's tape (every intermediate the
   * backward pass reads; `tape.xIn` is `x`). The training forward and the KV-cache forward both run
   * it, so the two cannot drift; they differ only in `attend` (the batch's own keys and values, or
   * the cache's) and in what they do with the tape: keep it, or free it at once. Intermediates that
   * nothing reads later are freed here.
   */
  private async layer(
    l: number,
    x: Buf,
    rows: number,
    positions: Int32Array,
    attend: Attend,
  ): Promise<{ tape: LayerTape; xOut: Buf }> {
    const c = this.config;
    const be = this.backend;
    const N = rows;
    const D = c.hidden_size;
    const H = c.num_attention_heads;
    const Hkv = c.num_key_value_heads;
    const hd = c.head_dim;
    const I = c.intermediate_size;
    const p = layerPrefix(l);
    const a = `${p}.self_attn`;
    return scoped(be, async (s) => {
      const { y: y1, rstd: rstd1 } = s.ownAll(
        await be.rmsnorm(x, this.p(`${p}.input_layernorm.weight`), N, D, c.rms_norm_eps),
      );
      const bias = (n: string) => (this.qkvBias ? `${a}.${n}.bias` : undefined);
      const qRaw = s.own(await this.linear(y1, N, `${a}.q_proj.weight`, D, H * hd, bias('q_proj')));
      const kRaw = s.own(await this.linear(y1, N, `${a}.k_proj.weight`, D, Hkv * hd, bias('k_proj')));
      const v = s.own(await this.linear(y1, N, `${a}.v_proj.weight`, D, Hkv * hd, bias('v_proj')));
      const q = s.ownAll(await this.prepareQk(qRaw, N, H, `${a}.q_norm.weight`, positions));
      const k = s.ownAll(await this.prepareQk(kRaw, N, Hkv, `${a}.k_norm.weight`, positions));
      const { out: attnOut, probs } = s.ownAll(await attend(l, q.out, k.out, v));
      const o = s.own(
        await this.linear(
          attnOut,
          N,
          `${a}.o_proj.weight`,
          H * hd,
          D,
          this.oBias ? `${a}.o_proj.bias` : undefined,
        ),
      );
      const xMid = s.own(await be.add(x, o));
      const { y: y2, rstd: rstd2 } = s.ownAll(
        await be.rmsnorm(xMid, this.p(`${p}.post_attention_layernorm.weight`), N, D, c.rms_norm_eps),
      );
      const gate = s.own(await this.linear(y2, N, `${p}.mlp.gate_proj.weight`, D, I));
      const up = s.own(await this.linear(y2, N, `${p}.mlp.up_proj.weight`, D, I));
      const h = s.own(await be.swiglu(gate, up));
      const down = s.own(await this.linear(h, N, `${p}.mlp.down_proj.weight`, I, D));
      const xOut = await be.add(xMid, down);
      const tape: LayerTape = {
        xIn: x,
        y1,
        rstd1,
        qPre: q.pre,
        kPre: k.pre,
        rstdQ: q.rstd,
        rstdK: k.rstd,
        q: q.out,
        k: k.out,
        v,
        probs,
        attnOut,
        xMid,
        y2,
        rstd2,
        gate,
        up,
        h,
      };
      return { tape: s.keepAll(tape), xOut };
    });
  }

  /** Runs every layer on the embedded batch; returns the tape. Logits come from `logits(tape)`. */
  async forward(batch: TokenBatch): Promise<Tape> {
    const c = this.config;
    const be = this.backend;
    const N = batch.batch * batch.seqLen;
    const D = c.hidden_size;
    const attn = selfAttentionShape(c, batch);
    const attend: Attend = (_l, q, k, v) => be.attention(q, k, v, attn);
    let x = await be.embedding(this.p('model.embed_tokens.weight'), batch.ids, D);
    const layers: LayerTape[] = [];
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const { tape, xOut } = await this.layer(l, x, N, batch.positions, attend);
      layers.push(tape);
      x = xOut;
    }
    const { y: yFinal, rstd: rstdFinal } = await be.rmsnorm(
      x,
      this.p('model.norm.weight'),
      N,
      D,
      c.rms_norm_eps,
    );
    return { batch, attn, layers, xFinal: x, yFinal, rstdFinal };
  }

  /** Logits [rows, vocab] of the final hidden states. */
  async logits(tape: Tape): Promise<Buf> {
    const c = this.config;
    const N = tape.batch.batch * tape.batch.seqLen;
    return this.backend.matmul(tape.yFinal, this.lmHead(), {
      m: N,
      k: c.hidden_size,
      n: c.vocab_size,
      transB: true,
    });
  }

  /**
   * Gradients of the loss with respect to every parameter, given dL/dlogits. Frees the tape: each
   * part of it is owned by the scope of the step that reads it last.
   */
  async backward(tape: Tape, dLogits: Buf): Promise<Params> {
    const c = this.config;
    const be = this.backend;
    const N = tape.batch.batch * tape.batch.seqLen;
    const D = c.hidden_size;
    const V = c.vocab_size;
    const H = c.num_attention_heads;
    const Hkv = c.num_key_value_heads;
    const hd = c.head_dim;
    const I = c.intermediate_size;
    const grads: Params = new Map();

    // d(x @ W^T) = dy @ W for the input, dy^T @ x for the weight, column sums for the bias.
    const linearBack = async (
      dy: Buf,
      x: Buf,
      weight: string,
      inDim: number,
      outDim: number,
      bias?: string,
    ) => {
      grads.set(weight, await be.matmul(dy, x, { m: outDim, k: N, n: inDim, transA: true }));
      if (bias) grads.set(bias, await be.sumRows(dy, N, outDim));
      return be.matmul(dy, this.p(weight), { m: N, k: outDim, n: inDim });
    };

    const lmName = c.tie_word_embeddings ? 'lm_head(tied)' : 'lm_head.weight';
    let dx = await scoped(be, async (s) => {
      s.ownAll({ y: tape.yFinal, rstd: tape.rstdFinal, x: tape.xFinal });
      grads.set(lmName, await be.matmul(dLogits, tape.yFinal, { m: V, k: N, n: D, transA: true }));
      const dyFinal = s.own(await be.matmul(dLogits, this.lmHead(), { m: N, k: V, n: D }));
      const fin = await be.rmsnormBackward(
        dyFinal,
        tape.xFinal,
        this.p('model.norm.weight'),
        tape.rstdFinal,
        N,
        D,
      );
      grads.set('model.norm.weight', fin.dw);
      return fin.dx;
    });

    for (let l = c.num_hidden_layers - 1; l >= 0; l--) {
      const t = tape.layers[l];
      const p = layerPrefix(l);
      const a = `${p}.self_attn`;
      // MLP: xOut = xMid + down(swiglu(gate(y2), up(y2)))
      const dOut = dx;
      const dxMid = await scoped(be, async (s) => {
        s.ownAll({ dOut, h: t.h, gate: t.gate, up: t.up, y2: t.y2, rstd2: t.rstd2, xMid: t.xMid });
        const dh = s.own(await linearBack(dOut, t.h, `${p}.mlp.down_proj.weight`, I, D));
        const { dGate, dUp } = s.ownAll(await be.swigluBackward(dh, t.gate, t.up));
        const dy2g = s.own(await linearBack(dGate, t.y2, `${p}.mlp.gate_proj.weight`, D, I));
        const dy2u = s.own(await linearBack(dUp, t.y2, `${p}.mlp.up_proj.weight`, D, I));
        const dy2 = s.own(await be.add(dy2g, dy2u));
        const n2 = await be.rmsnormBackward(
          dy2,
          t.xMid,
          this.p(`${p}.post_attention_layernorm.weight`),
          t.rstd2,
          N,
          D,
        );
        grads.set(`${p}.post_attention_layernorm.weight`, n2.dw);
        return be.add(dOut, s.own(n2.dx));
      });

      // Attention: xMid = xIn + o_proj(attention(rope(norm(q)), rope(norm(k)), v))
      dx = await scoped(be, async (s) => {
        s.ownAll({ dxMid, attnOut: t.attnOut, q: t.q, k: t.k, v: t.v, probs: t.probs });
        s.ownAll({ qPre: t.qPre, kPre: t.kPre, rstdQ: t.rstdQ, rstdK: t.rstdK });
        s.ownAll({ y1: t.y1, rstd1: t.rstd1, xIn: t.xIn });
        const dAttn = s.own(
          await linearBack(
            dxMid,
            t.attnOut,
            `${a}.o_proj.weight`,
            H * hd,
            D,
            this.oBias ? `${a}.o_proj.bias` : undefined,
          ),
        );
        const { dq, dk, dv } = s.ownAll(await be.attentionBackward(dAttn, t.q, t.k, t.v, t.probs, tape.attn));
        const dqRaw = s.own(
          await this.prepareQkBackward(
            dq,
            t.qPre,
            t.rstdQ,
            N,
            H,
            `${a}.q_norm.weight`,
            tape.batch.positions,
            grads,
          ),
        );
        const dkRaw = s.own(
          await this.prepareQkBackward(
            dk,
            t.kPre,
            t.rstdK,
            N,
            Hkv,
            `${a}.k_norm.weight`,
            tape.batch.positions,
            grads,
          ),
        );
        const bias = (n: string) => (this.qkvBias ? `${a}.${n}.bias` : undefined);
        const dyq = s.own(await linearBack(dqRaw, t.y1, `${a}.q_proj.weight`, D, H * hd, bias('q_proj')));
        const dyk = s.own(await linearBack(dkRaw, t.y1, `${a}.k_proj.weight`, D, Hkv * hd, bias('k_proj')));
        const dyv = s.own(await linearBack(dv, t.y1, `${a}.v_proj.weight`, D, Hkv * hd, bias('v_proj')));
        const dyqk = s.own(await be.add(dyq, dyk));
        const dy1 = s.own(await be.add(dyqk, dyv));
        const n1 = await be.rmsnormBackward(dy1, t.xIn, this.p(`${p}.input_layernorm.weight`), t.rstd1, N, D);
        grads.set(`${p}.input_layernorm.weight`, n1.dw);
        return be.add(dxMid, s.own(n1.dx));
      });
    }

    const dEmbed = await scoped(be, async (s) => be.embeddingBackward(s.own(dx), tape.batch.ids, V, D));
    if (c.tie_word_embeddings) {
      const dHead = grads.get(lmName)!;
      grads.delete(lmName);
      grads.set(
        'model.embed_tokens.weight',
        await scoped(be, async (s) => be.add(s.own(dEmbed), s.own(dHead))),
      );
    } else {
      grads.set('model.embed_tokens.weight', dEmbed);
    }
    return grads;
  }

  /**
   * Backward of `prepareQk`: inverse rotation, then the per-head RMSNorm backward when present. The
   * tape's `pre` and `rstd` stay with the caller.
   */
  private async prepareQkBackward(
    dOut: Buf,
    pre: Buf | null,
    rstd: Buf | null,
    rows: number,
    heads: number,
    norm: string,
    positions: Int32Array,
    grads: Params,
  ): Promise<Buf> {
    const c = this.config;
    const be = this.backend;
    const dRot = await be.rope(dOut, positions, heads, c.head_dim, this.ropeFreq(positions), true);
    if (!this.qkNorm || !pre || !rstd) return dRot;
    return scoped(be, async (s) => {
      const { dx, dw } = await be.rmsnormBackward(
        s.own(dRot),
        pre,
        this.p(norm),
        rstd,
        rows * heads,
        c.head_dim,
      );
      grads.set(norm, dw);
      return dx;
    });
  }

  /**
   * Inference forward of `tq` new tokens per sequence written at cache slots [slot, slot + tq): no
   * tape, keys and values appended to the cache, logits returned only for each sequence's last new
   * token ([batch, vocab]), which is all sampling needs.
   */
  async forwardCached(
    ids: Int32Array,
    positions: Int32Array,
    cache: KVCache,
    slot: number,
    tq: number,
  ): Promise<Buf> {
    const c = this.config;
    const be = this.backend;
    const B = cache.batch;
    const N = B * tq;
    const D = c.hidden_size;
    const H = c.num_attention_heads;
    const Hkv = c.num_key_value_heads;
    const hd = c.head_dim;
    const rows = new Int32Array(N);
    for (let b = 0; b < B; b++) for (let t = 0; t < tq; t++) rows[b * tq + t] = b * cache.capacity + slot + t;
    const attn: AttentionShape = {
      batch: B,
      tq,
      tk: cache.capacity,
      heads: H,
      kvHeads: Hkv,
      headDim: hd,
      kValid: cache.valid,
      qOffset: new Int32Array(B).fill(slot),
    };
    // Keys and values of the new tokens go into the cache; queries attend over all of it.
    const attend: Attend = async (l, q, k, v) => {
      await cache.write(l, k, v, rows);
      return be.attention(q, cache.k[l], cache.v[l], attn);
    };
    let x = await be.embedding(this.p('model.embed_tokens.weight'), ids, D);
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const { tape, xOut } = await this.layer(l, x, N, positions, attend);
      this.freeLayerTape(tape);
      x = xOut;
    }
    const last = new Int32Array(B);
    for (let b = 0; b < B; b++) last[b] = b * tq + tq - 1;
    return scoped(be, async (s) => {
      const xLast = s.own(await be.gatherRows(s.own(x), last, D));
      const fin = s.ownAll(await be.rmsnorm(xLast, this.p('model.norm.weight'), B, D, c.rms_norm_eps));
      return be.matmul(fin.y, this.lmHead(), { m: B, k: D, n: c.vocab_size, transB: true });
    });
  }

  /** Frees every buffer of a layer's tape (its input included). */
  private freeLayerTape(t: LayerTape): void {
    for (const b of Object.values(t)) if (b) this.backend.free(b);
  }

  /** Frees a tape that will not be differentiated (evaluation). */
  releaseTape(tape: Tape): void {
    const be = this.backend;
    for (const t of tape.layers) this.freeLayerTape(t);
    be.free(tape.xFinal);
    be.free(tape.yFinal);
    be.free(tape.rstdFinal);
  }
}
