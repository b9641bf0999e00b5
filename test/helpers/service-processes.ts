// The four services as real processes (`rmt serve`), plaintext on loopback, each on a port chosen
// once so that a process killed and started again is found where its peers expect it.
//
//   const s = await startServices({ root, nats: nats.url, workers: 1 });
//   s.proc('learner').kill();            // SIGKILL
//   await s.proc('learner').start();     // same port, same flags
//   await s.stop();

import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { waitServing } from '../../cli/up.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

export interface ServiceProcess {
  readonly name: string;
  readonly address: string;
  readonly metricsPort: number;
  /** Starts the process (again) and waits until its gRPC server reports SERVING. */
  start(): Promise<void>;
  /** SIGKILL: no shutdown hook runs. Resolves once the process has exited. */
  kill(): Promise<void>;
  readonly running: boolean;
}

export interface Services {
  proc(name: string): ServiceProcess;
  coordinator: string;
  /** Every process's log lines so far, prefixed with its name. */
  logs: string[];
  stop(): Promise<void>;
}

export interface ServicesOptions {
  root: string;
  nats: string;
  workers: number;
  /** Learner processes: `learner` (rank 0, the leader) and `learner-1`, ... (1 by default). */
  learners?: number;
  /** Extra flags per service kind (scorer, learner, rollout, coordinator). */
  flags?: Partial<Record<'scorer' | 'learner' | 'rollout' | 'coordinator', string[]>>;
}

export async function startServices(o: ServicesOptions): Promise<Services> {
  const logs: string[] = [];
  const procs = new Map<string, ServiceProcess>();
  const ports = async () => ({ port: await freePort(), metrics: await freePort() });
  const scorer = await ports();
  const learner = await ports();
  const followers = [];
  for (let i = 1; i < (o.learners ?? 1); i++) followers.push(await ports());
  const coordinator = await ports();
  const make = (name: string, kind: string, p: { port: number; metrics: number }, args: string[]) => {
    let child: ChildProcess | null = null;
    const address = `127.0.0.1:${p.port}`;
    const proc: ServiceProcess = {
      name,
      address,
      metricsPort: p.metrics,
      get running() {
        return child !== null && child.exitCode === null && child.signalCode === null;
      },
      async start() {
        const c = spawn(
          process.execPath,
          [
            'bin/rmt.js',
            'serve',
            kind,
            ...['--host', '127.0.0.1', '--port', String(p.port), '--metrics-port', String(p.metrics)],
            ...['--bus', o.nats, '--data-root', o.root],
            ...args,
            ...(o.flags?.[kind as 'scorer'] ?? []),
          ],
          { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RMT_LOG_FORMAT: 'json' } },
        );
        child = c;
        let buf = '';
        const onData = (d: Buffer) => {
          buf += d.toString();
          for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
            logs.push(`[${name}] ${buf.slice(0, i)}`);
            buf = buf.slice(i + 1);
          }
        };
        c.stdout?.on('data', onData);
        c.stderr?.on('data', onData);
        await waitServing(address, 120_000);
      },
      async kill() {
        const c = child;
        if (!c || c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise<void>((r) => c.once('exit', () => r()));
        c.kill('SIGKILL');
        await exited;
      },
    };
    procs.set(name, proc);
    return proc;
  };
  const backend = ['--backend', 'cpu'];
  make('scorer', 'scorer', scorer, backend);
  make('learner', 'learner', learner, backend);
  for (const [i, p] of followers.entries()) make(`learner-${i + 1}`, 'learner', p, backend);
  const learners = [learner, ...followers].map((p) => `127.0.0.1:${p.port}`).join(',');
  for (let i = 0; i < o.workers; i++) {
    make(`rollout-${i}`, 'rollout', await ports(), [
      ...backend,
      ...['--learner', `127.0.0.1:${learner.port}`, '--worker-id', `rollout-${i}`],
    ]);
  }
  make('coordinator', 'coordinator', coordinator, [
    ...['--scorer', `127.0.0.1:${scorer.port}`, '--learner', learners],
  ]);
  const stop = async () => {
    await Promise.all(
      [...procs.values()].map(async (p) => {
        if (p.running) await p.kill();
      }),
    );
  };
  try {
    await Promise.all([...procs.values()].map((p) => p.start()));
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n${logs.slice(-20).join('\n')}`);
  }
  return {
    proc: (name) => {
      const p = procs.get(name);
      if (!p) throw new Error(`no process ${name}`);
      return p;
    },
    coordinator: `127.0.0.1:${coordinator.port}`,
    logs,
    stop,
  };
}
