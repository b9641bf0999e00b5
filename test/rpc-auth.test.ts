/**
 * Who may call an rmt service: loopback by default, mutual TLS with the local cluster's throwaway CA
 * (a client without a certificate, or with one from another CA, never gets a call through), and the
 * bearer-token alternative (UNAUTHENTICATED without the token, with a wrong one, or with one in the
 * wrong form; the health service stays open for probes).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Metadata } from '@grpc/grpc-js';
import test from 'ava';
import { haveOpenssl, makeLocalPki } from '../cli/local-pki.js';
import { FLAGS as COORDINATOR_FLAGS } from '../services/coordinator/main.js';
import { FLAGS as LEARNER_FLAGS } from '../services/learner/main.js';
import { FLAGS as ROLLOUT_FLAGS } from '../services/rollout/main.js';
import { FLAGS as SCORER_FLAGS } from '../services/scorer/main.js';
import { parseServiceFlags } from '../shared/config/service-flags.js';
import { readTokenFile, tokenMatches } from '../shared/rpc/auth.js';
import { type ClientOptions, coordinatorClient, healthCheck } from '../shared/rpc/client.js';
import { Status } from '../shared/rpc/errors.js';
import {
  CoordinatorServiceService,
  ListWorkersResponse,
  RunState,
  RunStatus,
} from '../shared/rpc/gen/rmt/v1/coordinator.js';
import {
  bindService,
  type RunningServer,
  type StartServerOptions,
  startServer,
} from '../shared/rpc/server.js';
import { decodeStatusDetails, STATUS_DETAILS_KEY } from '../shared/rpc/status-details.js';

const dir = mkdtempSync(join(tmpdir(), 'rmt-auth-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const RUN = RunStatus.fromPartial({ runId: 'auth-run', state: RunState.RUN_STATE_RUNNING, step: 2 });

/** A coordinator that answers GetRunStatus; what is under test is who gets an answer. */
function serve(o: Partial<StartServerOptions>): Promise<RunningServer> {
  const unimplemented = (_call: unknown, callback: (e: { code: Status; details: string }) => void) =>
    callback({ code: Status.UNIMPLEMENTED, details: 'not in this test' });
  return startServer({
    port: 0,
    services: [
      bindService(CoordinatorServiceService, {
        getRunStatus: (_call, callback) => callback(null, RUN),
        listWorkers: (_call, callback) => callback(null, ListWorkersResponse.fromPartial({})),
        startRun: unimplemented as never,
        stopRun: unimplemented as never,
        watchRun: (call) => {
          call.write(RUN);
          call.end();
        },
      }),
    ],
    reflection: false,
    ...o,
  });
}

/** The gRPC status a GetRunStatus (and a WatchRun) with these client options ends with; OK on success. */
async function statusOf(address: string, opts: ClientOptions): Promise<Status> {
  const c = coordinatorClient(address, opts);
  try {
    await c.getRunStatus({ runId: '' }, { deadlineMs: 5_000 });
    const updates: RunStatus[] = [];
    for await (const s of c.watchRun({ runId: '' }, { deadlineMs: 5_000 })) updates.push(s);
    return updates.length === 1 ? Status.OK : Status.UNKNOWN;
  } catch (e) {
    return (e as { code: Status }).code;
  } finally {
    c.close();
  }
}

test('rmt serve listens on loopback unless --host says otherwise; so does startServer', async (t) => {
  for (const flags of [COORDINATOR_FLAGS, LEARNER_FLAGS, ROLLOUT_FLAGS, SCORER_FLAGS]) {
    t.is(parseServiceFlags(flags, [], {}).host, '127.0.0.1');
    t.is(parseServiceFlags(flags, ['--host', '0.0.0.0'], {}).host, '0.0.0.0');
    t.is(parseServiceFlags(flags, [], { RMT_HOST: '::' }).host, '::');
  }
  const server = await serve({});
  t.teardown(() => server.shutdown(0));
  t.regex(server.address, /^127\.0\.0\.1:\d+$/);
});

const haveSsl = haveOpenssl();
const sslTest = haveSsl ? test : test.skip;

