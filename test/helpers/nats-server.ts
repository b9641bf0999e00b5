// A private nats-server (JetStream on, loopback, random port, throwaway store) for one test file, so
// tests never share state with each other or with a server someone runs on 4222.
//
//   const nats = await startNatsServer();
//   test.after.always(() => nats.stop());
//   ... NatsBus.connect({ servers: nats.url, name: 'test' }) ...

import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface NatsServer {
  /** `nats://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** The JetStream store directory (removed by stop() unless the caller passed it in). */
  storeDir: string;
  /** The server's log so far (for assertion messages). */
  log(): string;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s), waits for it to exit, removes the store. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash: no goodbye to the clients. Waits for the exit; the store is handled as by stop(). */
  kill(): Promise<void>;
}

export interface NatsServerOptions {
  /** Listen on this port instead of a random free one (to restart a server where clients expect it). */
  port?: number;
  /**
   * Use this JetStream store instead of a fresh temporary one; it is then the caller's and is kept on
   * stop(), so a restarted server finds its streams and consumers again.
   */
  storeDir?: string;
  /** Give up waiting for "Server is ready" after this long; default 15 s. */
  startTimeoutMs?: number;
  /** Extra command-line arguments, e.g. ['--max_payload', '2MB']. */
  args?: string[];
}

// Debian installs the server in /usr/sbin, which is not on a normal user's PATH.
const EXTRA_DIRS = ['/usr/sbin', '/usr/local/sbin', '/usr/local/bin'];

export function findNatsServer(): string | null {
  const override = process.env.NATS_SERVER_BIN;
  if (override) return override;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const d of dirs) {
    const p = join(d, 'nats-server');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

// Servers still running when this process exits, killed synchronously in an 'exit' handler. The shell
// wrapper below covers the exits that run no handler (SIGKILL, a crash).
const running = new Map<number, string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [pid, dir] of running) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });
}

// Runs the server under sh as a child that watches our end of a pipe: when this process dies for any
// reason its end closes, `read` returns, the server is terminated and its store removed. The first
// stdout line is the server's pid.
const WRAPPER = `
exec 3<&0
"$0" "$@" </dev/null &
s=$!
echo "$s"
( read -r _ <&3; kill -TERM "$s" 2>/dev/null ) &
w=$!
wait "$s"
st=$?
kill "$w" 2>/dev/null
[ -n "$RMT_NATS_STORE" ] && rm -rf "$RMT_NATS_STORE"
exit "$st"
`;

export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServer> {
  const bin = findNatsServer();
  if (!bin) {
    throw new Error(
      'nats-server is not installed (not on PATH nor in /usr/sbin): install it with `apt-get install nats-server` ' +
        '(CI does), or point NATS_SERVER_BIN at the binary',
    );
  }
  installExitHook();
  const ownStore = opts.storeDir === undefined;
  const storeDir = opts.storeDir ?? mkdtempSync(join(tmpdir(), 'rmt-nats-'));
  const removable = ownStore ? storeDir : '';
  const args = [
    '-js',
    '-sd',
    storeDir,
    '-a',
    '127.0.0.1',
    '-p',
    String(opts.port ?? -1),
    ...(opts.args ?? []),
  ];
  const child = spawn('sh', ['-c', WRAPPER, bin, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, RMT_NATS_STORE: removable },
  });
  let log = '';
  let pid = 0;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    log += d;
  });
  child.stdout.on('data', (d: string) => {
    if (pid === 0) {
      pid = Number.parseInt(d, 10);
      if (pid > 0) running.set(pid, removable);
    }
  });

  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      child.stdin?.end();
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      const killer = setTimeout(() => {
        if (pid > 0) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        child.kill('SIGKILL');
      }, 5000);
      await exited;
      clearTimeout(killer);
      running.delete(pid);
      if (removable) rmSync(removable, { recursive: true, force: true });
    })();
    return stopped;
  };

  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`nats-server did not start within ${opts.startTimeoutMs ?? 15000} ms:\n${log}`)),
        opts.startTimeoutMs ?? 15000,
      );
      const onData = () => {
        const m = /Listening for client connections on [^\s]*:(\d+)/.exec(log);
        if (m && log.includes('Server is ready')) {
          clearTimeout(timer);
          child.stderr.off('data', onData);
          resolve(Number(m[1]));
        }
      };
      // Registered after the appending listener, so it sees each chunk already in `log`.
      child.stderr.on('data', onData);
      exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited with code ${code} before it was ready:\n${log}`));
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    await waitForTcp(port, 5000);
    const kill = async () => {
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await stop();
    };
    return { url: `nats://127.0.0.1:${port}`, port, storeDir, log: () => log, stop, kill };
  } catch (err) {
    await stop();
    throw err;
  }
}

// "Server is ready" is logged once the listener exists; one real connection makes sure of it.
async function waitForTcp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = tcpConnect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nats-server on port ${port} does not accept connections`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
