import { spawnSync } from 'node:child_process';
import test from 'ava';
import { createLogger, type LoggerOptions } from '../shared/obs/log.js';

const NOW = new Date('2025-01-02T03:04:05.678Z');

function capture(opts: Partial<LoggerOptions> = {}) {
  const lines: string[] = [];
  const log = createLogger({ service: 'svc', env: {}, now: () => NOW, write: (l) => lines.push(l), ...opts });
  const records = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, lines, records };
}

test('json: one object per line with ts, level, service, msg first, then the fields', (t) => {
  const { log, lines, records } = capture();
  log.info('step done', { step: 3, loss: 1.25 });
  t.is(lines.length, 1);
  t.false(lines[0].includes('\n'));
  t.deepEqual(records()[0], {
    ts: NOW.toISOString(),
    level: 'info',
    service: 'svc',
    msg: 'step done',
    step: 3,
    loss: 1.25,
  });
  t.deepEqual(Object.keys(records()[0]).slice(0, 4), ['ts', 'level', 'service', 'msg']);
});

test('threshold: info by default, from RMT_LOG_LEVEL, and the option over the env', (t) => {
  const def = capture();
  def.log.debug('hidden');
  def.log.info('i');
  def.log.warn('w');
  def.log.error('e');
  t.deepEqual(
    def.records().map((r) => r.level),
    ['info', 'warn', 'error'],
  );
  t.false(def.log.enabled('debug'));

  const fromEnv = capture({ env: { RMT_LOG_LEVEL: 'DEBUG' } });
  fromEnv.log.debug('shown');
  t.is(fromEnv.lines.length, 1);
  t.is(fromEnv.log.level, 'debug');

  const opt = capture({ env: { RMT_LOG_LEVEL: 'debug' }, level: 'error' });
  opt.log.warn('hidden');
  opt.log.error('shown');
  t.deepEqual(
    opt.records().map((r) => r.msg),
    ['shown'],
  );
});

test('a bad RMT_LOG_LEVEL or RMT_LOG_FORMAT is an error naming the variable', (t) => {
  t.throws(() => capture({ env: { RMT_LOG_LEVEL: 'verbose' } }), {
    message: /RMT_LOG_LEVEL=verbose.*debug, info/,
  });
  t.throws(() => capture({ env: { RMT_LOG_FORMAT: 'xml' } }), { message: /RMT_LOG_FORMAT=xml/ });
});

test('child adds fields; call fields override bound ones; children share the threshold', (t) => {
  const { log, records } = capture({ fields: { pod: 'p1' } });
  const worker = log.child({ worker: 'w1', step: 0 });
  const deeper = worker.child({ rollout: 7 });
  worker.info('a', { step: 5 });
  deeper.warn('b');
  deeper.debug('dropped');
  log.info('c');
  const [a, b, c] = records();
  t.like(a, { pod: 'p1', worker: 'w1', step: 5, msg: 'a' });
  t.like(b, { pod: 'p1', worker: 'w1', step: 0, rollout: 7, level: 'warn' });
  t.deepEqual(Object.keys(c), ['ts', 'level', 'service', 'msg', 'pod']);
  t.is(records().length, 3);
});

test('errors are serialised with name, message, stack, code and cause', (t) => {
  const { log, records } = capture();
  const cause = Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
  const err = new TypeError('bus down', { cause });
  log.error('publish failed', { err, subject: 'rmt.weights.published' });
  log.error('bare error as fields', err);
  const [r1, r2] = records();
  const e = r1.err as Record<string, unknown>;
  t.is(e.name, 'TypeError');
  t.is(e.message, 'bus down');
  t.regex(e.stack as string, /TypeError: bus down\n\s+at /);
  t.like(e.cause, { name: 'Error', message: 'connection refused', code: 'ECONNREFUSED' });
  t.is(r1.subject, 'rmt.weights.published');
  t.like(r2.err, { message: 'bus down' });
});

test('logging never throws on odd fields and cannot overwrite the envelope', (t) => {
  const { log, records } = capture();
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const shared = { x: 1 };
  t.notThrows(() =>
    log.info('odd', { cyclic, big: 2n ** 70n, pair: [shared, shared], msg: 'mine', level: 'x' }),
  );
  const r = records()[0];
  t.deepEqual(r.cyclic, { a: 1, self: '[Circular]' });
  t.is(r.big, '1180591620717411303424');
  // The same object twice is not a cycle.
  t.deepEqual(r.pair, [{ x: 1 }, { x: 1 }]);
  t.is(r.msg, 'odd');
  t.is(r.level, 'info');
  t.is(r._msg, 'mine');
  t.is(r._level, 'x');
});

test('text format: a readable one-liner, stack indented below', (t) => {
  const { log, lines } = capture({ env: { RMT_LOG_FORMAT: 'text' } });
  t.is(log.format, 'text');
  log.info('worker started', { worker: 'w1', budget: 256, note: 'two words', ok: true });
  t.is(
    lines[0],
    `${NOW.toISOString()} INFO  [svc] worker started worker=w1 budget=256 note="two words" ok=true`,
  );
  log.error('failed', { err: new Error('boom') });
  const [first, ...rest] = lines[1].split('\n');
  t.is(first, `${NOW.toISOString()} ERROR [svc] failed err="Error: boom"`);
  t.is(rest[0], '    Error: boom');
  t.true(rest.length > 1 && rest.every((l) => l.startsWith('    ')));
});

test('by default lines go to stderr, not stdout', (t) => {
  const script = [
    "import { createLogger } from './shared/obs/log.js';",
    "createLogger({ service: 'child' }).info('to stderr', { n: 1 });",
  ].join('\n');
  const res = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, RMT_LOG_LEVEL: '', RMT_LOG_FORMAT: '' },
  });
  t.is(res.status, 0, res.stderr);
  t.is(res.stdout, '');
  const rec = JSON.parse(res.stderr.trim());
  t.like(rec, { level: 'info', service: 'child', msg: 'to stderr', n: 1 });
});
