import { setTimeout as sleep } from 'node:timers/promises';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import type { Client } from '@grpc/grpc-js';
import test from 'ava';
import {
  healthCheck,
  healthClient,
  type ScorerClient,
  scorerClient,
  waitForReady,
} from '../shared/rpc/client.js';
import {
  errorField,
  failedPrecondition,
  handleServerStream,
  handleUnary,
  invalidArgument,
  isRetryable,
  type RpcError,
  Status,
  toServiceError,
  unavailable,
} from '../shared/rpc/errors.js';
import { type ScoreDocumentsResponse, ScorerServiceService, Split } from '../shared/rpc/gen/rmt/v1/scorer.js';
import { bindService, type RunningServer, startServer } from '../shared/rpc/server.js';

// What the handlers saw, by the tag a test puts in the request (TokenizeRequest.tokenizer, RunRef.run_id).
const seen = new Map<string, { aborted?: RpcError; finished?: boolean; sent?: number }>();
const observed = new Map<string, () => void>();
const note = (tag: string, what: { aborted?: RpcError; finished?: boolean; sent?: number }) => {
  seen.set(tag, { ...seen.get(tag), ...what });
  observed.get(tag)?.();
};
const whenObserved = (tag: string) => new Promise<void>((resolve) => observed.set(tag, resolve));
const internalLog: string[] = [];

const scorer = bindService(ScorerServiceService, {
  tokenize: handleUnary(async (req, ctx) => {
    if (req.text === '') throw invalidArgument('text', 'must not be empty');
    if (req.text === 'slow') {
      try {
        await sleep(5_000, undefined, { signal: ctx.signal });
      } catch (e) {
        note(req.tokenizer, { aborted: ctx.signal.reason as RpcError });
        throw e;
      }
    }
    return { ids: [...req.text].map((c) => c.charCodeAt(0)) };
  }),
  detokenize: handleUnary(
    (req) => {
      if (req.ids.some((id) => id < 0)) throw new RangeError('negative token id'); // a "library" error
      return { text: String.fromCharCode(...req.ids) };
    },
    { log: (line) => internalLog.push(line) },
  ),
  scoreDocuments: handleServerStream(async function* (req, ctx): AsyncGenerator<ScoreDocumentsResponse> {
    const tag = req.run?.runId ?? '';
    let sent = 0;
    try {
      yield { event: { $case: 'progress', value: { done: 0, total: 4 } } };
      for (let i = 0; i < 4; i++) {
        await sleep(40, undefined, { signal: ctx.signal });
        const id = 2 ** 40 + i; // int64 beyond 32 bits, as a plain number
        yield {
          event: {
            $case: 'positions',
            value: {
              positions: [{ id, context: [1, 2], target: 3, continuation: [], entropy: 1.5 }],
              last: i === 3,
            },
          },
        };
        sent++;
        if (req.split === Split.SPLIT_HELD_OUT) throw failedPrecondition('no held-out split in this run');
      }
    } finally {
      note(tag, {
        aborted: ctx.signal.aborted ? (ctx.signal.reason as RpcError) : undefined,
        finished: true,
        sent,
      });
    }
  }),
});

let srv: RunningServer;
let client: ScorerClient;

test.before(async () => {
  srv = await startServer({ host: '127.0.0.1', port: 0, services: [scorer] });
  client = scorerClient(srv.address);
  await waitForReady(client, 5_000);
});

test.after.always(async () => {
  client?.close();
  await srv?.shutdown(100);
});

test('unary round trip through the typed client', async (t) => {
  t.true(srv.port > 0);
  const tok = await client.tokenize({ text: 'hi!' }, { deadlineMs: 2_000 });
  t.deepEqual(tok.ids, [104, 105, 33]);
  const de = await client.detokenize({ ids: tok.ids });
  t.is(de.text, 'hi!');
});

test('server stream by async iteration: oneof as {$case, value}, int64 as number', async (t) => {
  const events: ScoreDocumentsResponse[] = [];
  for await (const ev of client.scoreDocuments({ run: { runId: 'iterate' }, split: Split.SPLIT_TRAIN }))
    events.push(ev);
  t.deepEqual(
    events.map((e) => e.event?.$case),
    ['progress', 'positions', 'positions', 'positions', 'positions'],
  );
  const last = events[4]!.event;
  t.is(last?.$case, 'positions');
  if (last?.$case === 'positions') {
    t.true(last.value.last);
    t.is(last.value.positions[0]!.id, 2 ** 40 + 3);
    t.is(typeof last.value.positions[0]!.id, 'number');
  }
});

