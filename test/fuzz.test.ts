/**
 * bench/fuzz.ts at CI size: a hundred generated requests per service (well-formed and malformed, from
 * the protos) against a local cluster over mutual TLS while a tiny run goes on. No process exits,
 * every service answers a health check within 1 s afterwards, the run ends with the metrics of the
 * same run without the requests, and no call ends INTERNAL or UNKNOWN.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { fuzzCluster, HEALTH_DEADLINE_MS } from '../bench/fuzz.js';
import type { Cluster } from '../cli/up.js';
import { findNatsServer } from './helpers/nats-server.js';
import { startTestCluster } from './helpers/test-cluster.js';

const root = mkdtempSync(join(tmpdir(), 'rmt-fuzz-test-'));
const logs: string[] = [];
let cluster: Cluster | undefined;
const fuzzTest = findNatsServer() ? test.serial : test.serial.skip;

test.after.always(async () => {
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
});

fuzzTest(
  'generated requests to every service: no crash, healthy after, the run unchanged, no INTERNAL or UNKNOWN',
  async (t) => {
    cluster = await startTestCluster(logs, {
      workers: 1,
      cwd: root,
    });
    const report = await fuzzCluster(cluster, root, {
      requestsPerService: 100,
      seed: 7,
      concurrency: 4,
      deadlineMs: 10_000,
    });
    const tail = logs.slice(-15).join('\n');
    t.deepEqual(report.exited, [], tail);
    for (const [service, ms] of Object.entries(report.healthMs)) {
      t.true(ms >= 0 && ms <= HEALTH_DEADLINE_MS, `${service}: health check in ${ms} ms`);
    }
    t.is(report.run.state, 'RUN_STATE_DONE', tail);
    t.true(report.run.sameMetrics, 'the run under fuzzing has the metrics of the quiet run');
    for (const s of Object.values(report.services)) t.is(s.calls, 100);
    // No call ends INTERNAL or UNKNOWN: every refusal is a status the client can act on.
    for (const [service, r] of Object.entries(report.services)) {
      for (const [method, m] of Object.entries(r.methods)) {
        t.deepEqual(m.failures, [], `${service}.${method}`);
      }
    }
    if (Object.keys(report.failures).length > 0) t.log('INTERNAL still:', JSON.stringify(report.failures));
  },
);
