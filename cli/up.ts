import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { BusRole } from '../shared/bus/permissions.js';
import { BACKEND_FLAG, METHOD_FLAG } from '../shared/config/config-flags.js';
import { runConfigText } from '../shared/config/config-text.js';
import { defineFlags, parseServiceFlagsOrExit, withoutEnv } from '../shared/config/service-flags.js';
import { SERVICE_LIMITS } from '../shared/config/service-limits.js';
import { type ClientOptions, coordinatorClient, healthClient } from '../shared/rpc/client.js';
import { RunState } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { progress } from '../shared/util/progress.js';
import { writeLocalNatsConfig } from './local-nats.js';
import { haveOpenssl, makeLocalPki } from './local-pki.js';

/**
 * `rmt up`: a local cluster on this machine. Starts nats-server (JetStream), the scorer, the
 * learner (or several data-parallel learners, `--learners`), N rollout workers and the coordinator, each its own process on loopback, runs one
 * training job through them and stops everything. Ctrl-C stops the run after its step in flight
 * (with a checkpoint: `rmt up` again resumes) and then the processes. Every gRPC call is mutual TLS
 * with a throwaway CA by default (docs/security.md).
 */
export const UP_USAGE = `usage: rmt up --config <yaml> [--rollout-workers N] [--learners N] [--method M] [--steps N] [--set section.key=value]

the training job on a local cluster: nats-server and the four services as processes`;

const CLUSTER_AUTH_CHOICES = ['mtls', 'token', 'none'] as const;

/** rmt up's flags; those that set a config field take their choices from the config schema. */
export const UP_FLAGS = withoutEnv(
  defineFlags({
    config: { type: 'string', arg: '<yaml>', doc: 'run configuration (configs/)' },
    set: {
      type: 'list',
      env: false,
      arg: '<section.key=value>',
      doc: 'override one config field, checked as the file is, e.g. --set train.lr=3e-4',
    },
    'rollout-workers': { type: 'int', default: 2, min: 1, doc: 'rollout worker processes' },
    learners: {
      type: 'int',
      default: 1,
      min: 1,
      max: SERVICE_LIMITS.max_learners,
      doc: 'learner processes; more than one split each step data-parallel (docs/services.md)',
    },
    method: METHOD_FLAG,
    steps: { type: 'int', min: 1, doc: 'override train.steps' },
    out: { type: 'string', arg: '<dir>', doc: 'override run.out_dir' },
    backend: BACKEND_FLAG,
    nats: { type: 'string', arg: '<nats://host:port>', doc: 'an existing nats-server (default: start one)' },
    'data-root': {
      type: 'string',
      arg: '<dir>',
      doc: "the only folder the run's paths may name (default: the working folder)",
    },
    auth: {
      type: 'enum',
      choices: CLUSTER_AUTH_CHOICES,
      default: 'mtls',
      doc: 'how the gRPC calls are authenticated',
    },
  }),
);

/**
 * How the processes of a local cluster authenticate each other's gRPC calls: mutual TLS with a
 * throwaway CA, a throwaway bearer token, or nothing (any process of this machine can call them).
 */
export type ClusterAuth = (typeof CLUSTER_AUTH_CHOICES)[number];
export const CLUSTER_AUTH: readonly ClusterAuth[] = CLUSTER_AUTH_CHOICES;

/** The roles that get a certificate: one per service (all rollout workers share one) and the client. */
const CERT_NAMES = ['scorer', 'learner', 'rollout', 'coordinator', 'client'] as const;
type CertName = (typeof CERT_NAMES)[number];

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
  /** How the gRPC calls are authenticated. */
  auth: ClusterAuth;
  /** Each service's NATS key (an nkey seed file), when the cluster runs its own nats-server. */
  busSeeds: Record<BusRole, string> | null;
  /** What a client of this cluster's services needs (the client certificate, or the token). */
  clientOptions: ClientOptions;
  /** The same as flags of `rmt status`, `rmt submit` and examples/python/rmt_client.py. */
  clientFlags: string[];
  /** `learner` is rank 0 of `learners` (the leader). */
  addresses: { scorer: string; learner: string; learners: string[]; coordinator: string; rollout: string[] };
  stop(): Promise<void>;
  /** Starts one more rollout worker (e.g. mid-run); returns its process. */
  addWorker(id: string): Promise<ChildProcess>;
  children: Map<string, ChildProcess>;
}

