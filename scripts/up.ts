import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { configTextForCoordinator } from '../shared/config/data-sources.js';
import { coordinatorClient, healthClient } from '../shared/rpc/client.js';
import { RunState } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { progress } from '../shared/util/progress.js';

/**
 * `rmt up`: a local cluster on this machine. Starts nats-server (JetStream), the scorer, the
 * learner, N rollout workers and the coordinator, each its own process on loopback, runs one
 * training job through them and stops everything. Ctrl-C stops the run after its step in flight
 * (with a checkpoint: `rmt up` again resumes) and then the processes.
 */
export const UP_USAGE = `usage: rmt up --config <yaml> [--rollout-workers N] [--method M] [--steps N] [--out DIR]
            [--backend B] [--nats nats://host:port] [--logs DIR] [--data-root DIR]
  --data-root: the only folder the run's paths may name (default: the working folder)`;

const root = resolve(new URL('..', import.meta.url).pathname);

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

export interface Cluster {
  nats: string;
  addresses: { scorer: string; learner: string; coordinator: string; rollout: string[] };
  stop(): Promise<void>;
  /** Starts one more rollout worker (e.g. mid-run); returns its process. */
  addWorker(id: string): Promise<ChildProcess>;
  children: Map<string, ChildProcess>;
}

export interface ClusterOptions {
  workers: number;
  backend?: string;
  /** An existing nats-server; when unset one is started on a free port with JetStream in a temp dir. */
  nats?: string;
  /** Where each process's JSON log lines go (stderr lines prefixed by name when unset). */
  logs?: (name: string, line: string) => void;
  heartbeatS?: number;
  workerTtlS?: number;
  /** The services' data root (--data-root): run paths must lie under it; the working folder when unset. */
  dataRoot?: string;
}

