// `npm run fuzz`: generated requests (bench/fuzz-requests.ts) against a local cluster over its mutual
// TLS, while a tiny run goes on, then the checks: no call ends INTERNAL or UNKNOWN, no process exits,
// every service answers a health check within 1 s afterwards, and the run's metrics are those of the
// same run without the fuzzing. Writes the status counts per service and method to
// bench/results/fuzz.json.
//
//   npm run fuzz [-- --requests 10000 --seed 1 --concurrency 8]
//
// Calls an authenticated client may make on purpose to change the run in progress (StopRun; the
// learner's InitRun, TrainStep, Checkpoint: the coordinator's own calls) are sent after the run has
// finished, so that the run under test is disturbed only by what should not disturb it.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Metadata, type ServiceError, status as Status } from '@grpc/grpc-js';
import { type Cluster, startCluster } from '../cli/up.js';
import { coordinatorClient, healthCheck, makeGrpcClient } from '../shared/rpc/client.js';
import { RunState } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './fixtures/tiny-run.js';
import {
  FUZZ_SERVICES,
  type FuzzRequest,
  type FuzzService,
  generateRequests,
  loadServices,
} from './fuzz-requests.js';

/** Methods that change the run in progress when an authorized client calls them: sent after it. */
export const AFTER_THE_RUN = ['StopRun', 'InitRun', 'TrainStep', 'Checkpoint'];
/** Statuses that mean a service failed to handle an input rather than refusing it. */
export const FAILURE_STATUSES = ['INTERNAL', 'UNKNOWN'];
/** The health check after the fuzzing must answer within this. */
export const HEALTH_DEADLINE_MS = 1_000;

export interface FuzzOptions {
  requestsPerService: number;
  seed: number;
  /** Calls in flight per service. */
  concurrency: number;
  /** Deadline of each call. */
  deadlineMs: number;
  log?: (line: string) => void;
}

export interface MethodReport {
  calls: number;
  statuses: Record<string, number>;
  /** A few INTERNAL/UNKNOWN details, truncated. */
  failures: string[];
  /** The first details of each status other than OK, truncated (what the refusals say). */
  examples: Record<string, string[]>;
}

export interface FuzzReport {
  requestsPerService: number;
  seed: number;
  services: Record<
    FuzzService,
    { calls: number; statuses: Record<string, number>; methods: Record<string, MethodReport> }
  >;
  /** Milliseconds each service took to answer a health check after the fuzzing (-1: no answer). */
  healthMs: Record<string, number>;
  /** Processes of the cluster that exited during the fuzzing. */
  exited: string[];
  /** Whether the run fuzzed alongside ended DONE with the metrics of the run without fuzzing. */
  run: { state: string; sameMetrics: boolean; steps: number };
  /** INTERNAL/UNKNOWN counts by "service.Method". */
  failures: Record<string, number>;
  seconds: number;
}

/** Both ends of a long detail: where it starts and what it says at the end. */
const shorten = (d: string): string => (d.length > 240 ? `${d.slice(0, 120)}…${d.slice(-120)}` : d);
const statusName = (code: number): string => Status[code] ?? `CODE_${code}`;

/** Sends one request as raw bytes; resolves to the status it ended with (and its details). */
function call(
  client: ReturnType<typeof makeGrpcClient>,
  r: FuzzRequest,
  deadlineMs: number,
): Promise<{ code: number; details: string }> {
  const id = (b: Buffer) => b;
  const deadline = Date.now() + deadlineMs;
  const bytes = Buffer.from(r.bytes);
  if (r.method.methodKind === 'server_streaming') {
    return new Promise((done) => {
      const stream = client.makeServerStreamRequest(r.path, id, id, bytes, new Metadata(), { deadline });
      let messages = 0;
      let settled = false;
      const finish = (code: number, details: string) => {
        if (settled) return;
        settled = true;
        done({ code, details });
      };
      stream.on('data', () => {
        // A stream that answers is working; the fuzzer does not wait for its end (WatchRun of the run).
        if (++messages === 2) {
          finish(Status.OK, '');
          stream.cancel();
        }
      });
      stream.on('error', (e: ServiceError) =>
        finish(messages > 0 && e.code === Status.CANCELLED ? Status.OK : e.code, e.details),
      );
      stream.on('status', (s) => finish(s.code, s.details));
    });
  }
  return new Promise((done) => {
    client.makeUnaryRequest(r.path, id, id, bytes, new Metadata(), { deadline }, (err) =>
      done(
        err
          ? { code: err.code ?? Status.UNKNOWN, details: err.details ?? '' }
          : { code: Status.OK, details: '' },
      ),
    );
  });
}