test('a stream error after some messages: the messages arrive, then the status', async (t) => {
  const got: string[] = [];
  const err = await t.throwsAsync(async () => {
    for await (const ev of client.scoreDocuments({
      run: { runId: 'held-out' },
      split: Split.SPLIT_HELD_OUT,
    })) {
      got.push(ev.event?.$case ?? '');
    }
  });
  t.deepEqual(got, ['progress', 'positions']);
  t.is((err as RpcError).code, Status.FAILED_PRECONDITION);
  t.regex((err as RpcError).details, /held-out/);
});

test('INVALID_ARGUMENT names the field (message and rmt-field trailer); not retryable', async (t) => {
  const err = await t.throwsAsync(client.tokenize({ text: '' }));
  t.is((err as RpcError).code, Status.INVALID_ARGUMENT);
  t.is((err as RpcError).details, 'text: must not be empty');
  t.is(errorField(err), 'text');
  t.false(isRetryable(err, { idempotent: true }));
});

test('a library error becomes INTERNAL, logged with its stack on the server', async (t) => {
  const err = await t.throwsAsync(client.detokenize({ ids: [-1] }));
  t.is((err as RpcError).code, Status.INTERNAL);
  t.regex((err as RpcError).details, /negative token id/);
  t.true(internalLog.some((l) => l.includes('RangeError: negative token id')));
});

test('a client deadline aborts the server signal; the client gets DEADLINE_EXCEEDED', async (t) => {
  const observedAbort = whenObserved('deadline');
  const started = Date.now();
  const err = await t.throwsAsync(
    client.tokenize({ text: 'slow', tokenizer: 'deadline' }, { deadlineMs: 150 }),
  );
  t.is((err as RpcError).code, Status.DEADLINE_EXCEEDED);
  t.true(Date.now() - started < 2_000);
  await observedAbort;
  t.is(seen.get('deadline')?.aborted?.code, Status.DEADLINE_EXCEEDED);
  t.true(isRetryable(err, { idempotent: true }));
  t.false(isRetryable(err));
});

test('aborting the client signal cancels the stream; the server sees the abort and stops', async (t) => {
  const observedStop = whenObserved('cancel');
  const ac = new AbortController();
  const got: string[] = [];
  const err = await t.throwsAsync(async () => {
    for await (const ev of client.scoreDocuments({ run: { runId: 'cancel' } }, { signal: ac.signal })) {
      got.push(ev.event?.$case ?? '');
      if (ev.event?.$case === 'positions') ac.abort();
    }
  });
  t.is((err as RpcError).code, Status.CANCELLED);
  await observedStop;
  const s = seen.get('cancel')!;
  t.true(s.finished);
  t.is(s.aborted?.code, Status.CANCELLED);
  t.true(s.sent! < 4, `the server stopped early (sent ${s.sent})`);
  t.deepEqual(got, ['progress', 'positions']);
});

test('breaking out of the iteration cancels the call on the server', async (t) => {
  const observedStop = whenObserved('break');
  for await (const ev of client.scoreDocuments({ run: { runId: 'break' } })) {
    if (ev.event?.$case === 'progress') break;
  }
  await observedStop;
  t.is(seen.get('break')?.aborted?.code, Status.CANCELLED);
  t.true(seen.get('break')!.sent! < 4);
});

test('an already aborted signal fails fast with CANCELLED', async (t) => {
  const err = await t.throwsAsync(client.tokenize({ text: 'x' }, { signal: AbortSignal.abort() }));
  t.is((err as RpcError).code, Status.CANCELLED);
});

