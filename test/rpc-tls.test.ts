/**
 * gRPC over TLS and mutual TLS, end to end through the library's server and client and the
 * `rmt status` command, with a throwaway CA made by openssl (skipped where openssl is missing).
 *
 * The server side is a coordinator that answers GetRunStatus and ListWorkers from fixed messages: what
 * is under test is the transport and the CLI's TLS flags, not the coordinator (test/services.test.ts
 * runs the real one).
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { status } from '../cli/status.js';
import { coordinatorClient } from '../shared/rpc/client.js';
import { Status } from '../shared/rpc/errors.js';
import {
  CoordinatorServiceService,
  ListWorkersResponse,
  RunState,
  RunStatus,
} from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { bindService, type RunningServer, startServer } from '../shared/rpc/server.js';

const dir = mkdtempSync(join(tmpdir(), 'rmt-tls-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

/** CA, a server certificate for localhost / 127.0.0.1 and a client certificate; false without openssl. */
function makeCerts(): boolean {
  const ssl = (...args: string[]) => spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,DNS:rmt-coordinator,IP:127.0.0.1\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  const steps = [
    ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=rmt test CA', '-days', '2'],
    ['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=rmt-coordinator'],
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial'],
    ['req', ...ec, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=rmt-cli'],
    ['x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial'],
  ];
  steps[2].push('-out', 'server.crt', '-days', '2', '-extfile', 'server.ext');
  steps[4].push('-out', 'client.crt', '-days', '2', '-extfile', 'client.ext');
  return steps.every((a) => {
    const r = ssl(...a);
    return !r.error && r.status === 0;
  });
}
const haveCerts = makeCerts();
const tlsTest = haveCerts ? test.serial : test.serial.skip;
if (!haveCerts) console.log('rpc-tls.test: no openssl for test certificates: skipped');
const f = (name: string) => join(dir, name);

const RUN = RunStatus.fromPartial({
  runId: 'tls-run',
  state: RunState.RUN_STATE_RUNNING,
  step: 3,
  totalSteps: 10,
  budget: 24,
  workers: 1,
});

async function serve(mutual: boolean): Promise<RunningServer> {
  const unimplemented = (_call: unknown, callback: (e: { code: Status; details: string }) => void) =>
    callback({ code: Status.UNIMPLEMENTED, details: 'not in this test' });
  return startServer({
    host: '127.0.0.1',
    port: 0,
    services: [
      bindService(CoordinatorServiceService, {
        getRunStatus: (_call, callback) => callback(null, RUN),
        listWorkers: (_call, callback) => callback(null, ListWorkersResponse.fromPartial({ workers: [] })),
        startRun: unimplemented as never,
        stopRun: unimplemented as never,
        watchRun: (call) => {
          call.write(RUN);
          call.end();
        },
      }),
    ],
    tls: { cert: f('server.crt'), key: f('server.key'), ...(mutual ? { ca: f('ca.crt') } : {}) },
    reflection: false,
  });
}

/** `rmt status` with `args`; its exit code and output lines. */
async function runStatus(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await status(
    args,
    {},
    (l) => out.push(l),
    (l) => err.push(l),
  ).catch((e: Error) => {
    err.push(e.message);
    return 1;
  });
  return { code, out, err };
}

tlsTest('TLS: the client verifies the server with the CA; plaintext and unknown CAs fail', async (t) => {
  const server = await serve(false);
  t.teardown(() => server.shutdown(0));
  const tls = coordinatorClient(server.address, { tls: { ca: f('ca.crt') } });
  t.like(await tls.getRunStatus({ runId: '' }, { deadlineMs: 10_000 }), { runId: 'tls-run', step: 3 });
  tls.close();

  const plain = coordinatorClient(server.address);
  await t.throwsAsync(plain.getRunStatus({ runId: '' }, { deadlineMs: 3_000 }), { any: true });
  plain.close();
  // the server's own certificate as the CA: not the issuer, so verification fails
  const wrong = coordinatorClient(server.address, { tls: { ca: f('server.crt') } });
  await t.throwsAsync(wrong.getRunStatus({ runId: '' }, { deadlineMs: 3_000 }), { any: true });
  wrong.close();

  const ok = await runStatus(['--coordinator', server.address, '--tls-ca', f('ca.crt')]);
  t.is(ok.code, 0, ok.err.join('\n'));
  t.regex(ok.out[0], /^tls-run running step 3\/10 B=24/);
  // a name the certificate holds, other than the address's host
  const named = await runStatus([
    '--coordinator',
    server.address,
    '--tls-ca',
    f('ca.crt'),
    '--tls-server-name',
    'rmt-coordinator',
    '--json',
  ]);
  t.is(named.code, 0, named.err.join('\n'));
  t.is(JSON.parse(named.out[0]).runId, 'tls-run');
});

tlsTest('mutual TLS: the server refuses a client without a certificate from its CA', async (t) => {
  const server = await serve(true);
  t.teardown(() => server.shutdown(0));
  const anonymous = await runStatus(['--coordinator', server.address, '--tls-ca', f('ca.crt')]);
  t.not(anonymous.code, 0);
  const withCert = await runStatus([
    '--coordinator',
    server.address,
    '--tls-ca',
    f('ca.crt'),
    '--tls-cert',
    f('client.crt'),
    '--tls-key',
    f('client.key'),
  ]);
  t.is(withCert.code, 0, withCert.err.join('\n'));
  t.regex(withCert.out[0], /^tls-run running/);
});

/** examples/python/rmt_client.py with `args`: exit code and output (the Python client over TLS). */
function runPython(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const python = process.env.RMT_PYTHON ?? '/usr/bin/python3';
  return new Promise((resolve) => {
    execFile(
      python,
      ['examples/python/rmt_client.py', ...args],
      { timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
      },
    );
  });
}

tlsTest('the Python client speaks TLS and mutual TLS with the same flags', async (t) => {
  for (const mutual of [false, true]) {
    const server = await serve(mutual);
    try {
      const base = ['--status', '--coordinator', server.address, '--timeout', '10', '--tls-ca', f('ca.crt')];
      const cert = ['--tls-cert', f('client.crt'), '--tls-key', f('client.key')];
      const ok = await runPython(
        mutual ? [...base, ...cert] : [...base, '--tls-server-name', 'rmt-coordinator'],
      );
      t.is(ok.code, 0, ok.stderr);
      t.regex(ok.stdout, /^tls-run step 3\/10 running B=24/);
      if (mutual) {
        const refused = await runPython([...base.slice(0, 3), '--timeout', '3', '--tls-ca', f('ca.crt')]);
        t.is(refused.code, 2, refused.stderr);
        t.regex(refused.stderr, /UNAVAILABLE/); // the handshake fails, not the arguments
      }
    } finally {
      await server.shutdown(0);
    }
  }
});

test('rmt status refuses TLS flags that cannot work together', async (t) => {
  const half = await runStatus(['--tls-cert', 'client.crt']);
  t.is(half.code, 2);
  t.regex(half.err.join('\n'), /--tls-cert and --tls-key go together/);
  const nameOnly = await runStatus(['--tls-server-name', 'x']);
  t.is(nameOnly.code, 2);
  t.regex(nameOnly.err.join('\n'), /--tls-server-name needs TLS/);
});
