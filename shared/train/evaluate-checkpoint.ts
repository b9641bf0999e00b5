import type { TrainConfig } from '../config/train-config.js';
import type { Backend } from '../kernels/backend.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { Decoder } from '../model/decoder.js';
import { uploadParams } from '../model/weights.js';
import type { KeyPosition } from '../rl/key-positions.js';
import { evalBudget, evalSubset } from '../run/coordinator.js';
import { type EvalMode, type EvalResult, evaluatePositions, ntpExcluded } from '../run/evaluate.js';
import { loadRunContext, type RunContext } from '../run/run-context.js';
import { Scorer } from '../run/scorer.js';

/**
 * A checkpoint on the backend with `count` of a run config's held-out key positions (proxy-scored,
 * cached in the config's out_dir, spread evenly as evaluations pick them): what every held-out
 * measurement of a checkpoint starts from. `release` frees the checkpoint's weights; the backend is
 * the caller's.
 */
export async function checkpointOnHeldOut(
  backend: Backend,
  cfg: TrainConfig,
  checkpoint: string,
  count: number,
  log: (line: string) => void,
): Promise<{ run: RunContext; positions: KeyPosition[]; model: Decoder; release: () => void }> {
  const run = await loadRunContext('eval', cfg);
  const heldOut = await new Scorer(backend).keyPositions(run, 'held_out', { log });
  const ck = loadCheckpoint(checkpoint);
  const model = new Decoder(ck.config, backend, uploadParams(backend, ck.params));
  return {
    run,
    positions: evalSubset(heldOut, count),
    model,
    release: () => {
      for (const b of model.params.values()) backend.free(b);
    },
  };
}

/**
 * A checkpoint's accuracy on a run config's held-out key positions under the prompt of the config's
 * method at its final budget: what `rmt eval` and the paper benchmark report.
 */
export async function evaluateCheckpoint(
  backend: Backend,
  cfg: TrainConfig,
  checkpoint: string,
  mode: EvalMode,
  log: (line: string) => void,
  progress?: (done: number, total: number) => void,
): Promise<{ budget: number | null; result: EvalResult }> {
  const budget = evalBudget(cfg);
  const [result] = await evaluateCheckpointAt(backend, cfg, checkpoint, mode, [budget], log, progress);
  return { budget, result };
}

/**
 * The same, once per stated budget of `budgets` (null: no budget stated), on the same positions
 * with the checkpoint loaded once: how the paper benchmark puts every row under the same
 * conditions, whatever its method's own prompt is.
 */
export async function evaluateCheckpointAt(
  backend: Backend,
  cfg: TrainConfig,
  checkpoint: string,
  mode: EvalMode,
  budgets: readonly (number | null)[],
  log: (line: string) => void,
  progress?: (done: number, total: number) => void,
): Promise<EvalResult[]> {
  const { run, positions, model, release } = await checkpointOnHeldOut(
    backend,
    cfg,
    checkpoint,
    cfg.eval.positions,
    log,
  );
  try {
    const results: EvalResult[] = [];
    for (const budget of budgets) {
      results.push(
        await evaluatePositions(model, run.tokenizer, run.format, positions, {
          mode,
          eval_splits: cfg.curriculum.eval_splits,
          budget,
          hardCap: cfg.budget.hard_cap,
          batch: cfg.train.generation_batch,
          ntpExclude: ntpExcluded(cfg.eval.ntp_over, run.tokenizer),
          match: cfg.eval.match,
          progress,
        }),
      );
    }
    return results;
  } finally {
    release();
  }
}
