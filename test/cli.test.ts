import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { applySets } from '../shared/config/set-overrides.js';
import { parseTrainConfig } from '../shared/config/train-config.js';
import { didYouMean, editDistance } from '../shared/util/did-you-mean.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

const run = promisify(execFile);
const rmt = async (...args: string[]) => {
  try {
    const { stdout, stderr } = await run('node', ['bin/rmt.js', ...args], { encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
};

test('edit distance counts a swap of neighbours as one; suggestions only for close names', (t) => {
  t.is(editDistance('trian', 'train'), 1);
  t.is(editDistance('', 'abc'), 3);
  t.is(editDistance('kitten', 'sitting'), 3);
  t.is(didYouMean('trian', ['train', 'eval']), ' (did you mean "train"?)');
  t.is(didYouMean('grpo', ['rpt', 'rmt', 'ntp']), '');
});

test('--set overrides are applied before validation and name the field when wrong', (t) => {
  const raw = applySets(
    { train: { lr: 1 } },
    ['train.lr=3e-4', 'data.corpora=[moby-dick]', 'model.proxy=null'],
    'x',
  );
  const cfg = parseTrainConfig(raw, 'x');
  t.is(cfg.train.lr, 3e-4);
  t.deepEqual(cfg.data.corpora, ['moby-dick']);
  t.is(cfg.model.proxy, null);
  t.throws(() => applySets({}, ['train.lr'], 'x'), { message: /section\.key=value/ });
  t.throws(() => applySets({ train: 3 }, ['train.lr=1'], 'x'), { message: /"train" is not a section/ });
  t.throws(() => parseTrainConfig(applySets({}, ['train.lrr=1'], 'x'), 'x'), {
    message: /train\.lrr: unknown setting \(did you mean "lr"\?\)/,
  });
});

test('every verb has its own help; serve --help exits 0', async (t) => {
  for (const verb of ['pretrain', 'train', 'eval']) {
    const r = await rmt(verb, '--help');
    t.is(r.code, 0, verb);
    t.regex(r.stdout, new RegExp(`usage: rmt ${verb} `));
    t.regex(r.stdout, /--set <section\.key=value>/);
  }
  t.regex((await rmt('eval', '--help')).stdout, /--json/);
  const serve = await rmt('serve', '--help');
  t.is(serve.code, 0);
  t.regex(serve.stdout, /usage: rmt serve/);
});

test('unknown commands, flags and methods are usage errors with a suggestion', async (t) => {
  const cmd = await rmt('trian');
  t.is(cmd.code, 2);
  t.regex(cmd.stderr, /unknown command "trian" \(did you mean "train"\?\)/);
  const flag = await rmt('train', '--confg', 'x.yaml');
  t.is(flag.code, 2);
  t.regex(flag.stderr, /unknown flag --confg \(did you mean "--config"\?\)/);
  const method = await rmt('train', '--config', 'configs/rmt.yaml', '--method', 'rmt-no-cass');
  t.is(method.code, 2);
  t.regex(method.stderr, /unknown method "rmt-no-cass" \(did you mean "rmt-no-cas"\?\)/);
  t.notRegex(method.stderr, /Cannot read properties/);
});

test('train before pretrain names model.init_from and the fix', async (t) => {
  const r = await rmt('train', '--config', 'configs/rmt.yaml', '--set', 'model.init_from=/nonexistent/base');
  t.is(r.code, 1);
  t.regex(r.stderr, /model\.init_from: .* is not a checkpoint folder/);
  t.regex(r.stderr, /rmt pretrain --config configs\/base\.yaml/);
});

test('compare needs a checkpoint and as many names as checkpoints', async (t) => {
  const none = await rmt('compare', '--config', 'configs/rmt.yaml');
  t.is(none.code, 2);
  t.regex(none.stderr, /compare needs --checkpoint/);
  const names = await rmt(
    'compare',
    '--config',
    'configs/rmt.yaml',
    '--checkpoint',
    'a',
    '--name',
    'x',
    '--name',
    'y',
  );
  t.is(names.code, 2);
  t.regex(names.stderr, /--name given 2 times for 1 checkpoints/);
});

test('compare evaluates two checkpoints on the same positions under one prompt and prints them side by side', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'rmt-compare-'));
  try {
    const base = tinyBaseCheckpoint(root);
    const cfg = tinyRunConfig(base, join(root, 'out'), 'rmt', 2);
    const yaml = join(root, 'run.yaml');
    writeFileSync(yaml, JSON.stringify({ ...cfg, eval: { ...cfg.eval, positions: 4 } }));
    const r = await rmt(
      'compare',
      '--config',
      yaml,
      '--checkpoint',
      base,
      '--name',
      'base',
      '--checkpoint',
      base,
      '--name',
      'again',
    );
    t.is(r.code, 0, r.stderr);
    t.regex(
      r.stdout,
      /held-out next-token accuracy \(ntr, prompt of rmt, budget \d+ stated, same positions\)/,
    );
    t.regex(r.stdout, /^model\s+accuracy\s+95% CI\s+n\s+easy\s+medium\s+hard\s+average\s+reasoning tokens/m);
    // Every row: accuracy over all positions, its interval and n (4), then the splits and the length.
    t.regex(r.stdout, /^base\s+\d+\.\d%\s+±\d+\.\d\s+4\s.*\s\d+\.\d\s+\d+\.\d%$/m);
    t.regex(r.stdout, /^again\s/m);
    const saved = JSON.parse(readFileSync(join(root, 'out', 'compare-ntr.json'), 'utf8'));
    t.deepEqual(
      saved.rows.map((x: { name: string }) => x.name),
      ['base', 'again'],
    );
    // The same checkpoint twice: the same answers, so the same accuracies.
    t.deepEqual(saved.rows[0].result.avg, saved.rows[1].result.avg);
    t.is(saved.rows[0].result.positions, 4);
    t.is(saved.rows[0].result.all.n, 4);
    t.deepEqual(saved.rows[0].result.all, saved.rows[1].result.all);
    // ...and, pair by pair, no discordant position: a difference of exactly 0, p = 1.
    t.is(saved.rows[0].result.hits.length, 4);
    t.like(saved.paired[0], { a: 'base', b: 'again', n: 4, diff: 0, onlyA: 0, onlyB: 0, p: 1 });
    t.regex(
      r.stdout,
      /^again − base: \+0\.0 points, 95% CI \[\+0\.0, \+0\.0\], McNemar p = 1\.000 \(n = 4 paired positions.*no clear difference$/m,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('every verb parses its flags with the one flag parser; --set is checked by the config schema', async (t) => {
  // A flag's own type: --steps is train.steps, an integer >= 1.
  const steps = await rmt('pretrain', '--config', 'configs/base.yaml', '--steps', '2.5');
  t.is(steps.code, 2);
  t.regex(steps.stderr, /--steps: expected an integer >= 1, got "2\.5"/);
  const mode = await rmt('eval', '--config', 'configs/rmt.yaml', '--checkpoint', 'x', '--mode', 'ntq');
  t.is(mode.code, 2);
  t.regex(mode.stderr, /--mode: expected one of ntr, ntp, got "ntq" \(did you mean "ntr"\?\)/);
  // --set on pretrain is refused as the same line in the file would be, naming the field.
  const pre = await rmt('pretrain', '--config', 'configs/base.yaml', '--set', 'train.steps=2.5');
  t.is(pre.code, 1);
  t.regex(pre.stderr, /configs\/base\.yaml: train\.steps: must be an integer >= 1, got 2\.5/);
  // rmt up and rmt submit check their --set here, before a cluster starts or a coordinator is asked.
  const up = await rmt('up', '--config', 'configs/rmt.yaml', '--set', 'train.stepz=3');
  t.is(up.code, 1);
  t.regex(up.stderr, /train\.stepz: unknown setting \(did you mean "steps"\?\)/);
  const upFlag = await rmt('up', '--confg', 'configs/rmt.yaml');
  t.is(upFlag.code, 2);
  t.regex(upFlag.stderr, /unknown flag --confg \(did you mean "--config"\?\)/);
  const submit = await rmt('submit', '--config', 'configs/rmt.yaml', '--set', 'grpo.G=0', '--wait-s', '0');
  t.is(submit.code, 1);
  t.regex(submit.stderr, /grpo\.G: must be an integer >= 1, got 0/);
  const help = await rmt('up', '--help');
  t.is(help.code, 0);
  t.regex(help.stdout, /--set <section\.key=value>/);
});