test('toServiceError and isRetryable', (t) => {
  t.is(toServiceError(new Error('boom')).code, Status.INTERNAL);
  t.is(toServiceError(unavailable('learner', 'connection refused')).code, Status.UNAVAILABLE);
  t.is(unavailable('learner', 'x').metadata.get('rmt-dependency')[0], 'learner');
  const abort = Object.assign(new Error('aborted'), { name: 'AbortError' });
  t.is(toServiceError(abort).code, Status.CANCELLED);
  t.true(isRetryable({ code: Status.UNAVAILABLE }));
  t.false(isRetryable({ code: Status.INTERNAL }, { idempotent: true }));
});

test('health: SERVING overall and per service, SERVICE_UNKNOWN for others', async (t) => {
  t.is(await healthCheck(srv.address), 'SERVING');
  t.is(await healthCheck(srv.address, 'rmt.v1.ScorerService'), 'SERVING');
  t.is(await healthCheck(srv.address, 'rmt.v1.LearnerService'), 'SERVICE_UNKNOWN');
});

test('health: NOT_SERVING once shutdown begins (Check during the drain, and Watch)', async (t) => {
  const s = await startServer({ host: '127.0.0.1', port: 0, services: [scorer] });
  const h = healthClient(s.address);
  const watch = h.watch('rmt.v1.ScorerService');
  t.is((await watch.next()).value, 'SERVING');
  s.setServing('rmt.v1.ScorerService', false);
  t.is((await watch.next()).value, 'NOT_SERVING');
  s.setServing('rmt.v1.ScorerService', true);
  t.is((await watch.next()).value, 'SERVING');
  t.is(await h.check(''), 'SERVING');
  const stopped = s.shutdown(300, { drainMs: 300 });
  t.is((await watch.next()).value, 'NOT_SERVING');
  t.is(await h.check(''), 'NOT_SERVING');
  await watch.return();
  h.close();
  await stopped;
  const err = await t.throwsAsync(healthCheck(s.address, '', { deadlineMs: 500 }));
  t.true([Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED].includes((err as RpcError).code));
});

// Server reflection, spoken by hand: ServerReflectionRequest{list_services(7) = "*"} and
// {file_containing_symbol(4)}; answers ServerReflectionResponse{list_services_response(6){service(1){name(1)}}}
// and {file_descriptor_response(4){file_descriptor_proto(1)}}.
async function reflect(
  c: Client,
  version: 'v1' | 'v1alpha',
  field: number,
  value: string,
): Promise<Uint8Array[]> {
  const call = c.makeBidiStreamRequest(
    `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
    (b: Buffer) => b,
    (b: Buffer) => b,
    { deadline: Date.now() + 3_000 },
  );
  const replies: Uint8Array[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (b: Buffer) => replies.push(b));
    call.on('error', reject);
    call.on('end', () => resolve());
  });
  call.write(Buffer.from(new BinaryWriter().tag(field, WireType.LengthDelimited).string(value).finish()));
  call.end();
  await done;
  return replies;
}

function fieldsOf(msg: Uint8Array, want: number): Uint8Array[] {
  const r = new BinaryReader(msg);
  const out: Uint8Array[] = [];
  while (r.pos < r.len) {
    const [f, w] = r.tag();
    if (f === want && w === WireType.LengthDelimited) out.push(r.bytes());
    else r.skip(w);
  }
  return out;
}

const utf8 = new TextDecoder();

for (const version of ['v1', 'v1alpha'] as const) {
  test(`reflection (${version}) lists our services and serves their descriptors`, async (t) => {
    const [reply] = await reflect(client.grpc, version, 7, '*');
    t.truthy(reply);
    const names = fieldsOf(reply!, 6)
      .flatMap((list) => fieldsOf(list, 1))
      .flatMap((svc) => fieldsOf(svc, 1))
      .map((b) => utf8.decode(b));
    t.deepEqual(names.sort(), ['grpc.health.v1.Health', 'rmt.v1.ScorerService']);

    const [files] = await reflect(client.grpc, version, 4, 'rmt.v1.ScorerService');
    const fileNames = fieldsOf(files!, 4)
      .flatMap((resp) => fieldsOf(resp, 1))
      .map((fdp) => utf8.decode(fieldsOf(fdp, 1)[0]!));
    t.true(fileNames.includes('rmt/v1/scorer.proto'), fileNames.join(', '));
    t.true(fileNames.includes('rmt/v1/common.proto'), fileNames.join(', '));
  });
}
