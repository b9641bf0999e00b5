import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';

const run = promisify(execFile);
const BUF = join(process.cwd(), 'node_modules', '.bin', 'buf');
const PROTO = join(process.cwd(), 'proto');
const RELEASE = join(PROTO, 'releases', 'v0.1.0.binpb');

const buf = async (cwd: string, ...args: string[]) => {
  try {
    const { stdout, stderr } = await run(BUF, args, { cwd, encoding: 'utf8' });
    return { code: 0, out: stdout + stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
};

test('the protos pass buf lint (STANDARD, request/response naming kept for v1) and carry language options', async (t) => {
  const lint = await buf(PROTO, 'lint');
  t.is(lint.code, 0, lint.out);
  for (const f of ['common', 'coordinator', 'learner', 'rollout', 'scorer']) {
    const text = readFileSync(join(PROTO, 'rmt', 'v1', `${f}.proto`), 'utf8');
    t.regex(text, /option go_package = "rmt\/gen\/go\/rmt\/v1;rmtv1";/, f);
    t.regex(text, /option java_package = "rmt\.v1";/, f);
  }
});

test('buf breaking: no wire or JSON break against the last release, and a break is caught', async (t) => {
  const ok = await buf(PROTO, 'breaking', '--against', RELEASE);
  t.is(ok.code, 0, ok.out);
  // The gate works: renumbering a field of a released message is reported.
  const dir = mkdtempSync(join(tmpdir(), 'rmt-proto-'));
  try {
    cpSync(PROTO, dir, { recursive: true });
    const common = join(dir, 'rmt', 'v1', 'common.proto');
    writeFileSync(common, readFileSync(common, 'utf8').replace('int32 target = 3;', 'int32 target = 30;'));
    const broken = await buf(dir, 'breaking', '--against', RELEASE);
    t.not(broken.code, 0);
    t.regex(broken.out, /KeyPosition/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
