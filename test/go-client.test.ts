import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import test from 'ava';
import type { Cluster } from '../cli/up.js';
import { openTokenizer } from '../shared/run/open-files.js';
import { startNatsServer } from './helpers/nats-server.js';
import { startTestCluster } from './helpers/test-cluster.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// examples/go, a client in Go: build.sh generates its stubs from proto/ and builds it offline
// against Debian's Go packages; it then tokenizes on the scorer, drives a run on the coordinator
// and decodes the google.rpc.Status details of refused calls, on a local cluster with mutual TLS.
const repo = resolve(import.meta.dirname, '..');
const haveGo = spawnSync('go', ['version']).status === 0;
const goTest = haveGo ? test.serial : test.serial.skip;
if (!haveGo) {
  console.log(
    'go-client.test: skipped: `go` is not installed (apt-get install golang-go and the packages examples/go/README.md lists)',
  );
}

const root = mkdtempSync(join(tmpdir(), 'rmt-goclient-'));
const build = join(root, 'build');
const binary = join(build, 'rmt-go-client');
const logs: string[] = [];
let nats: Awaited<ReturnType<typeof startNatsServer>> | undefined;
let cluster: Cluster | undefined;
let base = '';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], timeoutMs: number): Promise<Result> {
  return new Promise((done) => {
    execFile(file, args, { timeout: timeoutMs, cwd: repo }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      done({ code, stdout, stderr: err && code === null ? `${stderr}\n${err.message}` : stderr });
    });
  });
}

const why = (r: Result) =>
  `exit ${r.code}\nstderr:\n${r.stderr}\nstdout:\n${r.stdout}\n${logs.slice(-20).join('\n')}`;

test.before(async () => {
  if (!haveGo) return;
  // A cold build compiles grpc-go from Debian's sources: minutes on a loaded machine.
  const built = await run(join(repo, 'examples', 'go', 'build.sh'), [build], 600_000);
  if (built.code !== 0) throw new Error(`examples/go/build.sh failed:\n${why(built)}`);
  base = tinyBaseCheckpoint(root);
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

/** The Go client against the cluster: its address and TLS flags, then the verb. */
const goClient = (service: 'scorer' | 'coordinator', ...args: string[]) =>
  run(binary, [`--${service}`, cluster!.addresses[service], ...cluster!.clientFlags, ...args], 60_000);

goTest(
  'the Go client tokenizes with the scorer: the ids of rmt’s tokenizer, and back to the text',
  async (t) => {
    const text = 'Call me Ishmael. 48+37=85';
    const r = await goClient('scorer', 'tokenize', '--tokenizer', base, '--text', text);
    t.is(r.code, 0, why(r));
    const out = JSON.parse(r.stdout) as { ids: number[]; text: string };
    t.deepEqual(out.ids, (await openTokenizer(base, 'tokenizer')).encode(text));
    t.is(out.text, text);
  },
);

goTest(
  'a refused Detokenize: the Go client reads the field from google.rpc.BadRequest and the reason from ErrorInfo',
  async (t) => {
    const vocab = (await openTokenizer(base, 'tokenizer')).vocabSize;
    const r = await goClient('scorer', 'detokenize', '--tokenizer', base, '--ids', `5,${vocab}`);
    t.is(r.code, 2, why(r));
    t.regex(r.stderr, /^INVALID_ARGUMENT: ids\[1\]: token id \d+ is outside the vocabulary/m);
    t.regex(
      r.stderr,
      new RegExp(
        `^  bad request: field ids\\[1\\]: token id ${vocab} is outside the vocabulary \\[0, ${vocab}\\)$`,
        'm',
      ),
    );
    t.regex(r.stderr, /^ {2}error info: INVALID_FIELD \(domain rmt\.v1\) field=ids\[1\]$/m);
    t.notRegex(r.stderr, /detail not decoded/);
  },
);

goTest('the Go client starts a run, watches it to the end, and decodes a refused StartRun', async (t) => {
  const bad = join(root, 'bad.yaml');
  writeFileSync(bad, 'train:\n  steps: -3\n');
  const refused = await goClient('coordinator', 'run', '--config', bad);
  t.is(refused.code, 2, why(refused));
  t.regex(refused.stderr, /^INVALID_ARGUMENT: /m);
  t.regex(refused.stderr, /^ {2}bad request: field train\.steps: /m);
  t.regex(refused.stderr, /^ {2}error info: INVALID_FIELD \(domain rmt\.v1\) field=train\.steps$/m);

  const steps = 2;
  const configPath = join(root, 'run.json');
  const config = tinyRunConfig(base, join(root, 'out'), 'rmt', steps);
  writeFileSync(configPath, JSON.stringify(config));
  const r = await goClient('coordinator', 'run', '--config', configPath);
  t.is(r.code, 0, why(r));
  const summary = JSON.parse(r.stdout) as {
    state: string;
    method: string;
    step: number;
    total_steps: number;
    out_dir: string;
    error: string | null;
    metrics: Record<string, number>;
  };
  t.is(summary.state, 'done');
  t.is(summary.method, 'rmt');
  t.is(summary.step, steps);
  t.is(summary.total_steps, steps);
  t.is(summary.out_dir, config.run.out_dir);
  t.is(summary.error, null);
  for (const k of ['critic/score/mean', 'response_length/mean', 'actor/ntp_loss', 'actor/pg_loss']) {
    t.true(Number.isFinite(summary.metrics[k]), `metric ${k} in ${r.stdout}`);
  }
  t.regex(r.stderr, /^started \S+ \(rmt, 2 steps\)$/m);
  t.regex(r.stderr, / step 2\/2 done B=\d+ critic\/score\/mean=\S+ response_length\/mean=\S+ workers=\d+$/m);

  const status = await goClient('coordinator', 'status');
  t.is(status.code, 0, why(status));
  t.regex(status.stdout, /step 2\/2 done B=\d+/);
  const workers = await goClient('coordinator', 'workers');
  t.is(workers.code, 0, why(workers));
  t.regex(workers.stdout.trim(), /^rollout-0 127\.0\.0\.1:\d+ v\d+ (busy|idle) seen [\d.]+ s ago$/);
});
