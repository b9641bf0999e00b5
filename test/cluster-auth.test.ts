/**
 * A local cluster (`rmt up`'s startCluster) with its own nats-server and bearer-token gRPC: NATS
 * refuses connections without a service's key, and a service's key publishes only that service's
 * events, so forged worker heartbeats (from an anonymous client or another service's key) never
 * reach the coordinator and a run under a flood of them finishes as without; the gRPC services refuse
 * calls without the cluster's token or with a wrong one (UNAUTHENTICATED).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { connect, type NatsConnection, nkeyAuthenticator } from 'nats';
import type { Cluster } from '../cli/up.js';
import { BUS_ROLES, type BusRole, type WorkerHeartbeat } from '../shared/bus/index.js';
import { coordinatorClient, healthCheck } from '../shared/rpc/client.js';
import { Status } from '../shared/rpc/errors.js';
import { RunState } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { findNatsServer } from './helpers/nats-server.js';
import { startTestCluster } from './helpers/test-cluster.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

const root = mkdtempSync(join(tmpdir(), 'rmt-cluster-auth-'));
const logs: string[] = [];
let cluster: Cluster | undefined;
const haveNats = findNatsServer() !== null;
const natsTest = haveNats ? test.serial : test.serial.skip;

test.before(async () => {
  if (!haveNats) return;
  cluster = await startTestCluster(logs, {
    workers: 1,
    auth: 'token',
    dataRoot: root,
  });
});
test.after.always(async () => {
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** A NATS connection as `role` (its key from the cluster), or anonymous. */
function natsAs(role: BusRole | null): Promise<NatsConnection> {
  const seed = role ? readFileSync(cluster!.busSeeds![role], 'utf8').trim() : null;
  return connect({
    servers: cluster!.nats,
    name: `test-${role ?? 'anonymous'}`,
    authenticator: seed ? nkeyAuthenticator(new TextEncoder().encode(seed)) : undefined,
    reconnect: false,
  });
}

const beat = (id: string): string =>
  JSON.stringify({
    worker_id: id,
    address: '127.0.0.1:1',
    weight_version: 0,
    busy: false,
    run_id: null,
    ts: Date.now(),
  } satisfies WorkerHeartbeat);

/** Heartbeats `role`'s connection gets through to a coordinator-key listener, of `sent`. */
async function heartbeatsThrough(from: NatsConnection, id: string): Promise<number> {
  const listener = await natsAs('coordinator');
  let got = 0;
  const sub = listener.subscribe('rmt.workers.heartbeat', {
    callback: (_e, m) => {
      if (JSON.parse(new TextDecoder().decode(m.data)).worker_id === id) got++;
    },
  });
  await listener.flush();
  for (let i = 0; i < 5; i++) from.publish('rmt.workers.heartbeat', beat(id));
  await from.flush().catch(() => {});
  await new Promise((r) => setTimeout(r, 300));
  sub.unsubscribe();
  await listener.close();
  return got;
}

natsTest(
  'NATS refuses a connection without a service key; each key publishes only its own events',
  async (t) => {
    t.truthy(cluster!.busSeeds);
    t.deepEqual(Object.keys(cluster!.busSeeds!).sort(), [...BUS_ROLES].sort());
    const anonymous = await t.throwsAsync(natsAs(null));
    t.regex(
      `${(anonymous as { code?: string }).code} ${anonymous!.message}`,
      /AUTHORIZATION_VIOLATION|Authorization/i,
    );

    for (const role of ['scorer', 'learner', 'coordinator'] as const) {
      const nc = await natsAs(role);
      t.is(await heartbeatsThrough(nc, `forged-by-${role}`), 0, `${role} cannot send worker heartbeats`);
      await nc.close().catch(() => {});
    }
    // A worker cannot subscribe to another service's events or announce weights.
    const worker = await natsAs('rollout');
    const errors: string[] = [];
    void (async () => {
      for await (const s of worker.status()) if (s.type === 'error') errors.push(String(s.data));
    })();
    worker.subscribe('rmt.workers.heartbeat');
    worker.publish('rmt.weights.published', '{}');
    worker.publish('rmt.metrics.step', '{}');
    await worker.flush().catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    // The server refuses all three and says so to the client; the connection stays up.
    t.deepEqual(errors, ['PERMISSIONS_VIOLATION', 'PERMISSIONS_VIOLATION', 'PERMISSIONS_VIOLATION']);
    await worker.close().catch(() => {});
  },
);

natsTest(
  'a run under a flood of forged heartbeats and calls without the token finishes, with only the real worker in its pool',
  async (t) => {
    const steps = 4;
    const cfg = tinyRunConfig(tinyBaseCheckpoint(root), join(root, 'out'), 'rmt', steps);
    const forgers = await Promise.all([natsAs('scorer'), natsAs('learner')]);
    const flood = setInterval(() => {
      for (const [i, nc] of forgers.entries()) nc.publish('rmt.workers.heartbeat', beat(`forged-${i}`));
    }, 20);
    const anonymousTries = setInterval(() => {
      natsAs(null).then(
        (nc) => nc.close(),
        () => {},
      );
    }, 50);
    const { coordinator } = cluster!.addresses;
    // Calls without the token, or with a wrong one, are refused before any handler runs.
    for (const opts of [{}, { token: 'f'.repeat(64) }]) {
      const c = coordinatorClient(coordinator, opts);
      const e = await t.throwsAsync(c.startRun({ config: JSON.stringify(cfg) }, { deadlineMs: 5_000 }));
      t.is((e as unknown as { code: Status }).code, Status.UNAUTHENTICATED);
      c.close();
    }
    t.is(await healthCheck(coordinator, '', { deadlineMs: 3_000 }), 'SERVING', 'probes need no token');

    const client = coordinatorClient(coordinator, cluster!.clientOptions);
    try {
      const start = await client.startRun({ config: JSON.stringify(cfg) });
      let last = start;
      for await (const s of client.watchRun({ runId: start.runId })) last = s;
      t.is(last.state, RunState.RUN_STATE_DONE, `${last.error}\n${logs.slice(-20).join('\n')}`);
      t.is(last.step, steps);
      const { workers } = await client.listWorkers({});
      t.deepEqual(
        workers.map((w) => w.workerId),
        ['rollout-0'],
        'only the real worker was ever in the pool',
      );
    } finally {
      clearInterval(flood);
      clearInterval(anonymousTries);
      client.close();
      await Promise.all(forgers.map((nc) => nc.close().catch(() => {})));
    }
    // The coordinator never heard of a forged worker.
    t.false(logs.some((l) => l.startsWith('[coordinator]') && l.includes('forged-')));
    // While a worker's key does send heartbeats (after the run: the coordinator would take it in).
    const worker = await natsAs('rollout');
    t.is(await heartbeatsThrough(worker, 'rollout-key'), 5);
    await worker.close();
  },
);
