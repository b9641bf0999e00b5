import { z } from 'zod';
import { MATH_CORPUS_DEFAULTS, mathConfigKey } from '../../data/synthetic-math.js';
import { pretrainSchema } from '../pretrain-config.js';
import { trainSchema } from '../train-config.js';
import { FIELDS } from './field.js';
import { MATH_OPTION_DOCS } from './math-options-doc.js';
import { type FieldInfo, type SectionInfo, sectionsOf } from './walk.js';

/**
 * docs/config.md and the JSON Schemas for editors, generated from the config schemas
 * (`npm run docs:config`; test/config-docs.test.ts checks the committed files are what this gives).
 */

type Json = Record<string, unknown>;

const jsonSchemaOf = (s: z.ZodType): Json =>
  z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Json;

/** What values a setting takes, in words, from its JSON Schema. */
function values(js: Json): string {
  if (Array.isArray(js.anyOf)) return (js.anyOf as Json[]).map(values).join(' or ');
  if (Array.isArray(js.enum)) return `one of ${(js.enum as unknown[]).map((v) => `\`${v}\``).join(', ')}`;
  switch (js.type) {
    case 'null':
      return 'null';
    case 'boolean':
      return 'true or false';
    case 'string':
      return (js.minLength as number) >= 1 ? 'non-empty string' : 'string';
    case 'integer':
    case 'number': {
      const b: string[] = [];
      if (js.minimum !== undefined && js.minimum !== Number.MIN_SAFE_INTEGER) b.push(`>= ${js.minimum}`);
      if (js.exclusiveMinimum !== undefined) b.push(`> ${js.exclusiveMinimum}`);
      if (js.maximum !== undefined && js.maximum !== Number.MAX_SAFE_INTEGER) b.push(`<= ${js.maximum}`);
      if (js.exclusiveMaximum !== undefined) b.push(`< ${js.exclusiveMaximum}`);
      return b.length ? `${js.type} ${b.join(' and ')}` : String(js.type);
    }
    case 'array': {
      if (Array.isArray(js.prefixItems)) {
        const items = js.prefixItems as Json[];
        return `list of ${items.length}: ${values(items[0])}`;
      }
      const of = js.items ? values(js.items as Json) : 'any';
      return `${(js.minItems as number) >= 1 ? 'non-empty ' : ''}list, each ${of}`;
    }
    case 'object':
      return 'mapping';
    default:
      return 'any';
  }
}

function flow(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `[${v.map(flow).join(', ')}]`;
  if (typeof v === 'object') {
    const e = Object.entries(v as Json);
    return e.length ? `{ ${e.map(([k, x]) => `${k}: ${flow(x)}`).join(', ')} }` : '{}';
  }
  if (typeof v === 'string') return v === '' || /^\s|\s$|[:{}[\],]/.test(v) ? JSON.stringify(v) : v;
  return String(v);
}

function shownDefault(f: FieldInfo): string {
  if (f.meta.shown !== undefined) return f.meta.shown;
  const v = f.default;
  if (v === null) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return `\`${flow(v)}\``;
}

const cell = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ');

function row(f: FieldInfo): string {
  const src = f.meta.paper === undefined ? f.meta.source : `${f.meta.source} (paper: ${flow(f.meta.paper)})`;
  const rule = f.meta.rule ? `; ${f.meta.rule}` : '';
  const vals = values(jsonSchemaOf(f.schema)) + rule;
  return `| \`${f.path}\` | ${cell(shownDefault(f))} | ${src} | ${cell(vals)} | ${cell(f.meta.description)} |`;
}

function table(fields: FieldInfo[]): string {
  return [
    '| field | default | source | values | meaning |',
    '|---|---|---|---|---|',
    ...fields.map(row),
  ].join('\n');
}

function sections(list: SectionInfo[]): string {
  return list
    .map((s) =>
      s.name === '' ? table(s.fields) : `### \`${s.name}\`: ${s.description}\n\n${table(s.fields)}`,
    )
    .join('\n\n');
}

function mathTable(): string {
  const rows = Object.entries(MATH_OPTION_DOCS).map(([k, d]) => {
    const def = d.default ?? `\`${flow(MATH_CORPUS_DEFAULTS[k as keyof typeof MATH_OPTION_DOCS])}\``;
    return `| \`${mathConfigKey(k)}\` | ${cell(def)} | ${cell(d.description)} |`;
  });
  return ['| key | default | meaning |', '|---|---|---|', ...rows].join('\n');
}

