import { defineFlags, parseServiceFlagsOrExit } from '../shared/config/service-flags.js';
import { coordinatorClient } from '../shared/rpc/client.js';
import { RunState, type RunStatus } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { CLIENT_TLS_FLAGS, clientTlsOptions } from './client-tls.js';

/**
 * `rmt status`: a run's progress from a coordinator (GetRunStatus, or WatchRun with --watch) and
 * the rollout workers it sees. Plain lines, so it works over ssh and in `watch`.
 */
export const STATUS_USAGE =
  'usage: rmt status [--coordinator host:port] [--run ID] [--watch] [--json] [--tls-ca PEM ...]';

const KEYS = [
  'critic/score/mean',
  'response_length/mean',
  'actor/ntp_loss',
  'actor/pg_loss',
  'timing_s/step',
];

function line(s: RunStatus): string {
  const m = KEYS.filter((k) => s.metrics[k] !== undefined)
    .map((k) => `${k}=${Number(s.metrics[k].toPrecision(4))}`)
    .join(' ');
  const mix = s.tierMix.length ? ` p=[${s.tierMix.map((p) => p.toFixed(2)).join(',')}]` : '';
  const state = RunState[s.state].replace('RUN_STATE_', '').toLowerCase();
  return `${s.runId} ${state} step ${s.step}/${s.totalSteps} B=${s.budget}${mix} v${s.weightVersion} workers=${s.workers} ${m}${s.reason ? ` reason: ${s.reason}` : ''}${s.error ? ` error: ${s.error}` : ''}`;
}

export const STATUS_FLAGS = defineFlags({
  coordinator: { type: 'string', default: '127.0.0.1:50054', doc: 'coordinator address (host:port)' },
  run: { type: 'string', default: '', doc: 'run id (default: the active or last run)' },
  watch: { type: 'bool', default: false, doc: 'follow the run: a line per status change' },
  json: { type: 'bool', default: false, doc: 'print the status messages as JSON' },
  ...CLIENT_TLS_FLAGS,
});

/**
 * The whole command; returns the exit code (2 on a usage error). `env` supplies the RMT_* variables
 * of the flags.
 */
export async function status(
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
  print: (l: string) => void = (l) => process.stdout.write(`${l}\n`),
  warn: (l: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<number> {
  const values = parseServiceFlagsOrExit(STATUS_FLAGS, STATUS_USAGE, argv, env);
  const opts = clientTlsOptions(values, warn);
  if (!opts) return 2;
  const client = coordinatorClient(values.coordinator, opts);
  const show = (s: RunStatus) => print(values.json ? JSON.stringify(s) : line(s));
  try {
    if (values.watch) {
      for await (const s of client.watchRun({ runId: values.run })) show(s);
    } else {
      show(await client.getRunStatus({ runId: values.run }, { deadlineMs: 10_000 }));
      const { workers } = await client.listWorkers({}, { deadlineMs: 10_000 });
      for (const w of workers) {
        print(
          `  worker ${w.workerId} ${w.address} v${w.weightVersion} ${w.busy ? 'busy' : 'idle'} seen ${w.lastSeenS.toFixed(1)} s ago`,
        );
      }
    }
    return 0;
  } finally {
    client.close();
  }
}
