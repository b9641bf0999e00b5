import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { DataRoot } from '../shared/run/data-root.js';
import { RUN_RECORDS_DIR, RunRecords } from '../shared/run/run-records.js';
import { tinyRunConfig } from './helpers/tiny-run.js';

// The runs a coordinator drives, noted under its data root for the coordinator that follows it. A
// record is a file like any other input: each one that does not pass is skipped and named, and
// none is trusted to point outside the data root.
const root = mkdtempSync(join(tmpdir(), 'rmt-run-records-'));
const outside = mkdtempSync(join(tmpdir(), 'rmt-run-records-outside-'));
test.after.always(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

test('records are saved, listed oldest first with their config resolved under the root, and removed', (t) => {
  const dataRoot = new DataRoot(root);
  const records = new RunRecords(dataRoot, 1 << 20);
  const cfg = dataRoot.config(tinyRunConfig('base', 'runs/a', 'rmt', 3));
  records.save('run-a', cfg);
  records.save('run-b', dataRoot.config(tinyRunConfig('base', 'runs/b', 'rmt', 3)));
  const skipped: string[] = [];
  const listed = records.list((f, why) => skipped.push(`${f}: ${why}`));
  t.deepEqual(skipped, []);
  t.deepEqual(
    listed.map((r) => r.runId),
    ['run-a', 'run-b'],
  );
  t.is(listed[0].cfg.run.out_dir, join(dataRoot.dir, 'runs/a'));
  t.deepEqual(listed[0].cfg, cfg);
  records.remove('run-a');
  records.remove('../../etc/passwd');
  t.deepEqual(
    records.list(() => {}).map((r) => r.runId),
    ['run-b'],
  );
  t.throws(() => records.save('../x', cfg), { message: /not a run id/ });
});

test('a record that is not valid is skipped by name, without its contents', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rmt-run-records-hostile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dataRoot = new DataRoot(dir);
  const records = new RunRecords(dataRoot, 4096);
  mkdirSync(join(dir, RUN_RECORDS_DIR), { recursive: true });
  const put = (name: string, body: string) => writeFileSync(join(dir, RUN_RECORDS_DIR, name), body);
  const cfg = tinyRunConfig('base', 'runs/ok', 'rmt', 3);
  put('secret.json', 'password=hunter2 {');
  put('other-name.json', JSON.stringify({ run_id: 'not-the-file-name', config: cfg }));
  put('big.json', JSON.stringify({ run_id: 'big', config: cfg, pad: 'x'.repeat(5000) }));
  put(
    'escapes.json',
    JSON.stringify({ run_id: 'escapes', config: { ...cfg, run: { ...cfg.run, out_dir: outside } } }),
  );
  put(
    'bad-steps.json',
    JSON.stringify({ run_id: 'bad-steps', config: { ...cfg, train: { ...cfg.train, steps: -1 } } }),
  );
  writeFileSync(join(outside, 'elsewhere.json'), JSON.stringify({ run_id: 'link', config: cfg }));
  symlinkSync(join(outside, 'elsewhere.json'), join(dir, RUN_RECORDS_DIR, 'link.json'));
  put('ok.json', JSON.stringify({ run_id: 'ok', config: cfg }));
  const skipped = new Map<string, string>();
  const listed = records.list((f, why) => skipped.set(f, why));
  t.deepEqual(
    listed.map((r) => r.runId),
    ['ok'],
  );
  t.regex(skipped.get('secret.json')!, /not JSON/);
  t.regex(skipped.get('other-name.json')!, /not the file name/);
  t.regex(skipped.get('big.json')!, /at most 4096/);
  t.regex(skipped.get('escapes.json')!, /run\.out_dir.*not a path inside/);
  t.regex(skipped.get('bad-steps.json')!, /train\.steps/);
  t.regex(skipped.get('link.json')!, /not a plain file/);
  for (const why of skipped.values()) t.notRegex(why, /hunter2/);
});
