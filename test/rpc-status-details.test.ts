import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import {
  errorField,
  failedPrecondition,
  invalidArgument,
  Status,
  unavailable,
} from '../shared/rpc/errors.js';
import { decodeStatusDetails, STATUS_DETAILS_KEY } from '../shared/rpc/status-details.js';
import { startRefusingCoordinator } from './helpers/refusing-coordinator.js';

const PYTHON = process.env.RMT_PYTHON ?? '/usr/bin/python3';
const FIXTURES = join(import.meta.dirname, 'fixtures', 'google-rpc');

/** What a client's standard status library makes of the trailer: Python's protobuf, google.rpc definitions. */
function decodeWithPython(bytes: Uint8Array): {
  code: number;
  message: string;
  details: Record<string, unknown>[];
} {
  const dir = mkdtempSync(join(tmpdir(), 'rmt-status-'));
  try {
    execFileSync(PYTHON, [
      '-m',
      'grpc_tools.protoc',
      `-I${FIXTURES}`,
      `--python_out=${dir}`,
      join(FIXTURES, 'status.proto'),
    ]);
    writeFileSync(join(dir, 'details.bin'), bytes);
    return JSON.parse(
      execFileSync(PYTHON, [join(FIXTURES, 'decode_status.py'), dir, join(dir, 'details.bin')], {
        encoding: 'utf8',
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('every RpcError carries google.rpc.Status details: BadRequest for a field, ErrorInfo with a reason', (t) => {
  const bad = invalidArgument('budget.B_0', 'must be a positive integer, got -1');
  const d = decodeStatusDetails(bad.metadata.get(STATUS_DETAILS_KEY)[0] as Buffer);
  t.deepEqual(d, {
    code: Status.INVALID_ARGUMENT,
    message: 'budget.B_0: must be a positive integer, got -1',
    fieldViolations: [{ field: 'budget.B_0', description: 'must be a positive integer, got -1' }],
    reason: 'INVALID_FIELD',
    metadata: { field: 'budget.B_0' },
  });
  const down = decodeStatusDetails(
    unavailable('learner', 'connection refused').metadata.get(STATUS_DETAILS_KEY)[0] as Buffer,
  );
  t.is(down.reason, 'DEPENDENCY_UNAVAILABLE');
  t.deepEqual(down.metadata, { dependency: 'learner' });
  t.is(down.fieldViolations, undefined);
  const pre = decodeStatusDetails(
    failedPrecondition('a run is active').metadata.get(STATUS_DETAILS_KEY)[0] as Buffer,
  );
  t.is(pre.reason, 'FAILED_PRECONDITION');
});

test('over gRPC, a refused StartRun names its field in the rmt-field trailer and in BadRequest, as Python decodes it', async (t) => {
  const { client, close } = await startRefusingCoordinator();
  try {
    const err = (await client
      .startRun({ config: 'train:\n  steps: -3\n', method: '', steps: 0, outDir: '', runId: '' })
      .then(
        () => null,
        (e: unknown) => e,
      )) as { code: number; metadata: { get(k: string): unknown[] } } | null;
    t.is(err?.code, Status.INVALID_ARGUMENT);
    const field = errorField(err);
    t.regex(field ?? '', /train\.steps/);
    const bytes = err?.metadata.get(STATUS_DETAILS_KEY)[0] as Buffer;
    t.true(Buffer.isBuffer(bytes), 'the trailer arrived');
    const py = decodeWithPython(bytes);
    t.is(py.code, Status.INVALID_ARGUMENT);
    const br = py.details.find((x) => x.type === 'BadRequest') as { field_violations: { field: string }[] };
    t.is(br.field_violations[0].field, String(field));
    const info = py.details.find((x) => x.type === 'ErrorInfo') as { reason: string; domain: string };
    t.deepEqual([info.reason, info.domain], ['INVALID_FIELD', 'rmt.v1']);
  } finally {
    await close();
  }
});
