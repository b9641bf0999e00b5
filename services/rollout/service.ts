import { evalToPb, groupToPb, keyPositionFromPb, settingsFromPb } from '../../shared/rpc/adapters/convert.js';
import { asStatus, runOf } from '../../shared/rpc/adapters/library-errors.js';
import { handleServerStream, handleUnary, invalidArgument } from '../../shared/rpc/errors.js';
import type { RolloutGroup } from '../../shared/rpc/gen/rmt/v1/common.js';
import { RolloutServiceService } from '../../shared/rpc/gen/rmt/v1/rollout.js';
import { bindService, type ServiceBinding } from '../../shared/rpc/server.js';
import type { RolloutWorker } from '../../shared/run/rollout-worker.js';
import { RunContexts } from '../../shared/run/run-context.js';

export interface RolloutServiceOptions {
  worker: RolloutWorker;
  address: () => string;
  backend: string;
  onJob?: (tokens: number, seconds: number) => void;
}

/** rmt.v1.RolloutService over the library's RolloutWorker (jobs run one at a time). */
export function rolloutService(o: RolloutServiceOptions): ServiceBinding {
  const contexts = new RunContexts();
  return bindService(RolloutServiceService, {
    generateRollouts: handleServerStream(async function* (req, ctx): AsyncGenerator<RolloutGroup> {
      const run = await runOf(contexts, req.run);
      if (req.positions.length === 0) throw invalidArgument('positions', 'at least one key position');
      const settings = settingsFromPb(req.settings);
      const t0 = performance.now();
      const result = await asStatus(() =>
        o.worker.generate(
          run,
          {
            runId: run.runId,
            step: req.step,
            index: 0,
            positions: req.positions.map((p) => keyPositionFromPb(p)),
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
      const result = await asStatus(() =>
        o.worker.evaluate(
          run,
          req.positions.map((p) => keyPositionFromPb(p)),
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