async function send(
  address: string,
  cluster: Cluster,
  requests: FuzzRequest[],
  o: FuzzOptions,
  into: Record<string, MethodReport>,
): Promise<void> {
  const client = makeGrpcClient(address, cluster.clientOptions);
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const r = requests[next++]!;
      const { code, details } = await call(client, r, o.deadlineMs);
      into[r.method.name] ??= { calls: 0, statuses: {}, failures: [], examples: {} };
      const m = into[r.method.name]!;
      m.calls++;
      const name = statusName(code);
      m.statuses[name] = (m.statuses[name] ?? 0) + 1;
      const what = `${r.wellFormed ? 'well-formed' : 'malformed'}: ${shorten(details)}`;
      if (FAILURE_STATUSES.includes(name) && m.failures.length < 5) m.failures.push(`${name} (${what})`);
      if (name !== 'OK') {
        m.examples[name] ??= [];
        if (m.examples[name].length < 2) m.examples[name].push(what);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker));
  } finally {
    client.close();
  }
}

const rowsOf = (dir: string) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);
/** A run's metrics without its wall-clock timings. */
const trajectory = (dir: string) =>
  rowsOf(dir).map((r) =>
    Object.fromEntries(
      Object.entries(r).filter(([k]) => !k.startsWith('timing_s/') && k !== 'perf/throughput'),
    ),
  );

async function runToEnd(cluster: Cluster, config: object): Promise<{ state: string; step: number }> {
  const client = coordinatorClient(cluster.addresses.coordinator, cluster.clientOptions);
  try {
    const start = await client.startRun({ config: JSON.stringify(config) });
    let last = start;
    for await (const s of client.watchRun({ runId: start.runId })) last = s;
    return { state: RunState[last.state] ?? String(last.state), step: Number(last.step) };
  } finally {
    client.close();
  }
}