const INTRO = `# Run configuration

<!-- Generated from the schema in shared/config/ by \`npm run docs:config\`; do not edit by hand. -->

A run configuration is a YAML (or JSON) file that overrides any subset of the defaults below. Its
schema (\`shared/config/\`: \`pretrain-config.ts\`, \`train-config.ts\`, \`schema/\`) is the one
source of the TypeScript types, the checks, this page and the JSON Schemas for editors
(\`configs/schema/pretrain.schema.json\`, \`configs/schema/train.schema.json\`; a YAML file that
starts with \`# yaml-language-server: $schema=schema/train.schema.json\` gets completion and checks in
editors with the YAML language server).

- every key must exist: a misspelt key is an error that names the nearest known key;
- every value has the type and range the *values* column gives; a default of \`null\` marks an
  optional setting;
- \`model.config\` (pre-training) and \`data.math\` take keys beyond the defaults, checked by their
  own parsers;
- errors name the file and the dotted field, e.g. \`configs/rmt.yaml: train.steps: must be an
  integer >= 1, got 2.5\` (\`RunConfigError\`).

The *source* column says where a default comes from: *paper* (RMT, Tian et al. 2025), *RPT* (Dong et
al. 2025), *verl* (the convention matched) or *ours* (this project's choice where the papers are
silent); where ours differs from the paper's value, the paper's is given. \`docs/method.md\`
explains what each method value means.

Every job verb also takes \`--set section.key=value\` (repeatable; the value is read as YAML), applied
to the file before it is checked, so an override is validated as the same line in the file would
be: \`rmt train --config configs/rmt.yaml --set train.lr=3e-4 --set run.report_to=[jsonl,tensorboard]\`.
\`--out\`, \`--steps\`, \`--backend\` and \`--method\` are shorthands for \`--set run.out_dir=...\`, and so on.

\`rmt pretrain --config <yaml>\` reads a pre-training configuration; \`rmt train\`, \`rmt eval\` and the
coordinator's \`StartRun\` read an RL configuration. Each run writes the resolved configuration to
\`<out_dir>/config.resolved.json\`. The service processes' own flags (addresses, TLS, bus) are not
part of a run configuration: \`rmt serve <name> --help\` lists them with their environment variables
and defaults.`;

export function renderConfigDocs(): string {
  return `${[
    INTRO,
    '## Pre-training (`rmt pretrain`; `pretrainSchema` in `pretrain-config.ts`)',
    sections(sectionsOf(pretrainSchema)),
    '## RL training and evaluation (`rmt train`, `rmt eval`, StartRun; `trainSchema` in `train-config.ts`)',
    sections(sectionsOf(trainSchema)),
    '## The synthetic math corpus (`data.math`; `MATH_CORPUS_DEFAULTS` in `shared/data/synthetic-math.ts`)',
    "Read when `data.corpora` contains `math`. Keys are camelCase, as the generator's options; `docs/synthetic-math.md` describes the corpus.",
    mathTable(),
  ].join('\n\n')}\n`;
}

/** A config schema as JSON Schema (draft 2020-12), with each field's description and source. */
export function jsonSchema(kind: 'train' | 'pretrain'): string {
  const schema = kind === 'train' ? trainSchema : pretrainSchema;
  const js = z.toJSONSchema(schema, {
    io: 'input',
    unrepresentable: 'any',
    override: (ctx) => {
      const m = FIELDS.get(ctx.zodSchema as unknown as z.ZodType);
      if (!m) return;
      const j = ctx.jsonSchema as Json;
      for (const k of ['source', 'paper', 'shown', 'rule']) delete j[k];
      j.description = m.description + (m.rule ? ` (${m.rule})` : '');
      if (j.default === undefined) j.default = (ctx.zodSchema as unknown as z.ZodType).parse(undefined);
      j['x-default-source'] = m.source;
      if (m.paper !== undefined) j['x-paper-value'] = m.paper;
    },
  }) as Json;
  const title =
    kind === 'train'
      ? 'rmt RL run config (rmt train, rmt eval, StartRun)'
      : 'rmt pre-training config (rmt pretrain)';
  return `${JSON.stringify({ $schema: js.$schema, title, ...js }, null, 2)}\n`;
}

/** Every generated file, by path from the repository root. */
export function generatedConfigFiles(): Record<string, string> {
  return {
    'docs/config.md': renderConfigDocs(),
    'configs/schema/train.schema.json': jsonSchema('train'),
    'configs/schema/pretrain.schema.json': jsonSchema('pretrain'),
  };
}
