import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SERVICE_LIMITS } from '../config/service-limits.js';
import type { TrainConfig } from '../config/train-config.js';
import { scoreStream } from '../curriculum/scoring.js';
import { readInts, tokenStreams } from '../data/token-streams.js';
import type { Tokenizer } from '../data/tokenizer.js';
import type { Backend } from '../kernels/backend.js';
import { Decoder } from '../model/decoder.js';
import { uploadParams } from '../model/weights.js';
import { type KeyPosition, keyPositions } from '../rl/key-positions.js';
import type { Progress } from '../util/progress.js';
import type { ScorerApi } from './interfaces.js';
import { openCheckpoint, openTokenizer } from './open-files.js';
import type { RunRef } from './run-context.js';

export type Split = 'train' | 'held_out';

export interface ScoreOptions {
  progress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/**
 * The tokenizer / entropy scorer (spec section 3): tokenizes a run's corpora, scores every position
 * by the proxy checkpoint's top-k entropy, and returns the key positions of a split. Token streams
 * and entropies are cached under the run's out_dir, keyed by what produced them, so the embedded
 * run, a restarted scorer service and `rmt eval` all reuse one scoring.
 */
export class Scorer implements ScorerApi {
  private readonly streams = new Map<string, ReturnType<typeof tokenStreams>>();

  constructor(private readonly backend: Backend) {}

  async keyPositions(run: RunRef, split: Split, o: ScoreOptions = {}): Promise<KeyPosition[]> {
    const { cfg } = run;
    const log = o.log ?? (() => {});
    const out = resolve(cfg.run.out_dir);
    const tokenizer = await openTokenizer(cfg.model.init_from, 'model.init_from');
    const streams = this.tokenStreams(cfg, tokenizer, out, log);
    const [tokens, answers] =
      split === 'train'
        ? [
            streams.train.subarray(0, cfg.data.rl_tokens),
            streams.trainAnswers.subarray(0, cfg.data.rl_tokens),
          ]
        : [
            streams.heldOut.subarray(0, cfg.data.eval_tokens),
            streams.heldOutAnswers.subarray(0, cfg.data.eval_tokens),
          ];
    const entropy = await this.entropies(cfg, out, split, tokens, o);
    return keyPositions(
      tokens,
      entropy,
      {
        context_len: cfg.data.context_len,
        continuation_len: cfg.data.continuation_len,
        excluded: [tokenizer.eosId, tokenizer.thinkId, tokenizer.endThinkId],
        allowed: cfg.data.positions === 'answers' ? answers : undefined,
      },
      tokenizer.eosId,
    );
  }

  private tokenStreams(cfg: TrainConfig, tokenizer: Tokenizer, out: string, log: (l: string) => void) {
    const key = JSON.stringify([out, cfg.data, cfg.run.seed, cfg.model.init_from]);
    let s = this.streams.get(key);
    if (!s) {
      s = tokenStreams(
        {
          corpora: cfg.data.corpora,
          max_chars_per_corpus: cfg.data.max_chars_per_corpus,
          held_out_fraction: cfg.data.held_out_fraction,
          seed: cfg.run.seed,
          math: cfg.data.math,
        },
        tokenizer,
        join(out, 'data'),
        log,
      );
      this.streams.set(key, s);
      for (const k of this.streams.keys()) {
        if (this.streams.size <= SERVICE_LIMITS.token_streams_kept) break;
        this.streams.delete(k);
      }
    }
    return s;
  }

  private async entropies(
    cfg: TrainConfig,
    out: string,
    split: Split,
    tokens: Int32Array,
    o: ScoreOptions,
  ): Promise<Float32Array> {
    const proxyDir = cfg.model.proxy ?? cfg.model.init_from;
    const name = split === 'train' ? 'train' : 'held-out';
    const path = join(out, 'data', `entropy-${name}.bin`);
    const key = JSON.stringify({
      proxy: resolve(proxyDir),
      n: tokens.length,
      w: cfg.data.score_window,
      k: cfg.curriculum.k,
    });
    if (existsSync(path) && existsSync(`${path}.key`) && readFileSync(`${path}.key`, 'utf8') === key) {
      return new Float32Array(readInts(path).buffer);
    }
    const proxy = openCheckpoint(proxyDir, cfg.model.proxy === null ? 'model.init_from' : 'model.proxy');
    const model = new Decoder(proxy.config, this.backend, uploadParams(this.backend, proxy.params));
    const total = Math.ceil(tokens.length / Math.max(1, Math.floor(cfg.data.score_window / 2)));
    const progress: Progress = { update: (done) => o.progress?.(done, total), stop: () => {} };
    try {
      const e = await scoreStream(model, tokens, {
        window: cfg.data.score_window,
        k: cfg.curriculum.k,
        batch: 8,
        progress,
        signal: o.signal,
      });
      mkdirSync(join(out, 'data'), { recursive: true });
      writeFileSync(path, e);
      writeFileSync(`${path}.key`, key);
      return e;
    } finally {
      for (const b of model.params.values()) this.backend.free(b);
    }
  }
}
