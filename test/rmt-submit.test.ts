// `rmt submit` against a stand-in coordinator: it sends the run config, follows the run, follows an
// active run instead of starting another, and speaks TLS where the coordinator serves it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { submit } from '../cli/submit.js';
import { failedPrecondition, handleServerStream, handleUnary } from '../shared/rpc/errors.js';
import {
  CoordinatorServiceService,
  RunState,
  RunStatus,
  type StartRunRequest,
} from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { bindService, startServer } from '../shared/rpc/server.js';
import { at, testCerts } from './helpers/k8s.js';

// --- rmt submit ---------------------------------------------------------------------------------

/** A stand-in coordinator: StartRun once (then FAILED_PRECONDITION), WatchRun running then `outcome`. */
async function standInCoordinator(opts: { tls?: { cert: string; key: string } } = {}) {
  const started: StartRunRequest[] = [];
  const state = { outcome: RunState.RUN_STATE_DONE };
  const status = (p: Partial<RunStatus>) =>
    RunStatus.fromPartial({
      runId: 'rmt-1',
      method: 'rmt',
      totalSteps: 2,
      outDir: '/var/lib/rmt/runs/rmt',
      ...p,
    });
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    reflection: false,
    tls: opts.tls,
    services: [
      bindService(CoordinatorServiceService, {
        startRun: handleUnary(async (req) => {
          if (started.length > 0) throw failedPrecondition('run "rmt-1" is still active; StopRun it first');
          started.push(req);
          return status({ state: RunState.RUN_STATE_PREPARING });
        }),
        getRunStatus: handleUnary(async () => status({ state: RunState.RUN_STATE_RUNNING, step: 1 })),
        watchRun: handleServerStream(async function* () {
          yield status({ state: RunState.RUN_STATE_RUNNING, step: 1, metrics: { 'critic/score/mean': 0.5 } });
          yield status({
            state: state.outcome,
            step: 2,
            error: state.outcome === RunState.RUN_STATE_FAILED ? 'boom' : '',
          });
        }),
        stopRun: handleUnary(async () => status({ state: RunState.RUN_STATE_STOPPED })),
        listWorkers: handleUnary(async () => ({ workers: [] })),
      }),
    ],
  });
  return { server, started, state };
}

test('rmt submit sends the run config, follows the run, and follows an active run instead of starting another', async (t) => {
  const { server, started, state } = await standInCoordinator();
  try {
    const config = at('k8s/base/config/run.yaml');
    const out: string[] = [];
    const err: string[] = [];
    const run = (argv: string[], env: Record<string, string> = {}) =>
      submit(
        argv,
        { RMT_COORDINATOR: server.address, ...env },
        (l) => out.push(l),
        (l) => err.push(l),
      );
    t.is(await run(['--config', config, '--steps', '2', '--wait-s', '10']), 0);
    t.is(started[0].config, readFileSync(config, 'utf8'));
    t.is(started[0].steps, 2);
    const lines = out.map((l) => JSON.parse(l));
    t.deepEqual(
      lines.map((l) => l.state),
      ['preparing', 'running', 'done'],
    );
    t.is(lines[1].score, 0.5);
    out.length = 0;
    state.outcome = RunState.RUN_STATE_FAILED;
    t.is(await run([], { RMT_CONFIG: config }), 1, 'a failed run exits 1');
    t.regex(err.join('\n'), /still active.*; following the active run/);
    t.deepEqual(
      out.map((l) => JSON.parse(l).state),
      ['running', 'failed'],
    );
    out.length = 0;
    t.is(await run(['--config', config, '--no-watch']), 0);
    t.deepEqual(out, []);
  } finally {
    await server.shutdown(0);
  }
  t.is(
    await submit(
      ['--config', at('k8s/base/config/run.yaml'), '--coordinator', '127.0.0.1:1', '--wait-s', '0.2'],
      {},
      () => {},
      () => {},
    ),
    3,
  );
});

test('rmt submit speaks TLS to a coordinator that serves it (--tls-ca), as k8s/components/tls sets it up', async (t) => {
  const c = testCerts();
  if (!c) {
    t.log('openssl not installed: no test certificates');
    t.pass();
    return;
  }
  const { server, started } = await standInCoordinator({
    tls: { cert: join(c.dir, 'tls.crt'), key: join(c.dir, 'tls.key') },
  });
  try {
    const config = at('k8s/base/config/run.yaml');
    const port = server.address.split(':').at(-1);
    const quiet = () => {};
    // As after a port-forward: the certificate names localhost.
    const argv = ['--config', config, '--coordinator', `localhost:${port}`, '--wait-s', '5'];
    t.is(await submit(argv, { RMT_TLS_CA: join(c.dir, 'ca.crt') }, quiet, quiet), 0);
    t.is(started.length, 1);
    t.is(await submit([...argv.slice(0, -1), '1'], {}, quiet, quiet), 3, 'plaintext to a TLS coordinator');
  } finally {
    await server.shutdown(0);
  }
});
