// Clean stop of a service process. Kubernetes sends SIGTERM and, after terminationGracePeriodSeconds
// (30 s by default), SIGKILL; a worker that uses that window to finish or hand back its in-flight
// rollouts loses no work. Handlers run once, in reverse registration order like `defer`: what was
// started last (a gRPC server accepting calls) depends on what was started first (the model, the bus)
// and has to stop before it.

import { createLogger, type Logger } from '../obs/log.js';

/** Awaited when it returns a promise; typed loosely so `() => server.close()` fits whatever close returns. */
export type ShutdownHandler = (reason: string) => unknown;
type ShutdownLog = Pick<Logger, 'info' | 'warn' | 'error'>;

export interface ShutdownOptions {
  /** Signals that start the shutdown; default SIGTERM and SIGINT. */
  signals?: readonly NodeJS.Signals[];
  /**
   * After this long the process exits with code 1 even if handlers are still running. One deadline
   * covers the whole shutdown: the largest timeoutMs given among the handlers that run, or 25 s
   * (inside Kubernetes' default 30 s grace) when none gives one. Only explicit values count, so a
   * service's main can set it while libraries register handlers without an opinion.
   */
  timeoutMs?: number;
  /** Names the handler in log lines, e.g. the one still running at the timeout. */
  name?: string;
  /** Default: a logger for service `$RMT_SERVICE` (or `rmt`); the last one registered is used. */
  log?: ShutdownLog;
}

interface Entry {
  handler: ShutdownHandler;
  signals: ReadonlySet<NodeJS.Signals>;
  timeoutMs: number | undefined;
  name: string;
}

const DEFAULT_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];
const DEFAULT_TIMEOUT_MS = 25_000;

const entries: Entry[] = [];
const listeners = new Map<NodeJS.Signals, () => void>();
let chosenLog: ShutdownLog | undefined;
let running: Promise<void> | undefined;
let seq = 0;

function log(): ShutdownLog {
  if (chosenLog !== undefined) return chosenLog;
  const service = process.env.RMT_SERVICE || 'rmt';
  try {
    chosenLog = createLogger({ service });
  } catch {
    // A bad RMT_LOG_LEVEL must not stop the process from shutting down.
    chosenLog = createLogger({ service, level: 'info', format: 'json' });
  }
  return chosenLog;
}

function syncListeners(): void {
  if (running !== undefined) return; // keep them: a second signal must force the exit, not kill silently
  const wanted = new Set(entries.flatMap((e) => [...e.signals]));
  for (const [sig, fn] of listeners) {
    if (!wanted.has(sig)) {
      process.off(sig, fn);
      listeners.delete(sig);
    }
  }
  for (const sig of wanted) {
    if (listeners.has(sig)) continue;
    const fn = () => onSignal(sig);
    process.on(sig, fn);
    listeners.set(sig, fn);
  }
}

function onSignal(sig: NodeJS.Signals): void {
  if (running !== undefined) {
    log().error('second signal during shutdown, exiting now', { signal: sig });
    process.exit(1);
  }
  void run(sig, 0, (e) => e.signals.has(sig));
}

function run(reason: string, exitCode: number, select: (e: Entry) => boolean): Promise<void> {
  if (running !== undefined) return running;
  const todo = entries.filter(select).reverse();
  const given = todo.flatMap((e) => (e.timeoutMs === undefined ? [] : [e.timeoutMs]));
  const timeoutMs = given.length > 0 ? Math.max(...given) : DEFAULT_TIMEOUT_MS;
  let current: string | undefined;
  // Deferred a microtask so that `running` is set before any handler runs: a handler that itself
  // calls requestShutdown must get this run back, not start a second one.
  running = Promise.resolve().then(async () => {
    log().info('shutting down', { reason, handlers: todo.length, timeoutMs });
    const timer = setTimeout(() => {
      log().error('shutdown timed out, exiting', { reason, timeoutMs, pending: current });
      process.exit(1);
    }, timeoutMs);
    let code = exitCode;
    for (const e of todo) {
      current = e.name;
      try {
        await e.handler(reason);
      } catch (err) {
        // The remaining handlers still run: one failed cleanup is no reason to skip the others.
        log().error('shutdown handler failed', { handler: e.name, err });
        code = 1;
      }
    }
    clearTimeout(timer);
    log().info('shutdown complete', { reason, exitCode: code });
    process.exit(code);
  });
  return running;
}

/**
 * Registers `handler` to run once when one of `opts.signals` arrives (or on requestShutdown). After
 * the handlers the process exits: 0, or 1 if a handler threw, the timeout passed or a second signal
 * came. Returns a function that unregisters the handler.
 */
export function onShutdown(handler: ShutdownHandler, opts: ShutdownOptions = {}): () => void {
  const timeoutMs = opts.timeoutMs;
  if (timeoutMs !== undefined && !(timeoutMs >= 0)) {
    throw new Error(`onShutdown: timeoutMs must be >= 0, got ${timeoutMs}`);
  }
  const entry: Entry = {
    handler,
    signals: new Set(opts.signals ?? DEFAULT_SIGNALS),
    timeoutMs,
    name: opts.name ?? `handler-${++seq}`,
  };
  if (opts.log !== undefined) chosenLog = opts.log;
  entries.push(entry);
  syncListeners();
  return () => {
    const i = entries.indexOf(entry);
    if (i >= 0) entries.splice(i, 1);
    syncListeners();
  };
}

/**
 * Runs every registered handler as if a signal had come, then exits with `exitCode` (1 if a handler
 * fails): for a process that is done (a finished run) or cannot go on (a fatal error).
 */
export function requestShutdown(reason: string, exitCode = 0): Promise<void> {
  return run(reason, exitCode, () => true);
}