/** Starts the processes of a local cluster and waits until every gRPC server reports SERVING. */
export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const children = new Map<string, ChildProcess>();
  const logs = o.logs ?? ((name, line) => process.stderr.write(`[${name}] ${line}\n`));
  const watch = (name: string, child: ChildProcess) => {
    children.set(name, child);
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      let i = buf.indexOf('\n');
      while (i >= 0) {
        logs(name, buf.slice(0, i));
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  };
  let natsDir: string | null = null;
  let nats = o.nats;
  const stop = async () => {
    const order = [...children.entries()].reverse();
    await Promise.all(
      order.map(
        ([, c]) =>
          new Promise<void>((done) => {
            if (c.exitCode !== null || c.signalCode !== null) return done();
            c.once('exit', () => done());
            c.kill('SIGTERM');
            setTimeout(() => c.kill('SIGKILL'), 70_000).unref();
          }),
      ),
    );
    if (natsDir) rmSync(natsDir, { recursive: true, force: true });
  };
  try {
    if (!nats) {
      const port = await freePort();
      natsDir = mkdtempSync(join(tmpdir(), 'rmt-nats-'));
      const child = spawn(
        natsServerBinary(),
        ['-js', '-sd', natsDir, '-a', '127.0.0.1', '-p', String(port)],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      child.once('error', (e) =>
        logs('nats', `cannot start nats-server (apt-get install nats-server): ${e.message}`),
      );
      watch('nats', child);
      nats = `nats://127.0.0.1:${port}`;
      await waitForPort(port, 10_000);
    }
    const [scorerPort, learnerPort, coordPort] = [await freePort(), await freePort(), await freePort()];
    const common = (port: number) => [
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--bus',
      nats!,
      '--metrics-port',
      '0',
      ...(o.dataRoot ? ['--data-root', o.dataRoot] : []),
    ];
    const backend = o.backend ? ['--backend', o.backend] : [];
    const serve = (name: string, args: string[]) => {
      const child = spawn(process.execPath, [join(root, 'bin/rmt.js'), 'serve', ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, RMT_LOG_FORMAT: process.env.RMT_LOG_FORMAT ?? 'json' },
      });
      watch(name, child);
      return child;
    };
    const addresses = {
      scorer: `127.0.0.1:${scorerPort}`,
      learner: `127.0.0.1:${learnerPort}`,
      coordinator: `127.0.0.1:${coordPort}`,
      rollout: [] as string[],
    };
    serve('scorer', ['scorer', ...common(scorerPort), ...backend]);
    serve('learner', ['learner', ...common(learnerPort), ...backend]);
    const addWorker = async (id: string) => {
      const port = await freePort();
      const child = serve(id, [
        'rollout',
        ...common(port),
        ...backend,
        '--learner',
        addresses.learner,
        '--worker-id',
        id,
        '--heartbeat-s',
        String(o.heartbeatS ?? 1),
      ]);
      addresses.rollout.push(`127.0.0.1:${port}`);
      await waitServing(`127.0.0.1:${port}`, 120_000);
      return child;
    };
    const coordArgs = [
      'coordinator',
      ...common(coordPort),
      '--scorer',
      addresses.scorer,
      '--learner',
      addresses.learner,
    ];
    serve('coordinator', [...coordArgs, '--worker-ttl-s', String(o.workerTtlS ?? 5)]);
    await Promise.all([
      waitServing(addresses.scorer, 120_000),
      waitServing(addresses.learner, 120_000),
      waitServing(addresses.coordinator, 120_000),
      ...Array.from({ length: o.workers }, (_, i) => addWorker(`rollout-${i}`)),
    ]);
    return { nats: nats!, addresses, stop, addWorker, children };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Debian installs nats-server in /usr/sbin, which is not on every user's PATH. */
function natsServerBinary(): string {
  if (process.env.NATS_SERVER_BIN) return process.env.NATS_SERVER_BIN;
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/local/sbin'])) {
    if (dir && existsSync(join(dir, 'nats-server'))) return join(dir, 'nats-server');
  }
  return 'nats-server';
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.end();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Polls the standard health service until the server reports SERVING. */
export async function waitServing(address: string, ms: number): Promise<void> {
  const h = healthClient(address);
  const end = Date.now() + ms;
  try {
    for (;;) {
      const s = await h.check('', { deadlineMs: 2000 }).catch(() => 'DOWN');
      if (s === 'SERVING') return;
      if (Date.now() > end) throw new Error(`${address} is not SERVING after ${ms / 1000} s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    h.close();
  }
}

/** `rmt up`: start the cluster, run the config's job through it, print its summary, stop. */
export async function up(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      'rollout-workers': { type: 'string', default: '2' },
      method: { type: 'string' },
      steps: { type: 'string' },
      out: { type: 'string' },
      backend: { type: 'string' },
      nats: { type: 'string' },
      'data-root': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.config) {
    process.stdout.write(`${UP_USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const workers = Number(values['rollout-workers']);
  if (!Number.isInteger(workers) || workers < 1)
    throw new Error(`--rollout-workers: a positive integer, got ${values['rollout-workers']}`);
  const verbose = process.env.RMT_UP_LOGS === '1';
  const cluster = await startCluster({
    workers,
    backend: values.backend,
    nats: values.nats,
    dataRoot: values['data-root'],
    logs: (name, line) => {
      if (verbose || /"level":"(warn|error)"|^\S*Error|level=(warn|error)/.test(line))
        process.stderr.write(`[${name}] ${line}\n`);
    },
  });
  process.stderr.write(
    `cluster up: nats ${cluster.nats}, coordinator ${cluster.addresses.coordinator}, ${workers} rollout workers\n`,
  );
  const client = coordinatorClient(cluster.addresses.coordinator);
  let stopping = false;
  const onSigint = () => {
    if (stopping) process.exit(130);
    stopping = true;
    process.stderr.write('\nstopping after this step (Ctrl-C again to abort)\n');
    client.stopRun({}).catch(() => {});
  };
  process.on('SIGINT', onSigint);
  try {
    const start = await client.startRun({
      config: configTextForCoordinator(values.config),
      method: values.method ?? '',
      steps: values.steps ? Number(values.steps) : 0,
      outDir: values.out ?? '',
    });
    const bar = progress(`train ${start.method} (${workers} workers)`, start.totalSteps, start.step);
    let last = start;
    for await (const s of client.watchRun({ runId: start.runId })) {
      last = s;
      bar.update(Number(s.step), {
        score: s.metrics['critic/score/mean'] ?? 0,
        len: s.metrics['response_length/mean'] ?? 0,
        B: s.budget,
        workers: s.workers,
      });
    }
    bar.stop();
    process.stdout.write(
      `${JSON.stringify({ run_id: last.runId, state: RunState[last.state], step: last.step, out_dir: last.outDir, error: last.error || undefined }, null, 2)}\n`,
    );
    return last.state === RunState.RUN_STATE_DONE || last.state === RunState.RUN_STATE_STOPPED ? 0 : 1;
  } finally {
    process.off('SIGINT', onSigint);
    client.close();
    await cluster.stop();
  }
}
