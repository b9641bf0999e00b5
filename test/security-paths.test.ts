import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { DataRoot } from '../shared/run/data-root.js';
import { RequestError } from '../shared/run/request-error.js';

// A data root resolves what a client names and lets nothing out, whichever way the path is spelt.
const tmp = realpathSync(mkdtempSync(join(tmpdir(), 'rmt-sec-paths-')));
const dir = join(tmp, 'root');
mkdirSync(join(dir, 'runs', 'a'), { recursive: true });
mkdirSync(join(tmp, 'elsewhere'));
writeFileSync(join(tmp, 'elsewhere', 'file'), 'x');
symlinkSync(join(tmp, 'elsewhere'), join(dir, 'out-link'));
symlinkSync(join(dir, 'runs'), join(dir, 'in-link'));
symlinkSync(join(tmp, 'not-yet'), join(dir, 'dangling'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

test('paths inside the root resolve; links that stay inside are followed', (t) => {
  const root = new DataRoot(dir);
  t.is(root.resolve('runs/a', 'f'), join(dir, 'runs', 'a'));
  t.is(root.resolve(join(dir, 'runs', 'new', 'deeper'), 'f'), join(dir, 'runs', 'new', 'deeper'));
  t.is(root.resolve('runs/../runs/b', 'f'), join(dir, 'runs', 'b'));
  t.is(root.resolve('in-link/a', 'f'), join(dir, 'runs', 'a'));
  t.is(root.resolve('.', 'f'), dir);
});

test('every way out is refused with one message, whether or not the target exists', (t) => {
  const root = new DataRoot(dir);
  const refusal = (p: string) => {
    const e = t.throws(() => root.resolve(p, 'run.out_dir'), { instanceOf: RequestError });
    t.is(e?.field, 'run.out_dir');
    return e?.message.replace(JSON.stringify(p), '<p>');
  };
  const messages = [
    '..',
    '../elsewhere',
    join(tmp, 'elsewhere'),
    '/etc/passwd',
    '/no/such/path',
    'out-link',
    'out-link/file',
    'out-link/missing/deeper',
    'dangling',
    'dangling/x',
    'runs/../../elsewhere',
  ].map(refusal);
  t.is(new Set(messages).size, 1, messages.join('\n'));
  t.throws(() => root.resolve('', 'f'), { instanceOf: RequestError });
  t.throws(() => root.resolve('a\0b', 'f'), { instanceOf: RequestError });
});

test('a root that is not a folder is refused at start', (t) => {
  t.throws(() => new DataRoot(join(tmp, 'elsewhere', 'file')));
  t.throws(() => new DataRoot(join(tmp, 'missing')));
});