/** Fuzzes the services of `cluster` while a tiny run (its files under `root`) goes on; see the top. */
export async function fuzzCluster(cluster: Cluster, root: string, o: FuzzOptions): Promise<FuzzReport> {
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  const base = tinyBaseCheckpoint(root);
  const steps = 4;
  const config = (out: string) => tinyRunConfig(base, join(root, out), 'rmt', steps);
  log('the run without fuzzing');
  const quiet = await runToEnd(cluster, config('quiet'));
  if (quiet.state !== 'RUN_STATE_DONE') throw new Error(`the run without fuzzing ended ${quiet.state}`);

  const services = loadServices();
  const addresses: Record<FuzzService, string> = {
    scorer: cluster.addresses.scorer,
    rollout: cluster.addresses.rollout[0]!,
    learner: cluster.addresses.learner,
    coordinator: cluster.addresses.coordinator,
  };
  const names = Object.keys(FUZZ_SERVICES) as FuzzService[];
  const planned = Object.fromEntries(
    names.map((s, i) => [s, generateRequests(services[s], o.requestsPerService, o.seed + i)]),
  ) as Record<FuzzService, FuzzRequest[]>;
  const methods = Object.fromEntries(names.map((s) => [s, {} as Record<string, MethodReport>])) as Record<
    FuzzService,
    Record<string, MethodReport>
  >;
  const exited: string[] = [];
  for (const [name, child] of cluster.children)
    child.once('exit', (code, signal) => exited.push(`${name} (${signal ?? `exit ${code}`})`));

  log(`${o.requestsPerService} requests per service while the run goes on`);
  const during = runToEnd(cluster, config('fuzzed'));
  await Promise.all(
    names.map((s) =>
      send(
        addresses[s],
        cluster,
        planned[s].filter((r) => !AFTER_THE_RUN.includes(r.method.name)),
        o,
        methods[s],
      ),
    ),
  );
  const fuzzed = await during;
  log(`the run ended ${fuzzed.state}; the requests that change runs`);
  await Promise.all(
    names.map((s) =>
      send(
        addresses[s],
        cluster,
        planned[s].filter((r) => AFTER_THE_RUN.includes(r.method.name)),
        o,
        methods[s],
      ),
    ),
  );

  const healthMs: Record<string, number> = {};
  for (const s of names) {
    const h0 = performance.now();
    const ok = await healthCheck(addresses[s], '', {
      ...cluster.clientOptions,
      deadlineMs: HEALTH_DEADLINE_MS,
    })
      .then((st) => st === 'SERVING')
      .catch(() => false);
    healthMs[s] = ok ? Math.round(performance.now() - h0) : -1;
  }
  const sameMetrics =
    fuzzed.state === 'RUN_STATE_DONE' &&
    JSON.stringify(trajectory(join(root, 'fuzzed'))) === JSON.stringify(trajectory(join(root, 'quiet')));
  const failures: Record<string, number> = {};
  const report = {} as FuzzReport['services'];
  for (const s of names) {
    const statuses: Record<string, number> = {};
    let calls = 0;
    for (const [m, r] of Object.entries(methods[s])) {
      calls += r.calls;
      for (const [k, n] of Object.entries(r.statuses)) {
        statuses[k] = (statuses[k] ?? 0) + n;
        if (FAILURE_STATUSES.includes(k)) failures[`${s}.${m}`] = (failures[`${s}.${m}`] ?? 0) + n;
      }
    }
    report[s] = { calls, statuses, methods: methods[s] };
  }
  return {
    requestsPerService: o.requestsPerService,
    seed: o.seed,
    services: report,
    healthMs,
    exited,
    run: { state: fuzzed.state, sameMetrics, steps: fuzzed.step },
    failures,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '10000' },
      seed: { type: 'string', default: '1' },
      concurrency: { type: 'string', default: '8' },
      out: { type: 'string', default: 'bench/results/fuzz.json' },
    },
  });
  const n = (name: string, v: string | undefined, min: number) => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < min) throw new Error(`--${name}: an integer >= ${min}, got ${v}`);
    return x;
  };
  const opts: FuzzOptions = {
    requestsPerService: n('requests', values.requests, 1),
    seed: n('seed', values.seed, 0),
    concurrency: n('concurrency', values.concurrency, 1),
    deadlineMs: 10_000,
    log: (l) => process.stderr.write(`fuzz: ${l}\n`),
  };
  const root = mkdtempSync(join(tmpdir(), 'rmt-fuzz-'));
  // The last lines of each process, to show why one exited.
  const tails = new Map<string, string[]>();
  const cluster = await startCluster({
    workers: 1,
    backend: 'cpu',
    logs: (name, line) => {
      const t = tails.get(name) ?? [];
      t.push(line.slice(0, 600));
      if (t.length > 8) t.shift();
      tails.set(name, t);
    },
    heartbeatS: 0.5,
    workerTtlS: 3,
    // Requests name relative paths; whatever a service makes of them stays in the temporary folder.
    cwd: root,
  });
  try {
    const report = await fuzzCluster(cluster, root, opts);
    const out = resolve(values.out!);
    mkdirSync(resolve(out, '..'), { recursive: true });
    const provenance = {
      command: `npm run fuzz -- ${process.argv.slice(2).join(' ')}`.trim(),
      commit: gitCommit(),
      machine: `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node.js ${process.version}`,
      date: new Date().toISOString(),
    };
    writeFileSync(out, `${JSON.stringify({ ...provenance, ...report }, null, 2)}\n`);
    writeFileSync(out.replace(/\.json$/, '.md'), fuzzMarkdown(provenance, report));
    process.stderr.write(
      `fuzz: ${JSON.stringify({ failures: report.failures, healthMs: report.healthMs, exited: report.exited, run: report.run, seconds: report.seconds })}\nwrote ${out}\n`,
    );
    for (const e of report.exited) {
      const name = e.split(' ')[0]!;
      process.stderr.write(`fuzz: ${e}; its last lines:\n${(tails.get(name) ?? []).join('\n')}\n`);
    }
    const healthy = Object.values(report.healthMs).every((ms) => ms >= 0 && ms <= HEALTH_DEADLINE_MS);
    return Object.keys(report.failures).length === 0 &&
      healthy &&
      report.exited.length === 0 &&
      report.run.sameMetrics
      ? 0
      : 1;
  } finally {
    await cluster.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`fuzz: ${(e as Error).stack ?? e}\n`);
      process.exit(2);
    },
  );
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** The status counts per service as a table, with where and how they were made. */
function fuzzMarkdown(
  p: { command: string; commit: string; machine: string; date: string },
  r: Awaited<ReturnType<typeof fuzzCluster>>,
): string {
  const codes = [...new Set(Object.values(r.services).flatMap((s) => Object.keys(s.statuses)))].sort();
  const rows = Object.entries(r.services).map(
    ([name, s]) =>
      `| ${name} | ${s.calls} | ${codes.map((c) => s.statuses[c] ?? 0).join(' | ')} | ${r.healthMs[name] ?? '-'} |`,
  );
  return [
    '# Fuzzing the services',
    '',
    `\`${p.command}\` at ${p.commit} on ${p.machine}, ${p.date}.`,
    '',
    `| service | calls | ${codes.join(' | ')} | health check after (ms) |`,
    `|---|---:|${codes.map(() => '---:').join('|')}|---:|`,
    ...rows,
    '',
    `Processes that exited: ${r.exited.length === 0 ? 'none' : r.exited.join('; ')}. The tiny run fuzzed alongside ended ${r.run.state} with ${r.run.sameMetrics ? 'the same metrics as' : 'other metrics than'} the run without fuzzing. INTERNAL or UNKNOWN: ${Object.keys(r.failures).length === 0 ? 'none' : JSON.stringify(r.failures)}. ${r.seconds.toFixed(0)} s.`,
    '',
  ].join('\n');
}
