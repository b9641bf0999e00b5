import { parseArgs } from 'node:util';
import { coordinatorClient } from '../shared/rpc/client.js';
import { RunState, type RunStatus } from '../shared/rpc/gen/rmt/v1/coordinator.js';

/**
 * `rmt status`: a run's progress from a coordinator (GetRunStatus, or WatchRun with --watch) and
 * the rollout workers it sees. Plain lines, so it works over ssh and in `watch`.
 */
export const STATUS_USAGE = 'usage: rmt status [--coordinator host:port] [--run ID] [--watch] [--json]';

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
  return `${s.runId} ${state} step ${s.step}/${s.totalSteps} B=${s.budget}${mix} v${s.weightVersion} workers=${s.workers} ${m}${s.error ? ` error: ${s.error}` : ''}`;
}

export async function status(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      coordinator: { type: 'string', default: process.env.RMT_COORDINATOR ?? '127.0.0.1:50054' },
      run: { type: 'string', default: '' },
      watch: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${STATUS_USAGE}\n`);
    return 0;
  }
  const client = coordinatorClient(values.coordinator!);
  const show = (s: RunStatus) => process.stdout.write(`${values.json ? JSON.stringify(s) : line(s)}\n`);
  try {
    if (values.watch) {
      for await (const s of client.watchRun({ runId: values.run })) show(s);
    } else {
      show(await client.getRunStatus({ runId: values.run }, { deadlineMs: 10_000 }));
      const { workers } = await client.listWorkers({}, { deadlineMs: 10_000 });
      for (const w of workers) {
        process.stdout.write(
          `  worker ${w.workerId} ${w.address} v${w.weightVersion} ${w.busy ? 'busy' : 'idle'} seen ${w.lastSeenS.toFixed(1)} s ago\n`,
        );
      }
    }
    return 0;
  } finally {
    client.close();
  }
}
