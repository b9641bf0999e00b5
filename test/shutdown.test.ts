import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/shutdown-child.ts', import.meta.url));

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string[];
  logs: Record<string, unknown>[];
  ms: number;
}

/**
 * Starts the fixture with `scenario`, and once it prints "ready" runs `drive` (which sends signals);
 * resolves with how the child ended. `ms` is measured from the first signal.
 */
function runChild(
  scenario: string,
  drive: (
    kill: (s: NodeJS.Signals) => void,
    waitFor: (line: string) => Promise<void>,
  ) => Promise<void> | void,
): Promise<Exit> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, scenario], {
    cwd: ROOT,
    env: { ...process.env, RMT_LOG_LEVEL: 'debug', RMT_LOG_FORMAT: 'json', RMT_SERVICE: 'fixture' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let firstSignalAt = 0;
  const waiters: { line: string; resolve: () => void }[] = [];
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const w of waiters) if (out.split('\n').includes(w.line)) w.resolve();
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const waitFor = (line: string) =>
    new Promise<void>((resolve) => {
      waiters.push({ line, resolve });
      if (out.split('\n').includes(line)) resolve();
    });
  const kill = (s: NodeJS.Signals) => {
    firstSignalAt ||= Date.now();
    child.kill(s);
  };
  // A hung child must fail the test, not hang it.
  const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      const logs = err
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      if (err.split('\n').some((l) => l !== '' && !l.startsWith('{'))) {
        reject(new Error(`child wrote non-log stderr:\n${err}`));
        return;
      }
      const lines = out.split('\n').filter((l) => l !== '' && l !== 'ready');
      resolve({ code, signal, stdout: lines, logs, ms: firstSignalAt ? Date.now() - firstSignalAt : 0 });
    });
    waitFor('ready').then(() => drive(kill, waitFor), reject);
  });
}

test('SIGTERM runs handlers once in reverse registration order, then exits 0', async (t) => {
  const r = await runChild('order', (kill) => kill('SIGTERM'));
  t.deepEqual(r.stdout, ['ran third SIGTERM', 'ran second SIGTERM', 'ran first SIGTERM']);
  t.is(r.code, 0);
  t.like(r.logs[0], {
    level: 'info',
    service: 'fixture',
    msg: 'shutting down',
    reason: 'SIGTERM',
    handlers: 3,
  });
  t.like(r.logs.at(-1), { msg: 'shutdown complete', exitCode: 0 });
});

test('SIGINT works the same by default', async (t) => {
  const r = await runChild('order', (kill) => kill('SIGINT'));
  t.deepEqual(r.stdout, ['ran third SIGINT', 'ran second SIGINT', 'ran first SIGINT']);
  t.is(r.code, 0);
});

test('a throwing handler is logged, the others still run, exit code 1', async (t) => {
  const r = await runChild('throws', (kill) => kill('SIGTERM'));
  t.deepEqual(r.stdout, ['ran third', 'ran first']);
  t.is(r.code, 1);
  const failed = r.logs.find((l) => l.msg === 'shutdown handler failed');
  t.like(failed, { level: 'error', handler: 'broken', err: { message: 'cleanup failed' } });
});

test('handlers that do not finish: hard exit with code 1 and a log line after timeoutMs', async (t) => {
  const r = await runChild('timeout', (kill) => kill('SIGTERM'));
  t.deepEqual(r.stdout, ['started stuck']);
  t.is(r.code, 1);
  t.like(r.logs.at(-1), {
    level: 'error',
    msg: 'shutdown timed out, exiting',
    timeoutMs: 300,
    pending: 'stuck',
  });
  t.true(r.ms >= 300 && r.ms < 5000, `${r.ms} ms`);
});

test('a second signal forces the exit', async (t) => {
  const r = await runChild('second-signal', async (kill, waitFor) => {
    kill('SIGTERM');
    await waitFor('started stuck');
    kill('SIGINT');
  });
  t.is(r.code, 1);
  t.like(r.logs.at(-1), {
    level: 'error',
    msg: 'second signal during shutdown, exiting now',
    signal: 'SIGINT',
  });
  // Far below the 60 s timeout of the stuck handler.
  t.true(r.ms < 5000, `${r.ms} ms`);
});

test('only the handlers registered for the signal that came run', async (t) => {
  const term = await runChild('per-signal', (kill) => kill('SIGTERM'));
  t.deepEqual(term.stdout, ['ran both', 'ran term-only']);
  const int = await runChild('per-signal', (kill) => kill('SIGINT'));
  t.deepEqual(int.stdout, ['ran both', 'ran int-only']);
  t.is(int.code, 0);
});

test('requestShutdown runs all handlers once without a signal and exits with the given code', async (t) => {
  const r = await runChild('request', () => {});
  t.deepEqual(r.stdout, ['ran second run finished', 'ran first run finished']);
  t.is(r.code, 3);
  t.is(r.logs.filter((l) => l.msg === 'shutting down').length, 1);
});

test('after the last handler is unregistered the signal has its default effect', async (t) => {
  const r = await runChild('unregistered', (kill) => kill('SIGTERM'));
  t.deepEqual(r.stdout, []);
  t.is(r.signal, 'SIGTERM');
  t.deepEqual(r.logs, []);
});
