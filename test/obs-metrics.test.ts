import test from 'ava';
import { Counter, Gauge } from 'prom-client';
import { ServiceMetrics, serveMetrics } from '../shared/obs/metrics.js';
import { stepGauges, stepMetricName } from '../shared/obs/step-gauges.js';

/** Value of the series `name` with exactly `labels` in exposition text; label order does not matter. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]),
    );
    const want = Object.entries(labels);
    if (Object.keys(got).length === want.length && want.every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function get(port: number, path: string, method = 'GET') {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

test('serves /metrics, /healthz and /readyz on an ephemeral port', async (t) => {
  const m = new ServiceMetrics({ service: 'learner' });
  const steps = m.counter({
    name: 'learner_steps_total',
    help: 'optimizer steps taken',
    labelNames: ['kind'],
  });
  steps.inc({ kind: 'grpo' }, 3);
  let ready = false;
  const srv = await serveMetrics({ port: 0, host: '127.0.0.1', registry: m.registry, ready: () => ready });
  t.teardown(() => srv.close());
  t.true(srv.port > 0);

  const metrics = await get(srv.port, '/metrics');
  t.is(metrics.status, 200);
  t.regex(metrics.type, /^text\/plain; version=0\.0\.4/);
  t.regex(metrics.body, /# TYPE rmt_learner_steps_total counter/);
  t.is(sample(metrics.body, 'rmt_learner_steps_total', { kind: 'grpo', service: 'learner' }), 3);
  // Default process metrics carry the service label too.
  t.true(sample(metrics.body, 'process_cpu_user_seconds_total', { service: 'learner' })! > 0);
  t.not(sample(metrics.body, 'nodejs_eventloop_lag_seconds', { service: 'learner' }), undefined);

  t.like(await get(srv.port, '/healthz'), { status: 200, body: 'ok\n' });
  t.like(await get(srv.port, '/readyz'), { status: 503 });
  ready = true;
  t.like(await get(srv.port, '/readyz'), { status: 200, body: 'ready\n' });
  t.like(await get(srv.port, '/readyz?verbose=1'), { status: 200 });
  t.like(await get(srv.port, '/nope'), { status: 404 });
  t.like(await get(srv.port, '/metrics', 'POST'), { status: 405 });
  t.like(await get(srv.port, '/metrics', 'HEAD'), { status: 200, body: '' });
});

test('readiness: absent means ready, a throwing check means not ready', async (t) => {
  const m = new ServiceMetrics({ service: 's', defaultMetrics: false });
  const always = await serveMetrics({ port: 0, host: '127.0.0.1', registry: m.registry });
  const broken = await m.serve({
    port: 0,
    host: '127.0.0.1',
    ready: () => {
      throw new Error('no bus');
    },
  });
  t.teardown(() => Promise.all([always.close(), broken.close()]));
  t.is((await get(always.port, '/readyz')).status, 200);
  t.is((await get(broken.port, '/readyz')).status, 503);
  t.is((await get(broken.port, '/healthz')).status, 200);
});

test('two services in one process: same metric names, separate registries, own service label', async (t) => {
  const a = new ServiceMetrics({ service: 'rollout', labels: { instance: 'w1' } });
  const b = new ServiceMetrics({ service: 'coordinator' });
  const ca = a.counter({ name: 'rollouts_total', help: 'rollouts generated' });
  const cb = b.counter({ name: 'rollouts_total', help: 'rollouts dispatched' });
  t.not(ca, cb);
  ca.inc(5);
  cb.inc(2);
  const [sa, sb] = await Promise.all([a.metrics(), b.metrics()]);
  t.is(sample(sa, 'rmt_rollouts_total', { service: 'rollout', instance: 'w1' }), 5);
  t.is(sample(sb, 'rmt_rollouts_total', { service: 'coordinator' }), 2);
  t.false(sa.includes('coordinator'));
  t.false(sb.includes('rollout"'));

  const [pa, pb] = await Promise.all([
    a.serve({ port: 0, host: '127.0.0.1' }),
    b.serve({ port: 0, host: '127.0.0.1' }),
  ]);
  t.teardown(() => Promise.all([pa.close(), pb.close()]));
  t.not(pa.port, pb.port);
  t.is(sample((await get(pb.port, '/metrics')).body, 'rmt_rollouts_total', { service: 'coordinator' }), 2);
});

test('helpers add the rmt_ prefix once and return the existing metric on a repeated declaration', async (t) => {
  const m = new ServiceMetrics({ service: 'scorer', defaultMetrics: false });
  const g1 = m.gauge({ name: 'queue_depth', help: 'documents waiting' });
  const g2 = m.gauge({ name: 'rmt_queue_depth', help: 'documents waiting' });
  t.is(g1, g2);
  t.true(g1 instanceof Gauge);
  g1.set(4);

  const h = m.histogram({
    name: 'score_seconds',
    help: 'time per document',
    labelNames: ['tier'],
    buckets: [0.1, 1],
  });
  h.observe({ tier: 'high' }, 0.5);
  const text = await m.metrics();
  const series = { tier: 'high', service: 'scorer' };
  t.is(sample(text, 'rmt_queue_depth', { service: 'scorer' }), 4);
  t.is(sample(text, 'rmt_score_seconds_bucket', { le: '0.1', ...series }), 0);
  t.is(sample(text, 'rmt_score_seconds_bucket', { le: '1', ...series }), 1);
  t.is(sample(text, 'rmt_score_seconds_count', series), 1);
  t.false(text.includes('process_cpu'));

  t.throws(() => m.counter({ name: 'queue_depth', help: 'x' }), { message: /rmt_queue_depth.*Gauge/ });
  t.throws(() => m.gauge({ name: 'queue_depth', help: 'x', labelNames: ['tier'] }), {
    message: /already registered/,
  });
  t.throws(() => m.counter({ name: 'c', help: 'x', labelNames: ['service'] }), {
    message: /label "service"/,
  });
  t.true(m.counter({ name: 'c_total', help: 'x' }) instanceof Counter);
});

test('close() returns promptly with keep-alive connections open and is idempotent', async (t) => {
  const m = new ServiceMetrics({ service: 's', defaultMetrics: false });
  const srv = await m.serve({ port: 0, host: '127.0.0.1' });
  await get(srv.port, '/healthz');
  const started = Date.now();
  await Promise.all([srv.close(), srv.close()]);
  t.true(Date.now() - started < 1000);
  await t.throwsAsync(() => fetch(`http://127.0.0.1:${srv.port}/healthz`));
});

test('listening on a taken port rejects', async (t) => {
  const m = new ServiceMetrics({ service: 's', defaultMetrics: false });
  const first = await m.serve({ port: 0, host: '127.0.0.1' });
  t.teardown(() => first.close());
  await t.throwsAsync(() => m.serve({ port: first.port, host: '127.0.0.1' }), { code: 'EADDRINUSE' });
});

test('every metric of a step row is a gauge under a Prometheus-safe name; non-finite values are not set', async (t) => {
  const m = new ServiceMetrics({ service: 'coordinator', defaultMetrics: false });
  const set = stepGauges(m);
  set({ step: 3, 'critic/score/mean': 0.25, 'curriculum/p_easy': 0.6, 'eval/avg': Number.NaN });
  set({ step: 4, 'critic/score/mean': 0.5 });
  const text = await m.metrics();
  t.is(stepMetricName('timing_s/gen'), 'train_timing_s_gen');
  t.is(sample(text, 'rmt_train_step', { service: 'coordinator' }), 4);
  t.is(sample(text, 'rmt_train_critic_score_mean', { service: 'coordinator' }), 0.5);
  t.is(sample(text, 'rmt_train_curriculum_p_easy', { service: 'coordinator' }), 0.6);
  t.false(text.includes('rmt_train_eval_avg'));
});
