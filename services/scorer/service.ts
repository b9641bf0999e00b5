import type { EventBus } from '../../shared/bus/bus.js';
import { SERVICE_LIMITS } from '../../shared/config/service-limits.js';
import type { Tokenizer } from '../../shared/data/tokenizer.js';
import type { KeyPosition } from '../../shared/rl/key-positions.js';
import { keyPositionToPb } from '../../shared/rpc/adapters/convert.js';
import { asStatus, runOf } from '../../shared/rpc/adapters/library-errors.js';
import { handleServerStream, handleUnary, invalidArgument } from '../../shared/rpc/errors.js';
import {
  type ScoreDocumentsResponse,
  ScorerServiceService,
  Split,
} from '../../shared/rpc/gen/rmt/v1/scorer.js';
import { bindService, type ServiceBinding } from '../../shared/rpc/server.js';
import type { DataRoot } from '../../shared/run/data-root.js';
import { openTokenizer } from '../../shared/run/open-files.js';
import { RunContexts } from '../../shared/run/run-context.js';
import type { Scorer } from '../../shared/run/scorer.js';

const CHUNK = 1024;

/**
 * rmt.v1.ScorerService over the library's Scorer: tokenizing with a run's (or the server's)
 * tokenizer, and scoring a run's corpora into key positions, streamed with progress. Each chunk of
 * scored positions is also announced on `rmt.positions.scored`.
 */
export interface ScorerServiceOptions {
  scorer: Scorer;
  bus: EventBus;
  /** The tokenizer folder of requests that name none (an operator's setting, not checked against root). */
  tokenizer?: string;
  /** Where the folders requests name must lie. */
  root?: DataRoot;
  /** Longest RunRef.config_json accepted. */
  maxConfigBytes?: number;
  /** Longest Tokenize text, in characters. */
  maxTokenizeChars?: number;
  /** Most ids of one Detokenize. */
  maxDetokenizeIds?: number;
}

export function scorerService(o: ScorerServiceOptions): ServiceBinding {
  const contexts = new RunContexts({ root: o.root, maxConfigBytes: o.maxConfigBytes });
  const maxChars = o.maxTokenizeChars ?? SERVICE_LIMITS.max_tokenize_chars;
  const maxIds = o.maxDetokenizeIds ?? SERVICE_LIMITS.max_detokenize_ids;
  const tokenizers = new Map<string, Promise<Tokenizer>>();
  const tokenizer = (dir: string) =>
    asStatus(async () => {
      const d = dir ? (o.root ? o.root.resolve(dir, 'tokenizer') : dir) : o.tokenizer;
      if (!d) throw invalidArgument('tokenizer', 'required: this server has no --tokenizer default');
      let t = tokenizers.get(d);
      if (!t) {
        t = openTokenizer(d, 'tokenizer');
        tokenizers.set(d, t);
        t.catch(() => tokenizers.delete(d));
        for (const k of tokenizers.keys()) {
          if (tokenizers.size <= SERVICE_LIMITS.tokenizers_kept) break;
          tokenizers.delete(k);
        }
      }
      return t;
    }, 'tokenizer');
  return bindService(ScorerServiceService, {
    tokenize: handleUnary(async (req) => {
      if (req.text.length > maxChars) {
        throw invalidArgument('text', `${req.text.length} characters, at most ${maxChars} per call`);
      }
      return { ids: (await tokenizer(req.tokenizer)).encode(req.text) };
    }),
    detokenize: handleUnary(async (req) => {
      if (req.ids.length > maxIds)
        throw invalidArgument('ids', `${req.ids.length} ids, at most ${maxIds} per call`);
      const t = await tokenizer(req.tokenizer);
      for (let i = 0; i < req.ids.length; i++) {
        const id = req.ids[i];
        if (!(id >= 0 && id < t.vocabSize)) {
          throw invalidArgument(`ids[${i}]`, `token id ${id} is outside the vocabulary [0, ${t.vocabSize})`);
        }
      }
      return { text: t.decode(req.ids) };
    }),
    scoreDocuments: handleServerStream(async function* (req, ctx): AsyncGenerator<ScoreDocumentsResponse> {
      const run = await runOf(contexts, req.run);
      if (req.split !== Split.SPLIT_TRAIN && req.split !== Split.SPLIT_HELD_OUT) {
        throw invalidArgument('split', 'SPLIT_TRAIN or SPLIT_HELD_OUT');
      }
      const split = req.split === Split.SPLIT_TRAIN ? 'train' : 'held_out';
      // Scoring runs while progress is streamed; the stream ends with the positions.
      const events: ScoreDocumentsResponse[] = [];
      let wake: (() => void) | null = null;
      let lastSent = 0;
      const work = asStatus(() =>
        o.scorer.keyPositions(run, split, {
          signal: ctx.signal,
          progress: (done, total) => {
            if (Date.now() - lastSent < 500 && done < total) return;
            lastSent = Date.now();
            events.push({ event: { $case: 'progress', value: { done, total } } });
            wake?.();
          },
        }),
      );
      let positions: KeyPosition[] | null = null;
      work.then(
        (p) => {
          positions = p;
          wake?.();
        },
        () => wake?.(),
      );
      while (positions === null) {
        const e = events.shift();
        if (e) {
          yield e;
          continue;
        }
        await Promise.race([work, new Promise<void>((r) => (wake = r))]);
        wake = null;
      }
      yield* events.splice(0);
      const all: KeyPosition[] = positions;
      const chunks = Math.max(1, Math.ceil(all.length / CHUNK));
      for (let c = 0; c < chunks; c++) {
        const part = all.slice(c * CHUNK, (c + 1) * CHUNK);
        await o.bus.publish('rmt.positions.scored', {
          run_id: run.runId,
          split,
          chunk: c,
          chunks,
          positions: part.map((p) => ({ id: p.id, entropy: p.entropy })),
        });
        yield {
          event: {
            $case: 'positions',
            value: { positions: part.map(keyPositionToPb), last: c === chunks - 1 },
          },
        };
      }
    }),
  });
}
