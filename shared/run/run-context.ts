import { parseTrainConfig, type TrainConfig } from '../config/train-config.js';
import { loadTokenizer, type Tokenizer } from '../data/tokenizer.js';
import { makePromptFormat, type PromptFormat } from '../rl/prompt-format.js';

/** A run as services name it: an id and the resolved config. */
export interface RunRef {
  runId: string;
  cfg: TrainConfig;
}

/** What every service needs to take part in a run: its config, tokenizer and prompt layout. */
export interface RunContext extends RunRef {
  tokenizer: Tokenizer;
  format: PromptFormat;
}

export async function loadRunContext(runId: string, cfg: TrainConfig): Promise<RunContext> {
  const tokenizer = await loadTokenizer(cfg.model.init_from);
  return { runId, cfg, tokenizer, format: makePromptFormat(tokenizer, cfg.prompt) };
}

/**
 * Services are told about a run by its id and resolved config (JSON); each keeps the contexts of
 * the runs it has seen so the tokenizer is loaded once. A config that does not parse is the
 * caller's error, reported with the offending field by parseTrainConfig.
 */
export class RunContexts {
  private readonly byId = new Map<string, { json: string; ctx: Promise<RunContext> }>();

  get(runId: string, configJson: string): Promise<RunContext> {
    const known = this.byId.get(runId);
    if (known && (configJson === '' || known.json === configJson)) return known.ctx;
    if (configJson === '')
      throw new Error(`run "${runId}" is unknown here and the request carries no config`);
    const cfg = parseTrainConfig(JSON.parse(configJson), `run ${runId}`);
    const ctx = loadRunContext(runId, cfg);
    this.byId.set(runId, { json: configJson, ctx });
    ctx.catch(() => this.byId.delete(runId));
    return ctx;
  }
}
