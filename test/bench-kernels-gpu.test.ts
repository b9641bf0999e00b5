import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { setupWebgpu } from '../shared/kernels/index.js';

/**
 * `bench:kernels --backend webgpu` end to end on whatever adapter this machine has (the software
 * one in CI), rmt side only and two small cases, so the GPU host's run does not fail on its report.
 */
// awaited before the first test or hook: ava starts running at the end of the tick that declares one
const webgpu = await setupWebgpu();
const repo = resolve(import.meta.dirname, '..');
const out = mkdtempSync(join(tmpdir(), 'rmt-bench-kernels-gpu-'));
test.after.always(() => rmSync(out, { recursive: true, force: true }));
const gpuTest = webgpu.ok ? test : test.skip;
if (!webgpu.ok) console.log(`bench-kernels-gpu.test: skipped: ${webgpu.reason}`);

gpuTest('the GPU kernel bench checks and times its cases and writes kernels-gpu.{json,md}', async (t) => {
  const args = ['--backend', 'webgpu', '--quick', '--rounds', '1', '--no-torch', '--out', out];
  await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', join(repo, 'bench', 'kernels.ts'), ...args, '--cases', '^decode (q/o|k/v) '],
    { cwd: repo, env: { ...process.env, RMT_COMMIT: 'test' } },
  );
  const r = JSON.parse(readFileSync(join(out, 'kernels-gpu.json'), 'utf8'));
  t.is(r.bench, 'kernels-gpu');
  t.is(r.commit, 'test');
  t.is(r.machine.webgpu, webgpu.reason);
  t.is(r.baseline, null);
  t.deepEqual(
    r.cases.map((c: { name: string }) => c.name),
    ['decode q/o x@W^T', 'decode k/v x@W^T'],
  );
  for (const c of r.cases) {
    t.deepEqual([c.m, c.layout], [8, 'NT']);
    t.true(c.rmt > 0 && Number.isFinite(c.rmt));
    t.true(c.rmt_calls >= 1);
    t.is(c.baseline, null);
    t.is(c.ratio, null);
    t.true(c.rel_err <= 1e-4);
    t.is(c.checked_rows, 8);
  }
  t.is(r.summary.cases, 2);
  t.is(r.summary.geomeanRatio, null);
  const md = readFileSync(join(out, 'kernels-gpu.md'), 'utf8');
  t.regex(md, /naive, one thread per output/);
  t.regex(md, /\| decode k\/v x@W\^T \| 8x64x32 NT \|/);
  t.notRegex(md, /target/);
});