sslTest('mutual TLS with the local CA: only clients with a certificate from it get through', async (t) => {
  const ours = join(dir, 'pki');
  const theirs = join(dir, 'other-pki');
  mkdirSync(ours);
  mkdirSync(theirs);
  const pki = makeLocalPki(ours, ['coordinator', 'client']);
  const other = makeLocalPki(theirs, ['client'], 'another CA');
  const server = await serve({ tls: { ...pki.certs.coordinator, ca: pki.ca } });
  t.teardown(() => server.shutdown(0));

  t.is(await statusOf(server.address, { tls: { ca: pki.ca, ...pki.certs.client } }), Status.OK);
  // Under the name in the certificate, too (as services reached by another address do).
  t.is(
    await statusOf(server.address, { tls: { ca: pki.ca, ...pki.certs.client, serverName: 'coordinator' } }),
    Status.OK,
  );
  // The handshake fails: no call is made, whatever the method.
  t.is(await statusOf(server.address, {}), Status.UNAVAILABLE, 'plaintext');
  t.is(await statusOf(server.address, { tls: { ca: pki.ca } }), Status.UNAVAILABLE, 'no client certificate');
  t.is(
    await statusOf(server.address, { tls: { ca: pki.ca, ...other.certs.client } }),
    Status.UNAVAILABLE,
    'a client certificate from another CA',
  );
  // The client refuses a server its CA did not sign.
  t.is(
    await statusOf(server.address, { tls: { ca: other.ca, ...other.certs.client } }),
    Status.UNAVAILABLE,
    'a server certificate from another CA',
  );
  await t.throwsAsync(healthCheck(server.address, '', { deadlineMs: 3_000 }));
  t.is(await healthCheck(server.address, '', { tls: { ca: pki.ca, ...pki.certs.client } }), 'SERVING');
  // The CA's key is gone: nothing can sign another certificate with it.
  t.deepEqual(
    ['ca.crt', 'client.crt', 'client.key', 'coordinator.crt', 'coordinator.key'],
    (await import('node:fs')).readdirSync(ours).sort(),
  );
});

const TOKEN = 'c2f1d6a8e0b94f7a9d3e5b1c7a2f4e6d8b0c9a1e3f5d7b9c';

test('a bearer token: no token, a wrong one or a malformed header is UNAUTHENTICATED; health stays open', async (t) => {
  const server = await serve({ authToken: TOKEN });
  t.teardown(() => server.shutdown(0));
  t.is(await statusOf(server.address, { token: TOKEN }), Status.OK);
  t.is(await statusOf(server.address, {}), Status.UNAUTHENTICATED);
  t.is(await statusOf(server.address, { token: `${TOKEN.slice(0, -1)}0` }), Status.UNAUTHENTICATED);
  t.is(await statusOf(server.address, { token: `${TOKEN}x` }), Status.UNAUTHENTICATED);
  const c = coordinatorClient(server.address);
  for (const header of [TOKEN, `Basic ${TOKEN}`, `Bearer  ${TOKEN}`, `bearer ${TOKEN}`]) {
    const e = await t.throwsAsync(
      c.getRunStatus({}, { deadlineMs: 5_000, metadata: { authorization: header } }),
    );
    t.is((e as unknown as { code: Status }).code, Status.UNAUTHENTICATED, header);
    // The reply names neither token.
    t.false(e!.message.includes(TOKEN.slice(0, 16)), e!.message);
    // An ErrorInfo as on every other refusal, so clients branch on its reason.
    const trailer = (e as unknown as { metadata: Metadata }).metadata.get(STATUS_DETAILS_KEY)[0] as Buffer;
    const details = decodeStatusDetails(new Uint8Array(trailer));
    t.is(details.code, Status.UNAUTHENTICATED);
    t.is(details.reason, 'TOKEN_WRONG', header);
  }
  const none = await t.throwsAsync(c.getRunStatus({}, { deadlineMs: 5_000 }));
  const noneTrailer = (none as unknown as { metadata: Metadata }).metadata.get(
    STATUS_DETAILS_KEY,
  )[0] as Buffer;
  t.is(decodeStatusDetails(new Uint8Array(noneTrailer)).reason, 'TOKEN_MISSING');
  c.close();
  t.is(await healthCheck(server.address, '', { deadlineMs: 3_000 }), 'SERVING');
});