export interface ClusterOptions {
  workers: number;
  /** Learner processes (1 by default); with more, each step is split over them data-parallel. */
  learners?: number;
  backend?: string;
  /** An existing nats-server; when unset one is started on a free port with JetStream in a temp dir. */
  nats?: string;
  /** Where each process's JSON log lines go (stderr lines prefixed by name when unset). */
  logs?: (name: string, line: string) => void;
  heartbeatS?: number;
  workerTtlS?: number;
  /** The services' data root (--data-root): run paths must lie under it; the working folder when unset. */
  dataRoot?: string;
  /** 'mtls' by default ('token' where openssl is missing). */
  auth?: ClusterAuth;
  /** Working folder of the service processes (relative paths in requests resolve there); this one's by default. */
  cwd?: string;
}

interface Secrets {
  auth: ClusterAuth;
  /** Flags of the service process of a role. */
  flags(role: Exclude<CertName, 'client'>): string[];
  client: ClientOptions;
  clientFlags: string[];
}

/** The certificates or the token of a cluster, in `dir` (private to this user). */
function makeSecrets(dir: string, wanted: ClusterAuth, log: (line: string) => void): Secrets {
  let auth = wanted;
  if (auth === 'mtls' && !haveOpenssl()) {
    log('no openssl for the cluster certificates: calls are authenticated by a bearer token instead');
    auth = 'token';
  }
  if (auth === 'mtls') {
    const pki = makeLocalPki(dir, CERT_NAMES);
    return {
      auth,
      flags: (role) => {
        const { cert, key } = pki.certs[role];
        return [
          ...['--tls-cert', cert, '--tls-key', key, '--tls-ca', pki.ca],
          ...['--peer-tls-ca', pki.ca, '--peer-tls-cert', cert, '--peer-tls-key', key],
          // Every certificate names localhost; an IP address is no name to send in TLS (SNI).
          ...['--peer-tls-server-name', 'localhost'],
        ];
      },
      client: {
        tls: { ca: pki.ca, cert: pki.certs.client.cert, key: pki.certs.client.key, serverName: 'localhost' },
      },
      clientFlags: [
        '--tls-ca',
        pki.ca,
        '--tls-cert',
        pki.certs.client.cert,
        '--tls-key',
        pki.certs.client.key,
      ],
    };
  }
  if (auth === 'token') {
    const token = randomBytes(32).toString('hex');
    const file = join(dir, 'auth.token');
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    const flags = ['--auth-token-file', file];
    return { auth, flags: () => flags, client: { token }, clientFlags: flags };
  }
  return { auth, flags: () => [], client: {}, clientFlags: [] };
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
  const secretsDir = mkdtempSync(join(tmpdir(), 'rmt-up-secrets-'));
  // The services' NATS keys, when this cluster runs its own nats-server.
  let busSeeds: Record<BusRole, string> | null = null;
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
    rmSync(secretsDir, { recursive: true, force: true });
  };
  try {
    const secrets = makeSecrets(secretsDir, o.auth ?? 'mtls', (line) => logs('up', line));
    if (!nats) {
      const port = await freePort();
      natsDir = mkdtempSync(join(tmpdir(), 'rmt-nats-'));
      const natsConf = writeLocalNatsConfig(secretsDir, port, natsDir);
      busSeeds = natsConf.seeds;
      const child = spawn(natsServerBinary(), ['-c', natsConf.conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.once('error', (e) =>
        logs('nats', `cannot start nats-server (apt-get install nats-server): ${e.message}`),
      );
      watch('nats', child);
      nats = `nats://127.0.0.1:${port}`;
      await waitForPort(port, 10_000);
    }
    const [scorerPort, learnerPort, coordPort] = [await freePort(), await freePort(), await freePort()];
    const learnerPorts = [learnerPort];
    for (let i = 1; i < (o.learners ?? 1); i++) learnerPorts.push(await freePort());
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
        cwd: o.cwd,
      });
      watch(name, child);
      return child;
    };
    const addresses = {
      scorer: `127.0.0.1:${scorerPort}`,
      learner: `127.0.0.1:${learnerPort}`,
      learners: learnerPorts.map((p) => `127.0.0.1:${p}`),
      coordinator: `127.0.0.1:${coordPort}`,
      rollout: [] as string[],
    };
    const wait = (address: string) => waitServing(address, 120_000, secrets.client);
    const auth = (role: BusRole) => [
      ...secrets.flags(role),
      ...(busSeeds ? ['--bus-nkey-seed', busSeeds[role]] : []),
    ];
    serve('scorer', ['scorer', ...common(scorerPort), ...backend, ...auth('scorer')]);
    // Rank 0 is `learner` (the leader, whose weights the workers pull); the others learner-1, ...
    for (const [rank, port] of learnerPorts.entries()) {
      const name = rank === 0 ? 'learner' : `learner-${rank}`;
      serve(name, ['learner', ...common(port), ...backend, ...auth('learner')]);
    }
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
        ...auth('rollout'),
      ]);
      addresses.rollout.push(`127.0.0.1:${port}`);
      await wait(`127.0.0.1:${port}`);
      return child;
    };
    const coordArgs = [
      'coordinator',
      ...common(coordPort),
      '--scorer',
      addresses.scorer,
      '--learner',
      addresses.learners.join(','),
      ...auth('coordinator'),
    ];
    serve('coordinator', [...coordArgs, '--worker-ttl-s', String(o.workerTtlS ?? 5)]);
    await Promise.all([
      wait(addresses.scorer),
      ...addresses.learners.map(wait),
      wait(addresses.coordinator),
      ...Array.from({ length: o.workers }, (_, i) => addWorker(`rollout-${i}`)),
    ]);
    return {
      nats: nats!,
      auth: secrets.auth,
      busSeeds,
      clientOptions: secrets.client,
      clientFlags: secrets.clientFlags,
      addresses,
      stop,
      addWorker,
      children,
    };
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
export async function waitServing(address: string, ms: number, opts: ClientOptions = {}): Promise<void> {
  const h = healthClient(address, opts);
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
  const values = parseServiceFlagsOrExit(UP_FLAGS, UP_USAGE, argv, {});
  const workers = values.rolloutWorkers;
  const auth = values.auth;
  if (!values.config) {
    process.stderr.write(`${UP_USAGE}\n`);
    return 2;
  }
  const config = runConfigText(values.config, values.set, { absoluteRoot: true });
  const verbose = process.env.RMT_UP_LOGS === '1';
  const cluster = await startCluster({
    workers,
    learners: values.learners,
    backend: values.backend,
    nats: values.nats,
    dataRoot: values.dataRoot,
    auth,
    logs: (name, line) => {
      if (verbose || /"level":"(warn|error)"|^\S*Error|level=(warn|error)/.test(line))
        process.stderr.write(`[${name}] ${line}\n`);
    },
  });
  process.stderr.write(
    `cluster up: nats ${cluster.nats}, coordinator ${cluster.addresses.coordinator}, ${cluster.addresses.learners.length} learner(s), ${workers} rollout workers, gRPC auth ${cluster.auth}\n`,
  );
  const client = coordinatorClient(cluster.addresses.coordinator, cluster.clientOptions);
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
      config,
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
