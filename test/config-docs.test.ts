import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import test from 'ava';
import { PRETRAIN_DEFAULTS, pretrainSchema } from '../shared/config/pretrain-config.js';
import { generatedConfigFiles } from '../shared/config/schema/render.js';
import { TRAIN_DEFAULTS } from '../shared/config/train-config.js';
import { MATH_CONFIG_KEYS } from '../shared/data/synthetic-math.js';

/**
 * docs/config.md and the JSON Schemas under configs/schema/ are generated from the config schema
 * (`npm run docs:config`): the committed files must be what the schema gives now.
 */
for (const [path, expected] of Object.entries(generatedConfigFiles())) {
  test(`${path} is what npm run docs:config generates`, (t) => {
    const committed = readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');
    t.true(committed === expected, `${path} is stale: run npm run docs:config`);
  });
}

const doc = readFileSync(new URL('../docs/config.md', import.meta.url), 'utf8');

/** Dotted paths of the leaves; the open mappings (model.config, data.math) count as one field. */
function fields(o: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) => {
    const path = prefix ? `${prefix}.${k}` : k;
    const open = path === 'model.config' || path === 'data.math';
    return v !== null && typeof v === 'object' && !Array.isArray(v) && !open
      ? fields(v as Record<string, unknown>, path)
      : [path];
  });
}

/** The first column of every table row under a heading that starts with `title`. */
function documented(title: string): Set<string> {
  const start = doc.indexOf(`\n## ${title}`);
  if (start < 0) throw new Error(`docs/config.md has no section "${title}"`);
  const next = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, next < 0 ? undefined : next);
  const out = new Set<string>();
  for (const line of section.split('\n')) {
    const first = line.startsWith('| `') ? line.split('|')[1] : '';
    for (const m of first.matchAll(/`([^`]+)`/g)) out.add(m[1]);
  }
  return out;
}

const sections: [string, string[]][] = [
  ['Pre-training', fields(PRETRAIN_DEFAULTS as unknown as Record<string, unknown>)],
  ['RL training', fields(TRAIN_DEFAULTS as unknown as Record<string, unknown>)],
  ['The synthetic math corpus', Object.keys(MATH_CONFIG_KEYS)],
];

for (const [title, expected] of sections) {
  test(`docs/config.md: ${title} lists every field and no other`, (t) => {
    const rows = documented(title);
    t.deepEqual(
      expected.filter((f) => !rows.has(f)),
      [],
      'fields without a row',
    );
    t.deepEqual(
      [...rows].filter((f) => !expected.includes(f)),
      [],
      'rows without a field',
    );
  });
}

test('the JSON Schema refuses what the loader refuses and names every default', (t) => {
  const js = JSON.parse(generatedConfigFiles()['configs/schema/pretrain.schema.json']) as {
    additionalProperties: boolean;
    properties: { train: { properties: { steps: { type: string; minimum: number; default: number } } } };
  };
  t.false(js.additionalProperties);
  t.deepEqual(js.properties.train.properties.steps, {
    ...js.properties.train.properties.steps,
    type: 'integer',
    minimum: 1,
    default: PRETRAIN_DEFAULTS.train.steps,
  });
  t.throws(() => pretrainSchema.parse({ train: { steps: 2.5 } }));
});

// An independent JSON Schema validator (Python's jsonschema, where installed) accepts every config
// of the repository and refuses what the loader refuses, so the schema editors get is a faithful one.
const PY = `
import json, sys, yaml, jsonschema
out = []
for kind, path, doc in json.load(sys.stdin):
    s = json.load(open(f'configs/schema/{kind}.schema.json'))
    v = yaml.safe_load(open(path)) if path else doc
    out.append([e.json_path for e in jsonschema.Draft202012Validator(s).iter_errors(v or {})])
print(json.dumps(out))
`;
const hasJsonschema =
  spawnSync('python3', ['-c', 'import jsonschema, yaml'], { encoding: 'utf8' }).status === 0;
(hasJsonschema ? test : test.skip)('configs/schema: every config validates, a bad one does not', (t) => {
  const cases: [string, string, unknown][] = [
    ...['base', 'demo/base', 'pretrain-tiny'].map((f): [string, string, unknown] => [
      'pretrain',
      `configs/${f}.yaml`,
      null,
    ]),
    ...['rmt', 'demo/rmt', 'rpt', 'ntp', 'rmt-no-cas', 'rmt-no-dtb', 'rmt-no-ntp'].map(
      (f): [string, string, unknown] => ['train', `configs/${f}.yaml`, null],
    ),
    ['pretrain', '', { train: { steps: 2.5 } }],
    ['train', '', { data: { positions: 'answer' } }],
    ['train', '', { train: { stpes: 3 } }],
  ];
  const r = spawnSync('python3', ['-c', PY], { input: JSON.stringify(cases), encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const errors = JSON.parse(r.stdout) as string[][];
  t.deepEqual(errors.slice(0, 10), Array(10).fill([]));
  t.deepEqual(errors.slice(10), [['$.train.steps'], ['$.data.positions'], ['$.train']]);
});
