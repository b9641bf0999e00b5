import { SERVICE_LIMITS } from '../config/service-limits.js';
import { parseTrainConfig, type TrainConfig } from '../config/train-config.js';
import type { Tokenizer } from '../data/tokenizer.js';
import { makePromptFormat, type PromptFormat } from '../rl/prompt-format.js';
import type { DataRoot } from './data-root.js';
import { openTokenizer } from './open-files.js';
import { RequestError } from './request-error.js';

/** A run as services name it: an id and the resolved config. */
export interface RunRef {
  runId: string;
  cfg: TrainConfig;
  /**
   * The coordinator driving the run, as the learner's lease knows it: a learner holding the run for
   * another coordinator refuses its calls until that lease runs out. Unset: no lease (the embedded
   * run, a client calling the learner by hand).
   */
  holder?: string;
}

/** What every service needs to take part in a run: its config, tokenizer and prompt layout. */
export interface RunContext extends RunRef {
  tokenizer: Tokenizer;
  format: PromptFormat;
}

export async function loadRunContext(runId: string, cfg: TrainConfig): Promise<RunContext> {
  const tokenizer = await openTokenizer(cfg.model.init_from, 'model.init_from');
  return { runId, cfg, tokenizer, format: makePromptFormat(tokenizer, cfg.prompt) };
}

/**
 * Services are told about a run by its id and resolved config (JSON); each keeps the contexts of
 * the runs it has seen so the tokenizer is loaded once. A config that does not parse is the
 * caller's error, reported with the offending field by parseTrainConfig. With a data root, the
 * config's paths are resolved under it (and refused outside it).
 */
export class RunContexts {
  private readonly byId = new Map<string, { json: string; ctx: Promise<RunContext> }>();

  constructor(private readonly o: { root?: DataRoot; maxConfigBytes?: number; kept?: number } = {}) {}

  /** Runs held now (at most `kept`, SERVICE_LIMITS.run_contexts_kept by default). */
  get size(): number {
    return this.byId.size;
  }

  get(runId: string, configJson: string): Promise<RunContext> {
    const known = this.byId.get(runId);
    if (known && (configJson === '' || known.json === configJson)) {
      // Most recently used last: the oldest run is the one let go.
      this.byId.delete(runId);
      this.byId.set(runId, known);
      return known.ctx;
    }
    if (configJson === '') {
      throw new RequestError(
        `run "${runId}" is unknown here and the request carries no config`,
        'precondition',
      );
    }
    const max = this.o.maxConfigBytes ?? SERVICE_LIMITS.max_config_bytes;
    if (configJson.length > max) {
      throw new RequestError(
        `run.config_json: ${configJson.length} characters, at most ${max}`,
        'argument',
        'run.config_json',
      );
    }
    const parsed = parseTrainConfig(JSON.parse(configJson), `run ${runId}`);
    const cfg = this.o.root ? this.o.root.config(parsed) : parsed;
    const ctx = loadRunContext(runId, cfg);
    this.byId.delete(runId);
    this.byId.set(runId, { json: configJson, ctx });
    const kept = this.o.kept ?? SERVICE_LIMITS.run_contexts_kept;
    for (const id of this.byId.keys()) {
      if (this.byId.size <= kept) break;
      this.byId.delete(id);
    }
    ctx.catch(() => {
      if (this.byId.get(runId)?.ctx === ctx) this.byId.delete(runId);
    });
    return ctx;
  }
}
