import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { dataRoot } from '../config/data-sources.js';
import { SERVICE_LIMITS } from '../config/service-limits.js';
import type { TrainConfig } from '../config/train-config.js';
import { scoreStream } from '../curriculum/scoring.js';
import { readSourceStreams, sourceStreams } from '../data/source-streams.js';
import { readInts, tokenStreams } from '../data/token-streams.js';
import type { Tokenizer } from '../data/tokenizer.js';
import type { Backend } from '../kernels/backend.js';
import { checkProxyTokenizer, checkpointDigest } from '../model/checkpoint-digest.js';
import { parseModelConfig } from '../model/config.js';
import { Decoder } from '../model/decoder.js';
import { uploadParams } from '../model/weights.js';
import { type KeyPosition, keyPositions } from '../rl/key-positions.js';
import { makePromptFormat } from '../rl/prompt-format.js';
import type { Progress } from '../util/progress.js';
import type { ScorerApi } from './interfaces.js';
import { openCheckpoint, openTokenizer } from './open-files.js';
import { RequestError } from './request-error.js';
import type { RunRef } from './run-context.js';

export type Split = 'train' | 'held_out';

export interface ScoreOptions {
  progress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/**
 * The tokenizer / entropy scorer (docs/method.md section 4): tokenizes a run's corpora, scores every position
 * by the proxy checkpoint's top-k entropy, and returns the key positions of a split. Token streams
 * and entropies are cached under the run's out_dir, keyed by what produced them, so the embedded
 * run, a restarted scorer service and `rmt eval` all reuse one scoring.
 */
export class Scorer implements ScorerApi {
  private readonly streams = new Map<string, ReturnType<typeof readSourceStreams>>();

  constructor(private readonly backend: Backend) {}

  async keyPositions(run: RunRef, split: Split, o: ScoreOptions = {}): Promise<KeyPosition[]> {
    const { cfg } = run;
    const log = o.log ?? (() => {});
    const out = resolve(cfg.run.out_dir);
    const tokenizer = await openTokenizer(cfg.model.init_from, 'model.init_from');
    const streams =
      cfg.data.sources.length > 0
        ? await this.sourceStreams(cfg, tokenizer, out, log)
        : this.tokenStreams(cfg, tokenizer, out, log);
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
    const entropy = await this.entropies(cfg, tokenizer, out, split, tokens, o);
    const positions = keyPositions(
      tokens,
      entropy,
      {
        context_len: cfg.data.context_len,
        max_context: cfg.data.max_context,
        continuation_len: cfg.data.continuation_len,
        excluded: [tokenizer.eosId, tokenizer.thinkId, tokenizer.endThinkId],
        allowed: cfg.data.positions === 'answers' ? answers : undefined,
      },
      tokenizer.eosId,
    );
    checkPromptsFit(cfg, tokenizer, positions);
    return positions;
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

  /** The user's sources: only the prefixes that are scored are read back from the stream files. */
  private async sourceStreams(cfg: TrainConfig, tokenizer: Tokenizer, out: string, log: (l: string) => void) {
    const key = JSON.stringify([out, cfg.data, cfg.run.seed, cfg.model.init_from]);
    let s = this.streams.get(key);
    if (!s) {
      const files = await sourceStreams(
        {
          sources: cfg.data.sources,
          eval_sources: cfg.data.eval_sources,
          root: dataRoot(cfg.data),
          held_out_fraction: cfg.data.held_out_fraction,
          seed: cfg.run.seed,
          // Only the scored prefixes are used: a large corpus is read no further than they need.
          stop_after: { train: cfg.data.rl_tokens, held_out: cfg.data.eval_tokens },
          max_document_bytes: cfg.data.max_document_bytes,
          max_chars_per_corpus: cfg.data.max_chars_per_corpus,
          math: cfg.data.math,
        },
        tokenizer,
        join(out, 'data'),
        log,
      );
      s = readSourceStreams(files, cfg.data.rl_tokens, cfg.data.eval_tokens);
      this.streams.set(key, s);
    }
    return s;
  }

  /**
   * Top-k entropies of `tokens` under the proxy, cached in the run folder under a key made of what
   * they depend on: the tokens themselves, the tokenizer, the proxy's weights and config, and the
   * scoring settings. A new corpus or proxy in the same run folder is scored afresh.
   */
  private async entropies(
    cfg: TrainConfig,
    tokenizer: Tokenizer,
    out: string,
    split: Split,
    tokens: Int32Array,
    o: ScoreOptions,
  ): Promise<Float32Array> {
    const proxyDir = cfg.model.proxy ?? cfg.model.init_from;
    checkProxyTokenizer(proxyDir, tokenizer);
    const name = split === 'train' ? 'train' : 'held-out';
    const path = join(out, 'data', `entropy-${name}.bin`);
    const key = JSON.stringify({
      tokens: createHash('sha256')
        .update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength))
        .digest('hex'),
      n: tokens.length,
      tokenizer: tokenizer.fingerprint,
      proxy: await checkpointDigest(proxyDir),
      w: cfg.data.score_window,
      k: cfg.curriculum.k,
      // Entropies over the tokenizer's ids only (padded rows never enter the top k); caches written
      // before that counted every row, so the key changes.
      usable: tokenizer.vocabSize,
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
        usable: tokenizer.vocabSize,
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

/**
 * The longest context's prompt plus the reasoning cap must fit the policy's position range; refused
 * here, before any training, rather than by the first generation that meets such a position.
 */
function checkPromptsFit(cfg: TrainConfig, tokenizer: Tokenizer, positions: readonly KeyPosition[]): void {
  if (positions.length === 0) return;
  const longest = positions.reduce((a, p) => (p.context.length > a.context.length ? p : a));
  const configPath = join(cfg.model.init_from, 'config.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(configPath, 'utf8'));
  } catch {
    // The parser's message would quote the file.
    throw new RequestError(
      'model.init_from: config.json is missing or not valid JSON',
      'precondition',
      'model.init_from',
    );
  }
  const limit = parseModelConfig(raw, configPath).max_position_embeddings;
  const prompt = makePromptFormat(tokenizer, cfg.prompt).buildPrompt(
    longest.context,
    cfg.budget.hard_cap,
  ).length;
  if (prompt + cfg.budget.hard_cap > limit) {
    const field = cfg.data.max_context === null ? 'data.context_len' : 'data.max_context';
    throw new Error(
      `${field}: a prompt of ${prompt} tokens (context ${longest.context.length}) plus budget.hard_cap ${cfg.budget.hard_cap} exceeds max_position_embeddings ${limit} of ${configPath}`,
    );
  }
}
