import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { Cluster } from '../cli/up.js';
import { startNatsServer } from './helpers/nats-server.js';
import { startTestCluster } from './helpers/test-cluster.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// examples/python/rmt_client.py, a client in another language, drives a run on a local cluster
// through the coordinator's gRPC API with stubs it generates from proto/.
const python = process.env.RMT_PYTHON ?? '/usr/bin/python3';
const client = 'examples/python/rmt_client.py';
const root = mkdtempSync(join(tmpdir(), 'rmt-pyclient-'));
const logs: string[] = [];
let nats: Awaited<ReturnType<typeof startNatsServer>> | undefined;
let cluster: Cluster | undefined;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runPython(args: string[], timeoutMs = 60_000): Promise<Result> {
  return new Promise((resolve) => {
    execFile(python, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr: err && code === null ? `${stderr}\n${err.message}` : stderr });
    });
  });
}

test.before(async () => {
  const probe = await runPython(['-c', 'import grpc, grpc_tools.protoc, google.protobuf'], 20_000);
  if (probe.code !== 0) {
    throw new Error(
      `${python} cannot import grpc / grpc_tools / protobuf; install them with ` +
        '`apt-get install python3-grpcio python3-grpc-tools python3-protobuf` ' +
        `(or point RMT_PYTHON at a Python that has them):\n${probe.stderr}`,
    );
  }
  nats = await startNatsServer();
  cluster = await startTestCluster(logs, {
    workers: 1,
    nats: nats.url,
    dataRoot: root,
  });
});

test.after.always(async () => {
  await cluster?.stop();
  await nats?.stop();
  rmSync(root, { recursive: true, force: true });
});

const why = (r: Result) =>
  `exit ${r.code}\nstderr:\n${r.stderr}\nstdout:\n${r.stdout}\n${logs.slice(-20).join('\n')}`;

test.serial('the Python client starts a run, watches it to the end and prints its metrics', async (t) => {
  const steps = 3;
  const configPath = join(root, 'run.json');
  const config = tinyRunConfig(tinyBaseCheckpoint(root), join(root, 'out'), 'rmt', steps);
  writeFileSync(configPath, JSON.stringify(config));
  const py = (...args: string[]) =>
    runPython([client, '--coordinator', cluster!.addresses.coordinator, ...cluster!.clientFlags, ...args]);

  const r = await py('--config', configPath);
  t.is(r.code, 0, why(r));
  const summary = JSON.parse(r.stdout) as {
    state: string;
    step: number;
    total_steps: number;
    out_dir: string;
    metrics: Record<string, number>;
  };
  t.is(summary.state, 'done');
  t.is(summary.step, steps);
  t.is(summary.total_steps, steps);
  t.is(summary.out_dir, config.run.out_dir);
  for (const k of ['critic/score/mean', 'response_length/mean', 'actor/ntp_loss', 'actor/pg_loss']) {
    t.is(typeof summary.metrics[k], 'number', `metric ${k} in ${r.stdout}`);
  }
  // One status line per step, each with the budget and the two headline metrics.
  const seen = new Set(
    [...r.stderr.matchAll(/ step (\d+)\/3 \w+ B=\d+ critic\/score\/mean=\S+ response_length\/mean=\S+/g)].map(
      (m) => Number(m[1]),
    ),
  );
  t.deepEqual(
    [...seen].filter((s) => s > 0),
    [1, 2, 3],
    r.stderr,
  );

  const workers = await py('--workers');
  t.is(workers.code, 0, why(workers));
  const lines = workers.stdout.trim().split('\n');
  t.is(lines.length, 1, workers.stdout);
  t.regex(lines[0]!, /^rollout-0 127\.0\.0\.1:\d+ v\d+ (busy|idle) seen [\d.]+ s ago$/);

  const status = await py('--status');
  t.is(status.code, 0, why(status));
  t.regex(status.stdout, /step 3\/3 done B=\d+/);

  // A bad request: the gRPC code and details on stderr, exit 2.
  const bad = await py('--config', configPath, '--method', 'nope');
  t.is(bad.code, 2, why(bad));
  t.regex(bad.stderr, /^INVALID_ARGUMENT: .*method/m);
});
