import { defineFlags, parseServiceFlagsOrExit } from '../../shared/config/service-flags.js';
import { SERVICE_LIMITS } from '../../shared/config/service-limits.js';
import { stepGauges } from '../../shared/obs/step-gauges.js';
import { RemoteLearner, RemoteScorer } from '../../shared/rpc/adapters/remote.js';
import { WorkerRegistry } from '../../shared/rpc/adapters/worker-registry.js';
import { learnerClient, scorerClient } from '../../shared/rpc/client.js';
import { DataParallelLearners } from '../../shared/run/data-parallel-learners.js';
import { RunRecords } from '../../shared/run/run-records.js';
import { WorkerPool } from '../../shared/run/worker-pool.js';
import { commonFlags, dataRootOf, peerClientOptions, startServiceProcess } from '../process.js';
import { learnerAddresses, learnerFault } from './learner-faults.js';
import { CoordinatorHost, coordinatorService } from './service.js';

/** This service's flags (each also an RMT_* environment variable). */
export const FLAGS = defineFlags({
  ...commonFlags(50054, 9454, SERVICE_LIMITS.max_receive_mib.coordinator),
  scorer: { type: 'string', default: '127.0.0.1:50051', doc: 'scorer service address' },
  learner: {
    type: 'string',
    default: '127.0.0.1:50053',
    doc: 'learner service address; several, comma-separated, split each step over data-parallel learners (the first is the leader, rank 0; docs/services.md)',
  },
  'finished-runs-kept': {
    type: 'int',
    default: SERVICE_LIMITS.finished_runs_kept,
    min: 0,
    doc: 'finished runs GetRunStatus still answers for (the oldest are forgotten first)',
  },
  'finished-run-ttl-s': {
    type: 'number',
    default: SERVICE_LIMITS.finished_run_ttl_s,
    min: 0,
    doc: 'seconds a finished run is remembered at most',
  },
  'learner-retry-max-s': {
    type: 'number',
    default: SERVICE_LIMITS.learner_retry_max_s,
    min: 0.1,
    doc: 'longest pause between attempts to reach a learner that is away (the run waits meanwhile)',
  },
  'worker-ttl-s': {
    type: 'number',
    default: 10,
    min: 0.5,
    doc: 'a worker silent this long is taken off the pool',
  },
});

export async function main(argv: string[]): Promise<void> {
  const f = parseServiceFlagsOrExit(FLAGS, 'rmt serve coordinator [flags]', argv);
  const peers = peerClientOptions(f);
  const registry = new WorkerRegistry(f.workerTtlS * 1000, peers);
  const scorer = new RemoteScorer(scorerClient(f.scorer, peers));
  const addresses = learnerAddresses(f.learner);
  const learner = new DataParallelLearners(
    addresses.map((a) => new RemoteLearner(learnerClient(a, peers))),
    addresses,
  );
  let host: CoordinatorHost | undefined;
  await startServiceProcess(
    'coordinator',
    f,
    async ({ bus, log, metrics }) => {
      await registry.start(bus);
      const steps = metrics.gauge({ name: 'run_step', help: 'steps done in the active run' });
      const everyMetric = stepGauges(metrics);
      const score = metrics.gauge({ name: 'run_score_mean', help: 'critic/score/mean of the last step' });
      const workers = metrics.gauge({
        name: 'rollout_workers_alive',
        help: 'workers heard from within the TTL',
      });
      // Rollout jobs waiting for a worker: the signal to scale rollout workers on (docs/kubernetes.md).
      const pending = metrics.gauge({
        name: 'rollout_jobs_pending',
        help: 'rollout jobs waiting for a worker',
      });
      const running = metrics.gauge({ name: 'rollout_jobs_running', help: 'rollout jobs being generated' });
      let pool: WorkerPool | null = null;
      setInterval(() => {
        workers.set(registry.endpoints().length);
        pending.set(pool?.load().queued ?? 0);
        running.set(pool?.load().running ?? 0);
      }, 1000).unref();
      const root = dataRootOf(f);
      host = new CoordinatorHost({
        bus,
        registry,
        root,
        records: new RunRecords(root, f.maxConfigBytes),
        learnerFault,
        learnerRetryMaxMs: f.learnerRetryMaxS * 1000,
        maxConfigBytes: f.maxConfigBytes,
        finishedRunsKept: f.finishedRunsKept,
        finishedRunTtlS: f.finishedRunTtlS,
        log: (l) => log.info(l),
        onStep: (step, m) => {
          steps.set(step);
          everyMetric(m);
          if (m['critic/score/mean'] !== undefined) score.set(m['critic/score/mean']);
        },
        services: (cfg) => {
          pool = new WorkerPool(() => registry.endpoints(), {
            jobTimeoutMs: cfg.distributed.job_timeout_s * 1000,
            workerWaitMs: cfg.distributed.worker_wait_s * 1000,
            maxAttempts: 5,
            log: (l) => log.warn(l),
          });
          return { scorer, learner, pool };
        },
      });
      // Runs a coordinator before this one was driving go on from their last checkpoint; before the
      // server takes calls, so that a StartRun of the same run finds it going.
      const resumed = host.resumeRecorded();
      if (resumed.length > 0) log.info('resumed runs', { runs: resumed });
      return [coordinatorService(host, registry)];
    },
    // A stop signal: the active run stops after its step in flight, with a checkpoint to resume
    // from. SIGTERM (Kubernetes moving the pod) leaves it noted for the next coordinator to resume;
    // SIGINT (Ctrl-C at a terminal) is a person stopping it.
    async (reason) => {
      await host?.stopAll({ resumeLater: reason === 'SIGTERM' });
      await registry.stop();
    },
  );
}
