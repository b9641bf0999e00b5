import { BACKEND_FLAG } from '../../shared/config/config-flags.js';
import { defineFlags, parseServiceFlagsOrExit } from '../../shared/config/service-flags.js';
import { SERVICE_LIMITS } from '../../shared/config/service-limits.js';
import { createBackend } from '../../shared/kernels/index.js';
import { RemoteLearnerPeers } from '../../shared/rpc/adapters/learner-peers.js';
import { LearnerHost } from '../../shared/run/local.js';
import { commonFlags, dataRootOf, peerClientOptions, startServiceProcess } from '../process.js';
import { learnerService } from './service.js';

/** This service's flags (each also an RMT_* environment variable). */
export const FLAGS = defineFlags({
  ...commonFlags(50053, 9453, SERVICE_LIMITS.max_receive_mib.learner),
  backend: BACKEND_FLAG,
  'lease-s': {
    type: 'number',
    default: SERVICE_LIMITS.learner_lease_s,
    min: 0,
    doc: 'seconds a run is kept without a call from its coordinator before it is let go (0: never)',
  },
});

export async function main(argv: string[]): Promise<void> {
  const f = parseServiceFlagsOrExit(FLAGS, 'rmt serve learner [flags]', argv);
  const backend = await createBackend(f.backend);
  const root = dataRootOf(f);
  let onExpired = (_line: string) => {};
  const host = new LearnerHost(backend, root, {
    leaseS: f.leaseS,
    // Data-parallel steps: the leader pulls followers' gradients, followers the leader's weights.
    peers: new RemoteLearnerPeers(peerClientOptions(f)),
    onLeaseExpired: (runId, idleS) =>
      onExpired(`let run "${runId}" go: its coordinator was not heard from for ${idleS.toFixed(1)} s`),
  });
  const p = await startServiceProcess('learner', f, async ({ bus, metrics, address, log }) => {
    onExpired = (line) => log.warn(line);
    const steps = metrics.counter({ name: 'learner_steps_total', help: 'optimizer steps taken' });
    const tokens = metrics.counter({
      name: 'learner_tokens_total',
      help: 'tokens in the dual loss (RL + NTP)',
    });
    const update = metrics.histogram({
      name: 'learner_update_seconds',
      help: 'dual loss + AdamW time per step',
    });
    return [
      learnerService({
        host,
        root,
        maxConfigBytes: f.maxConfigBytes,
        bus,
        advertise: address,
        log: (line) => log.warn(line),
        onStep: (m) => {
          steps.inc();
          tokens.inc((m.rl_tokens ?? 0) + (m.ntp_tokens ?? 0));
          update.observe(m['timing_s/update'] ?? 0);
        },
      }),
    ];
  });
  p.log.info('backend', { backend: backend.name, data_root: root.dir });
}
