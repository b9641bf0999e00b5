import { z } from 'zod';
import { CORPUS_NAMES } from '../../data/corpora.js';
import { MATH_CONFIG_KEYS } from '../../data/synthetic-math.js';
import type { BackendChoice } from '../../kernels/index.js';
import { REPORT_TARGETS } from '../../obs/run-metrics.js';
import { didYouMean } from '../../util/did-you-mean.js';
import { echo, int, listOf, mapping, num, oneOf, setting, str } from './field.js';

/** The settings pre-training and RL runs share: where a run goes, its kernels, its optimizer. */

export const BACKENDS = ['auto', 'webgpu', 'webasm', 'cpu', 'reference'] as const;
// The kernels' own list, checked here so that the two cannot drift apart.
const _backendsMatch: readonly BackendChoice[] = BACKENDS;
void _backendsMatch;

const reportTarget = z.enum(REPORT_TARGETS, {
  error: (iss) => `unknown target ${echo(iss.input).slice(0, 40)}; known: ${REPORT_TARGETS.join(', ')}`,
});

export function runMapping(outDir: string, outDoc: string, seedDoc: string) {
  return mapping({
    out_dir: str(outDir, { description: outDoc }),
    seed: int(1234, {}, { description: seedDoc }),
    backend: oneOf(BACKENDS, 'auto', {
      description: 'kernel backend: `auto`, `webgpu`, `webasm`, `cpu` or `reference` (`docs/gpu.md`)',
    }),
    report_to: setting(
      z
        .array(reportTarget, { error: () => `must be a list of ${REPORT_TARGETS.join(', ')}` })
        .transform((l) => [...new Set(l)]),
      ['jsonl'],
      {
        description:
          'where per-step metrics go: `metrics.jsonl` (always written) and `tensorboard` (event files under `tensorboard/`, live in TensorBoard, uploadable with `wandb sync --sync-tensorboard`)',
      },
    ),
  });
}

/** Defaults of the AdamW fields, which differ between pre-training and RL. */
export interface OptimizerDefaults {
  steps: number;
  lr: number;
  lr_min: number;
  warmup_steps: number;
  weight_decay: number;
}

/** `steps` first, then (after the caller's batch field) the rest, in the order configs keep them. */
export function optimizerFields(d: OptimizerDefaults, stepsDoc: string) {
  return {
    steps: int(d.steps, { min: 1 }, { description: stepsDoc }),
    rest: {
      lr: num(d.lr, { above: 0 }, { description: 'peak learning rate, reached after warmup' }),
      lr_min: num(d.lr_min, { min: 0 }, { description: 'floor of the cosine decay', rule: 'at most lr' }),
      warmup_steps: int(d.warmup_steps, { min: 0 }, { description: 'linear warmup updates' }),
      beta1: num(0.9, { min: 0, below: 1 }, { description: "AdamW's first-moment decay" }),
      beta2: num(0.95, { min: 0, below: 1 }, { description: "AdamW's second-moment decay" }),
      eps: num(1e-8, { above: 0 }, { description: "AdamW's epsilon" }),
      weight_decay: num(
        d.weight_decay,
        { min: 0 },
        { description: 'decoupled weight decay, on matrices only' },
      ),
      max_grad_norm: num(
        1.0,
        { min: 0 },
        {
          description: 'global-norm clipping threshold; 0 turns clipping off',
        },
      ),
    },
  };
}

/** lr_min is a floor under lr. */
export function checkLrMin(
  t: { lr: number; lr_min: number },
  ctx: { addIssue(i: { code: 'custom'; message: string; path: string[] }): void },
): void {
  if (!(t.lr_min <= t.lr)) {
    ctx.addIssue({
      code: 'custom',
      path: ['lr_min'],
      message: `must be a finite number >= 0 and <= ${t.lr}, got ${t.lr_min}`,
    });
  }
}

const CORPORA = ['math', ...CORPUS_NAMES] as const;

export function corpora(def: (typeof CORPORA)[number][]) {
  return listOf(
    z.enum(CORPORA, {
      error: (iss) =>
        `unknown corpus ${echo(iss.input)}${typeof iss.input === 'string' ? didYouMean(iss.input, CORPORA) : ''} (${CORPORA.join(', ')})`,
    }),
    def,
    {
      description:
        'built-in corpora: `sotu`, `moby-dick`, `brown` (prose) and `math` (synthetic, `docs/synthetic-math.md`)',
    },
    { nonEmpty: true },
  );
}

/**
 * `data.math`: the synthetic math corpus's options in snake_case (the generator's camelCase option
 * names, `mathOptionsFromConfig`), their values checked by the generator itself; here only that each
 * key is one. The resolved mapping keeps the
 * keys the file gave, in its order, followed by those of `defaults` (a default is filled in when the
 * file does not give it), as configs have always resolved.
 */
export function mathOptions(defaults: Record<string, unknown>) {
  const known = Object.keys(MATH_CONFIG_KEYS);
  return setting(
    z
      .record(z.string(), z.unknown(), { error: (iss) => `expected a mapping, got ${echo(iss.input)}` })
      .superRefine((m, ctx) => {
        for (const key of Object.keys(m)) {
          if (!known.includes(key)) {
            ctx.addIssue({
              code: 'custom',
              path: [key],
              message: `unknown setting${didYouMean(key, known)} (known: ${known.join(', ')})`,
            });
          }
        }
      })
      .transform((m) => openMapping(m, defaults)),
    defaults,
    {
      description:
        'options of the synthetic math corpus (the table below); `{}` = its defaults; read when `data.corpora` has `math`',
    },
  );
}

/**
 * A mapping that takes keys beyond its defaults: the file's other keys first, in its order, then
 * each default key with the file's value if it gives one.
 */
export function openMapping(
  user: Record<string, unknown>,
  defaults: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(user)) if (!(k in defaults)) out[k] = v;
  for (const [k, def] of Object.entries(defaults))
    out[k] = user[k] !== undefined ? user[k] : structuredClone(def);
  return out;
}
