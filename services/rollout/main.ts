import { BACKEND_FLAG } from '../../shared/config/config-flags.js';
import { defineFlags, parseServiceFlagsOrExit } from '../../shared/config/service-flags.js';
import { SERVICE_LIMITS } from '../../shared/config/service-limits.js';
import { createBackend } from '../../shared/kernels/index.js';
import { PulledPolicy } from '../../shared/rpc/adapters/pulled-policy.js';
import { learnerClient } from '../../shared/rpc/client.js';
import { RolloutWorker } from '../../shared/run/rollout-worker.js';
import {
  commonFlags,
  dataRootOf,
  defaultWorkerId,
  peerClientOptions,
  startServiceProcess,
} from '../process.js';
import { rolloutService } from './service.js';

/** This service's flags (each also an RMT_* environment variable). */
export const FLAGS = defineFlags({
  ...commonFlags(50052, 9452, SERVICE_LIMITS.max_receive_mib.rollout),
  backend: BACKEND_FLAG,
  learner: { type: 'string', default: '127.0.0.1:50053', doc: 'learner address to pull weights from' },
  'worker-id': { type: 'string', doc: 'name in heartbeats and rollouts (default: host name and pid)' },
  'heartbeat-s': { type: 'number', default: 2, min: 0.1, doc: 'seconds between heartbeats on the bus' },
});

export async function main(argv: string[]): Promise<void> {
  const f = parseServiceFlagsOrExit(FLAGS, 'rmt serve rollout [flags]', argv);
  const backend = await createBackend(f.backend);
  const id = f.workerId ?? defaultWorkerId();
  const policy = new PulledPolicy(learnerClient(f.learner, peerClientOptions(f)), backend);
  let timer: NodeJS.Timeout | undefined;
  let worker: RolloutWorker | undefined;
  const p = await startServiceProcess(
    'rollout',
    f,
    async ({ bus, metrics, address, log }) => {
      worker = new RolloutWorker(id, policy, bus, (line) => log.warn(line));
      const tokens = metrics.counter({ name: 'rollout_tokens_total', help: 'response tokens generated' });
      const jobs = metrics.histogram({ name: 'rollout_job_seconds', help: 'time per rollout job' });
      const version = metrics.gauge({ name: 'rollout_weight_version', help: 'weight version held' });
      const sync = metrics.gauge({
        name: 'rollout_weight_sync_seconds',
        help: 'time of the last weight pull',
      });
      await bus.subscribe('rmt.weights.published', (m) => {
        const s = worker?.status();
        // Only runs this worker takes part in; a new worker gets weights with its first job.
        if (s?.runId === m.run_id) policy.prefetch(m.run_id, m.version);
      });
      const w = worker;
      return [
        rolloutService({
          worker: w,
          root: dataRootOf(f),
          maxConfigBytes: f.maxConfigBytes,
          address,
          backend: backend.name,
          onJob: (n, seconds) => {
            tokens.inc(n);
            jobs.observe(seconds);
            version.set(policy.version);
            sync.set(policy.lastSync.seconds);
          },
        }),
      ];
    },
    async () => {
      clearInterval(timer);
    },
  );
  const beat = () => {
    const s = worker!.status();
    p.bus
      .publish('rmt.workers.heartbeat', {
        worker_id: id,
        address: p.address,
        weight_version: s.version,
        busy: s.busy,
        run_id: s.runId || null,
        ts: Date.now(),
      })
      .catch((e: Error) => p.log.warn('heartbeat failed', { error: e }));
  };
  beat();
  timer = setInterval(beat, f.heartbeatS * 1000);
  p.log.info('worker', { worker_id: id, backend: backend.name, learner: f.learner });
}