test('token files: a line of at least 32 printable characters; errors never show the content', (t) => {
  const file = (name: string, content: string) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  t.is(readTokenFile(file('ok.token', `  ${TOKEN}\n`)), TOKEN);
  const secret = 'short-secret-value';
  const short = t.throws(() => readTokenFile(file('short.token', secret)));
  t.regex(short.message, /short\.token: the token has 18 characters; at least 32/);
  t.false(short.message.includes(secret));
  const spaced = t.throws(() => readTokenFile(file('spaced.token', `${TOKEN} ${TOKEN}`)));
  t.regex(spaced.message, /one line of printable ASCII/);
  t.false(spaced.message.includes(TOKEN));
  t.regex(
    t.throws(() => readTokenFile(join(dir, 'missing.token'))).message,
    /cannot open .*missing\.token \(ENOENT\)/,
  );
  t.regex(
    t.throws(() => readTokenFile(file('big.token', 'x'.repeat(5000)))).message,
    /5000 bytes; .* at most 4096/,
  );
  t.regex(t.throws(() => readTokenFile(dir)).message, /is not a file/);
  t.true(tokenMatches(TOKEN, TOKEN));
  t.false(tokenMatches(TOKEN, ''));
  t.false(tokenMatches(TOKEN, TOKEN.toUpperCase()));
});

test('an error whose details hold a lone surrogate (a value cut short) reaches the client; the server stays up', async (t) => {
  const server = await startServer({
    port: 0,
    services: [
      bindService(CoordinatorServiceService, {
        getRunStatus: (call, callback) =>
          callback({ code: Status.NOT_FOUND, details: `no run ${call.request.runId.slice(0, 2)}` }),
        listWorkers: (_call, callback) => callback(null, ListWorkersResponse.fromPartial({})),
        startRun: (_call, callback) => callback({ code: Status.UNIMPLEMENTED }),
        stopRun: (_call, callback) => callback({ code: Status.UNIMPLEMENTED }),
        watchRun: (call) => call.end(),
      }),
    ],
    reflection: false,
  });
  t.teardown(() => server.shutdown(0));
  const c = coordinatorClient(server.address);
  t.teardown(() => c.close());
  // The handler cuts the id in the middle of the emoji's surrogate pair, as a truncated value would be.
  const e = await t.throwsAsync(c.getRunStatus({ runId: 'a\u{1F600}b' }, { deadlineMs: 5_000 }));
  t.is((e as unknown as { code: Status }).code, Status.NOT_FOUND);
  t.is((e as unknown as { details: string }).details, 'no run a\uFFFD');
  t.is(await healthCheck(server.address, '', { deadlineMs: 3_000 }), 'SERVING');
});

test('an error that quotes a huge value reaches the client cut short; its connection stays usable', async (t) => {
  const server = await startServer({
    port: 0,
    services: [
      bindService(CoordinatorServiceService, {
        getRunStatus: (call, callback) =>
          callback({ code: Status.NOT_FOUND, details: `run ${call.request.runId}: not found` }),
        listWorkers: (_call, callback) => callback(null, ListWorkersResponse.fromPartial({})),
        startRun: (_call, callback) => callback({ code: Status.UNIMPLEMENTED }),
        stopRun: (_call, callback) => callback({ code: Status.UNIMPLEMENTED }),
        watchRun: (call) => call.end(),
      }),
    ],
    reflection: false,
  });
  t.teardown(() => server.shutdown(0));
  const c = coordinatorClient(server.address);
  t.teardown(() => c.close());
  const e = await t.throwsAsync(c.getRunStatus({ runId: 'é'.repeat(100_000) }, { deadlineMs: 5_000 }));
  t.is((e as unknown as { code: Status }).code, Status.NOT_FOUND);
  const details = (e as unknown as { details: string }).details;
  t.true(details.length <= 1100, `${details.length} characters`);
  t.regex(details, /^run é+ … \(\d+ characters left out\) … é+: not found$/);
  t.like(await c.listWorkers({}, { deadlineMs: 5_000 }), { workers: [] });
});
