import { evalToPb, groupToPb, keyPositionFromPb, settingsFromPb } from '../../shared/rpc/adapters/convert.js';
import { asStatus, runOf } from '../../shared/rpc/adapters/library-errors.js';
import { handleServerStream, handleUnary, invalidArgument } from '../../shared/rpc/errors.js';
import type { RolloutGroup } from '../../shared/rpc/gen/rmt/v1/common.js';
import { RolloutServiceService } from '../../shared/rpc/gen/rmt/v1/rollout.js';
import { bindService, type ServiceBinding } from '../../shared/rpc/server.js';
import type { DataRoot } from '../../shared/run/data-root.js';
import type { RolloutWorker } from '../../shared/run/rollout-worker.js';
import { RunContexts } from '../../shared/run/run-context.js';
import { checkKeyPositions } from '../../shared/run/train-step-check.js';

export interface RolloutServiceOptions {
  worker: RolloutWorker;
  /** Where run paths must lie. */
  root?: DataRoot;
  /** Longest RunRef.config_json accepted (SERVICE_LIMITS.max_config_bytes by default). */
  maxConfigBytes?: number;
  address: () => string;
  backend: string;
  onJob?: (tokens: number, seconds: number) => void;
}

/** rmt.v1.RolloutService over the library's RolloutWorker (jobs run one at a time). */
export function rolloutService(o: RolloutServiceOptions): ServiceBinding {
  const contexts = new RunContexts({ root: o.root, maxConfigBytes: o.maxConfigBytes });
  return bindService(RolloutServiceService, {
    generateRollouts: handleServerStream(async function* (req, ctx): AsyncGenerator<RolloutGroup> {
      const run = await runOf(contexts, req.run);
      if (req.positions.length === 0) throw invalidArgument('positions', 'at least one key position');
      const settings = settingsFromPb(req.settings);
      const positions = req.positions.map((p) => keyPositionFromPb(p));
      await asStatus(async () =>
        checkKeyPositions(
          positions,
          run.tokenizer.vocabSize,
          run.cfg,
          'positions',
          run.cfg.train.positions_per_step,
        ),
      );
      if (settings.hardCap > run.cfg.budget.hard_cap) {
        throw invalidArgument(
          'settings.hard_cap',
          `at most the run's budget.hard_cap ${run.cfg.budget.hard_cap}`,
        );
      }
      if (settings.G > run.cfg.grpo.G) {
        throw invalidArgument('settings.group_size', `at most the run's grpo.G ${run.cfg.grpo.G}`);
      }
      if (settings.maxBatch > run.cfg.train.generation_batch) {
        throw invalidArgument(
          'settings.max_batch',
          `at most the run's train.generation_batch ${run.cfg.train.generation_batch}`,
        );
      }
      const t0 = performance.now();
      const result = await asStatus(() =>
        o.worker.generate(
          run,
          {
            runId: run.runId,
            step: req.step,
            index: 0,
            positions,
            settings,
            seed: req.seed,
            minVersion: req.minWeightVersion,
          },
          ctx.signal,
        ),
      );
      o.onJob?.(
        result.groups.flat().reduce((n, r) => n + r.responseIds.length, 0),
        (performance.now() - t0) / 1000,
      );
      for (const g of result.groups) yield groupToPb(g, result.version, result.workerId);
    }),
    evaluate: handleUnary(async (req, ctx) => {
      const run = await runOf(contexts, req.run);
      if (req.mode !== 'ntp' && req.mode !== 'ntr')
        throw invalidArgument('mode', `"ntp" or "ntr", got "${req.mode}"`);
      const positions = req.positions.map((p) => keyPositionFromPb(p));
      await asStatus(async () =>
        checkKeyPositions(positions, run.tokenizer.vocabSize, run.cfg, 'positions', run.cfg.eval.positions),
      );
      const result = await asStatus(() =>
        o.worker.evaluate(
          run,
          positions,
          req.mode as 'ntp' | 'ntr',
          req.budget > 0 ? req.budget : null,
          req.minWeightVersion,
          ctx.signal,
        ),
      );
      return evalToPb(result);
    }),
    status: handleUnary(async () => {
      const s = o.worker.status();
      return {
        workerId: s.workerId,
        address: o.address(),
        runId: s.runId,
        weightVersion: s.version,
        busy: s.busy,
        tokensGenerated: s.tokensGenerated,
        tokensPerSecond: s.tokensPerSecond,
        backend: o.backend,
      };
    }),
  });
}
