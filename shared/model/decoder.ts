import type { AttentionShape, Backend, Buf, RopeFrequencies } from '../kernels/backend.js';
import type { TokenBatch } from './batch.js';
import { hasOBias, hasQkNorm, hasQkvBias, type ModelConfig } from './config.js';
import type { KVCache } from './kv-cache.js';
import { layerPrefix } from './params.js';
import { ropeFrequencies } from './rope.js';

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

  /** Runs every layer on the embedded batch; returns the tape. Logits come from `logits(tape)`. */
  async forward(batch: TokenBatch): Promise<Tape> {
    const c = this.config;
    const be = this.backend;
    const N = batch.batch * batch.seqLen;
    const D = c.hidden_size;
    const H = c.num_attention_heads;
    const Hkv = c.num_key_value_heads;
    const hd = c.head_dim;
    const I = c.intermediate_size;
    const attn = selfAttentionShape(c, batch);
    let x = await be.embedding(this.p('model.embed_tokens.weight'), batch.ids, D);
    const layers: LayerTape[] = [];
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = layerPrefix(l);
      const a = `${p}.self_attn`;
      const { y: y1, rstd: rstd1 } = await be.rmsnorm(
        x,
        this.p(`${p}.input_layernorm.weight`),
        N,
        D,
        c.rms_norm_eps,
      );
      const bias = (n: string) => (this.qkvBias ? `${a}.${n}.bias` : undefined);
      const qRaw = await this.linear(y1, N, `${a}.q_proj.weight`, D, H * hd, bias('q_proj'));
      const kRaw = await this.linear(y1, N, `${a}.k_proj.weight`, D, Hkv * hd, bias('k_proj'));
      const v = await this.linear(y1, N, `${a}.v_proj.weight`, D, Hkv * hd, bias('v_proj'));
      const q = await this.prepareQk(qRaw, N, H, `${a}.q_norm.weight`, batch.positions);
      const k = await this.prepareQk(kRaw, N, Hkv, `${a}.k_norm.weight`, batch.positions);
      if (!this.qkNorm) {
        be.free(qRaw);
        be.free(kRaw);
      }
      const { out: attnOut, probs } = await be.attention(q.out, k.out, v, attn);
      const o = await this.linear(
        attnOut,
        N,
        `${a}.o_proj.weight`,
        H * hd,
        D,
        this.oBias ? `${a}.o_proj.bias` : undefined,
      );
      const xMid = await be.add(x, o);
      be.free(o);
      const { y: y2, rstd: rstd2 } = await be.rmsnorm(
        xMid,
        this.p(`${p}.post_attention_layernorm.weight`),
        N,
        D,
        c.rms_norm_eps,
      );
      const gate = await this.linear(y2, N, `${p}.mlp.gate_proj.weight`, D, I);
      const up = await this.linear(y2, N, `${p}.mlp.up_proj.weight`, D, I);
      const h = await be.swiglu(gate, up);
      const down = await this.linear(h, N, `${p}.mlp.down_proj.weight`, I, D);
      const xOut = await be.add(xMid, down);
      be.free(down);
      layers.push({
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
      });
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
   * Gradients of the loss with respect to every parameter, given dL/dlogits. Frees the tape.
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
    const free = (...bs: (Buf | null)[]) => {
      for (const b of bs) if (b) be.free(b);
    };

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
    grads.set(lmName, await be.matmul(dLogits, tape.yFinal, { m: V, k: N, n: D, transA: true }));
    const dyFinal = await be.matmul(dLogits, this.lmHead(), { m: N, k: V, n: D });
    const fin = await be.rmsnormBackward(
      dyFinal,
      tape.xFinal,
      this.p('model.norm.weight'),
      tape.rstdFinal,
      N,
      D,
    );
    grads.set('model.norm.weight', fin.dw);
    free(dyFinal, tape.yFinal, tape.rstdFinal, tape.xFinal);
    let dx = fin.dx;

    for (let l = c.num_hidden_layers - 1; l >= 0; l--) {
      const t = tape.layers[l];
      const p = layerPrefix(l);
      const a = `${p}.self_attn`;
      // MLP: xOut = xMid + down(swiglu(gate(y2), up(y2)))
      const dh = await linearBack(dx, t.h, `${p}.mlp.down_proj.weight`, I, D);
      const { dGate, dUp } = await be.swigluBackward(dh, t.gate, t.up);
      const dy2g = await linearBack(dGate, t.y2, `${p}.mlp.gate_proj.weight`, D, I);
      const dy2u = await linearBack(dUp, t.y2, `${p}.mlp.up_proj.weight`, D, I);
      const dy2 = await be.add(dy2g, dy2u);
      const n2 = await be.rmsnormBackward(
        dy2,
        t.xMid,
        this.p(`${p}.post_attention_layernorm.weight`),
        t.rstd2,
        N,
        D,
      );
      grads.set(`${p}.post_attention_layernorm.weight`, n2.dw);
      const dxMid = await be.add(dx, n2.dx);
      free(dh, dGate, dUp, dy2g, dy2u, dy2, n2.dx, dx, t.h, t.gate, t.up, t.y2, t.rstd2, t.xMid);

      // Attention: xMid = xIn + o_proj(attention(rope(norm(q)), rope(norm(k)), v))
      const dAttn = await linearBack(
        dxMid,
        t.attnOut,
        `${a}.o_proj.weight`,
        H * hd,
        D,
        this.oBias ? `${a}.o_proj.bias` : undefined,
      );
      const { dq, dk, dv } = await be.attentionBackward(dAttn, t.q, t.k, t.v, t.probs, tape.attn);
      free(dAttn, t.attnOut, t.q, t.k, t.probs);
      const dqRaw = await this.prepareQkBackward(
        dq,
        t.qPre,
        t.rstdQ,
        N,
        H,
        `${a}.q_norm.weight`,
        tape.batch.positions,
        grads,
      );
      const dkRaw = await this.prepareQkBackward(
        dk,
        t.kPre,
        t.rstdK,
        N,
        Hkv,
        `${a}.k_norm.weight`,
        tape.batch.positions,
        grads,
      );
      const bias = (n: string) => (this.qkvBias ? `${a}.${n}.bias` : undefined);
      const dyq = await linearBack(dqRaw, t.y1, `${a}.q_proj.weight`, D, H * hd, bias('q_proj'));
      const dyk = await linearBack(dkRaw, t.y1, `${a}.k_proj.weight`, D, Hkv * hd, bias('k_proj'));
      const dyv = await linearBack(dv, t.y1, `${a}.v_proj.weight`, D, Hkv * hd, bias('v_proj'));
      const dyqk = await be.add(dyq, dyk);
      const dy1 = await be.add(dyqk, dyv);
      const n1 = await be.rmsnormBackward(dy1, t.xIn, this.p(`${p}.input_layernorm.weight`), t.rstd1, N, D);
      grads.set(`${p}.input_layernorm.weight`, n1.dw);
      dx = await be.add(dxMid, n1.dx);
      free(dq, dk, dv, dqRaw, dkRaw, dyq, dyk, dyv, dyqk, dy1, n1.dx, dxMid, t.y1, t.rstd1, t.xIn, t.v);
    }

    const dEmbed = await be.embeddingBackward(dx, tape.batch.ids, V, D);
    free(dx);
    if (c.tie_word_embeddings) {
      const dHead = grads.get(lmName)!;
      grads.set('model.embed_tokens.weight', await be.add(dEmbed, dHead));
      grads.delete(lmName);
      free(dEmbed, dHead);
    } else {
      grads.set('model.embed_tokens.weight', dEmbed);
    }
    return grads;
  }

  /** Backward of `prepareQk`: inverse rotation, then the per-head RMSNorm backward when present. */
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
    const { dx, dw } = await be.rmsnormBackward(dRot, pre, this.p(norm), rstd, rows * heads, c.head_dim);
    grads.set(norm, dw);
    be.free(dRot);
    be.free(pre);
    be.free(rstd);
    return dx;
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
    const I = c.intermediate_size;
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
    let x = await be.embedding(this.p('model.embed_tokens.weight'), ids, D);
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = layerPrefix(l);
      const a = `${p}.self_attn`;
      const n1 = await be.rmsnorm(x, this.p(`${p}.input_layernorm.weight`), N, D, c.rms_norm_eps);
      const bias = (n: string) => (this.qkvBias ? `${a}.${n}.bias` : undefined);
      const qRaw = await this.linear(n1.y, N, `${a}.q_proj.weight`, D, H * hd, bias('q_proj'));
      const kRaw = await this.linear(n1.y, N, `${a}.k_proj.weight`, D, Hkv * hd, bias('k_proj'));
      const v = await this.linear(n1.y, N, `${a}.v_proj.weight`, D, Hkv * hd, bias('v_proj'));
      const q = await this.prepareQk(qRaw, N, H, `${a}.q_norm.weight`, positions);
      const k = await this.prepareQk(kRaw, N, Hkv, `${a}.k_norm.weight`, positions);
      await cache.write(l, k.out, v, rows);
      const { out, probs } = await be.attention(q.out, cache.k[l], cache.v[l], attn);
      const o = await this.linear(
        out,
        N,
        `${a}.o_proj.weight`,
        H * hd,
        D,
        this.oBias ? `${a}.o_proj.bias` : undefined,
      );
      const xMid = await be.add(x, o);
      const n2 = await be.rmsnorm(xMid, this.p(`${p}.post_attention_layernorm.weight`), N, D, c.rms_norm_eps);
      const gate = await this.linear(n2.y, N, `${p}.mlp.gate_proj.weight`, D, I);
      const up = await this.linear(n2.y, N, `${p}.mlp.up_proj.weight`, D, I);
      const h = await be.swiglu(gate, up);
      const down = await this.linear(h, N, `${p}.mlp.down_proj.weight`, I, D);
      const xOut = await be.add(xMid, down);
      for (const b of [
        x,
        n1.y,
        n1.rstd,
        qRaw,
        kRaw,
        v,
        q.out,
        k.out,
        out,
        probs,
        o,
        xMid,
        n2.y,
        n2.rstd,
        gate,
        up,
        h,
        down,
      ]) {
        be.free(b);
      }
      x = xOut;
    }
    const last = new Int32Array(B);
    for (let b = 0; b < B; b++) last[b] = b * tq + tq - 1;
    const xLast = await be.gatherRows(x, last, D);
    be.free(x);
    const fin = await be.rmsnorm(xLast, this.p('model.norm.weight'), B, D, c.rms_norm_eps);
    const logits = await be.matmul(fin.y, this.lmHead(), { m: B, k: D, n: c.vocab_size, transB: true });
    for (const b of [xLast, fin.y, fin.rstd]) be.free(b);
    return logits;
  }

  /** Frees a tape that will not be differentiated (evaluation). */
  releaseTape(tape: Tape): void {
    const be = this.backend;
    for (const t of tape.layers) {
      for (const b of Object.values(t)) if (b) be.free(b as Buf);
    }
    be.free(tape.xFinal);
    be.free(tape.yFinal);
    be.free(tape.rstdFinal);
  }
}
