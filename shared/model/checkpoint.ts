/**
 * Checkpoint folders in the Hugging Face layout, so `AutoModelForCausalLM.from_pretrained(dir)` and
 * `AutoTokenizer.from_pretrained(dir)` open what rmt saves, and rmt opens Llama / Qwen2 / Qwen3 folders
 * saved by transformers:
 *
 *   config.json              toHfConfig(config), null bos / eos / pad ids filled from the tokenizer
 *   model.safetensors        every parameter of paramSpecs(config), F32, HF names and shapes
 *   generation_config.json   the tokenizer folder's own (sampling defaults, stop ids), bos / eos / pad
 *                            filled from tokenizer_config.json where absent (generation-config.ts)
 *   tokenizer.json, tokenizer_config.json, special_tokens_map.json, ...   copied from tokenizerDir
 *   training_state.json      (optional) step, RNG state, data position, optimizer hyper-parameters
 *   optimizer.safetensors    (optional) Adam moments `exp_avg.<param>` and `exp_avg_sq.<param>`
 *
 * Saves go to `<dir>.tmp-<pid>` and are renamed into place, so an interrupted save never leaves a
 * half-written checkpoint under `dir`.
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { RngState } from '../util/rng.js';
import { type ModelConfig, parseModelConfig, toHfConfig } from './config.js';
import { checkpointTokenIds, GENERATION_CONFIG_FILE } from './generation-config.js';
import { numel, paramSpecs } from './params.js';
import {
  readModelWeights,
  readSafetensors,
  WEIGHTS_FILE,
  WEIGHTS_INDEX_FILE,
  writeSafetensors,
} from './safetensors.js';

export interface TrainingState {
  step: number;
  rng: RngState;
  /** Where the data loader is; any JSON-able value (stored as is). */
  dataPosition: unknown;
  optimizer: {
    /** Adam first moments, by parameter name. */
    m: Map<string, Float32Array>;
    /** Adam second moments, by parameter name. */
    v: Map<string, Float32Array>;
    /** Learning rate, betas, eps, weight decay, ... */
    hyper: Record<string, number>;
  };
  /** Anything else JSON-able the trainer wants back on resume. */
  extra?: Record<string, unknown>;
}

export interface SaveCheckpointOptions {
  config: ModelConfig;
  params: Map<string, Float32Array>;
  /** Folder holding tokenizer.json and tokenizer_config.json to copy into the checkpoint. */
  tokenizerDir?: string;
  training?: TrainingState;
}

export interface LoadedCheckpoint {
  config: ModelConfig;
  /** Every parameter of paramSpecs(config), in that order, as float32. */
  params: Map<string, Float32Array>;
  training?: TrainingState;
  /** The checkpoint folder itself when it holds a tokenizer.json. */
  tokenizerDir?: string;
}

export class CheckpointError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = 'CheckpointError';
  }
}

export const CONFIG_FILE = 'config.json';
export { GENERATION_CONFIG_FILE } from './generation-config.js';
export const TRAINING_STATE_FILE = 'training_state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
const TOKENIZER_REQUIRED = ['tokenizer.json', 'tokenizer_config.json'];
const TOKENIZER_OPTIONAL = [
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'tokenizer.model',
  'chat_template.jinja',
];
const M_PREFIX = 'exp_avg.';
const V_PREFIX = 'exp_avg_sq.';
const TRAINING_STATE_VERSION = 1;

/** The folder name for a step: `step-0001234`. */
export const checkpointName = (step: number): string => `step-${String(step).padStart(7, '0')}`;

/** `<runDir>/checkpoints/step-XXXXXXX`. */
export const checkpointDir = (runDir: string, step: number): string =>
  join(runDir, 'checkpoints', checkpointName(step));

function writeDurable(path: string, text: string): void {
  const fd = openSync(path, 'w');
  try {
    const bytes = Buffer.from(text, 'utf8');
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const writeJson = (path: string, value: unknown): void =>
  writeDurable(path, `${JSON.stringify(value, null, 2)}\n`);

function checkParams(where: string, config: ModelConfig, params: Map<string, Float32Array>): void {
  const specs = paramSpecs(config);
  const known = new Set(specs.map((s) => s.name));
  for (const s of specs) {
    const p = params.get(s.name);
    if (!p) throw new CheckpointError(where, `parameter ${s.name} is missing (shape [${s.shape.join(',')}])`);
    if (!(p instanceof Float32Array))
      throw new CheckpointError(where, `parameter ${s.name} is not a Float32Array`);
    if (p.length !== numel(s.shape)) {
      throw new CheckpointError(
        where,
        `parameter ${s.name} has ${p.length} values but shape [${s.shape.join(',')}] needs ${numel(s.shape)}`,
      );
    }
  }
  const extra = [...params.keys()].filter((n) => !known.has(n));
  if (extra.length > 0) {
    throw new CheckpointError(where, `parameters not in the model config: ${listNames(extra)}`);
  }
}

function listNames(names: string[]): string {
  return names.length <= 5
    ? names.join(', ')
    : `${names.slice(0, 5).join(', ')} and ${names.length - 5} more`;
}

function isJsonable(value: unknown): boolean {
  try {
    return JSON.stringify(value) !== undefined || value === undefined;
  } catch {
    return false;
  }
}

function checkTraining(where: string, config: ModelConfig, t: TrainingState): void {
  if (!Number.isSafeInteger(t.step) || t.step < 0) {
    throw new CheckpointError(where, `training.step must be a non-negative integer, got ${t.step}`);
  }
  if (
    !Array.isArray(t.rng) ||
    t.rng.length !== 4 ||
    !t.rng.every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff)
  ) {
    throw new CheckpointError(where, `training.rng must be four uint32 words, got ${JSON.stringify(t.rng)}`);
  }
  for (const [k, v] of Object.entries(t.optimizer.hyper)) {
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new CheckpointError(where, `training.optimizer.hyper.${k} must be a finite number, got ${v}`);
    }
  }
  if (!isJsonable(t.dataPosition))
    throw new CheckpointError(where, 'training.dataPosition is not JSON-serialisable');
  if (!isJsonable(t.extra)) throw new CheckpointError(where, 'training.extra is not JSON-serialisable');
  const shapes = new Map(paramSpecs(config).map((s) => [s.name, s.shape]));
  const { m, v } = t.optimizer;
  for (const [label, moments, other] of [
    ['m', m, v],
    ['v', v, m],
  ] as const) {
    for (const [name, arr] of moments) {
      const shape = shapes.get(name);
      if (!shape)
        throw new CheckpointError(where, `training.optimizer.${label} has ${name}, which is not a parameter`);
      if (!(arr instanceof Float32Array) || arr.length !== numel(shape)) {
        throw new CheckpointError(
          where,
          `training.optimizer.${label}.${name} must be a Float32Array of ${numel(shape)} values (shape [${shape.join(',')}])`,
        );
      }
      if (!other.has(name)) {
        throw new CheckpointError(
          where,
          `training.optimizer has ${label} for ${name} but not ${label === 'm' ? 'v' : 'm'}`,
        );
      }
    }
  }
}

/**
 * Saves a checkpoint folder transformers can load (see the file comment for the layout). Throws if a
 * parameter is missing, has the wrong length, or is not in the config. Replaces `dir` atomically.
 */
export function saveCheckpoint(dir: string, opts: SaveCheckpointOptions): void {
  const { config, params, tokenizerDir, training } = opts;
  checkParams(dir, config, params);
  if (training) checkTraining(dir, config, training);
  const tokenizerFiles: string[] = [];
  if (tokenizerDir !== undefined) {
    for (const f of TOKENIZER_REQUIRED) {
      const p = join(tokenizerDir, f);
      if (!existsSync(p)) throw new CheckpointError(p, 'tokenizer file not found');
      tokenizerFiles.push(f);
    }
    for (const f of TOKENIZER_OPTIONAL) if (existsSync(join(tokenizerDir, f))) tokenizerFiles.push(f);
  }

  let ids: ReturnType<typeof checkpointTokenIds>;
  try {
    ids = checkpointTokenIds(config, tokenizerDir);
  } catch (e) {
    throw new CheckpointError(dir, (e as Error).message);
  }

  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  const old = `${dir}.old-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  let movedAside = false;
  try {
    mkdirSync(tmp);
    writeJson(join(tmp, CONFIG_FILE), toHfConfig(ids.config));
    writeJson(join(tmp, GENERATION_CONFIG_FILE), ids.generation);
    const tensors = new Map(
      paramSpecs(config).map((s) => [s.name, { shape: s.shape, data: params.get(s.name)! }]),
    );
    writeSafetensors(join(tmp, WEIGHTS_FILE), tensors);
    for (const f of tokenizerFiles) copyFileSync(join(tokenizerDir!, f), join(tmp, f));
    if (training) {
      const shapes = new Map(paramSpecs(config).map((s) => [s.name, s.shape]));
      const moments = new Map<string, { shape: number[]; data: Float32Array }>();
      for (const [name, data] of training.optimizer.m)
        moments.set(M_PREFIX + name, { shape: shapes.get(name)!, data });
      for (const [name, data] of training.optimizer.v)
        moments.set(V_PREFIX + name, { shape: shapes.get(name)!, data });
      writeSafetensors(join(tmp, OPTIMIZER_FILE), moments, { step: String(training.step) });
      writeJson(join(tmp, TRAINING_STATE_FILE), {
        version: TRAINING_STATE_VERSION,
        step: training.step,
        rng: training.rng,
        dataPosition: training.dataPosition,
        optimizer: { hyper: training.optimizer.hyper, state: OPTIMIZER_FILE },
        extra: training.extra,
      });
    }
    rmSync(old, { recursive: true, force: true });
    if (existsSync(dir)) {
      renameSync(dir, old);
      movedAside = true;
    }
    renameSync(tmp, dir);
    movedAside = false;
    syncDir(parent);
  } catch (e) {
    if (movedAside && !existsSync(dir)) renameSync(old, dir);
    rmSync(tmp, { recursive: true, force: true });
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(dir, `cannot save checkpoint: ${(e as Error).message}`);
  }
  rmSync(old, { recursive: true, force: true });
}

function syncDir(path: string): void {
  try {
    const fd = openSync(path, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some platforms cannot fsync a directory; the rename is still atomic.
  }
}

function readJson(path: string): unknown {
  if (!existsSync(path)) throw new CheckpointError(path, 'file not found');
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new CheckpointError(path, `invalid JSON: ${(e as Error).message}`);
  }
}

/** The config.json fields that determine each parameter's shape, for shape-mismatch messages. */
function shapeFields(name: string): (keyof ModelConfig)[] {
  if (name.endsWith('embed_tokens.weight') || name === 'lm_head.weight') return ['vocab_size', 'hidden_size'];
  if (/\.(q_norm|k_norm)\.weight$/.test(name)) return ['head_dim'];
  if (/\.q_proj\.bias$/.test(name)) return ['num_attention_heads', 'head_dim'];
  if (/\.(k_proj|v_proj)\.bias$/.test(name)) return ['num_key_value_heads', 'head_dim'];
  if (/\.(q_proj|o_proj)\.weight$/.test(name)) return ['hidden_size', 'num_attention_heads', 'head_dim'];
  if (/\.(k_proj|v_proj)\.weight$/.test(name)) return ['hidden_size', 'num_key_value_heads', 'head_dim'];
  if (/\.mlp\./.test(name)) return ['hidden_size', 'intermediate_size'];
  return ['hidden_size'];
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Buffers transformers (older versions) saved alongside the weights that rmt recomputes. */
const isIgnorableBuffer = (name: string): boolean => name.endsWith('rotary_emb.inv_freq');

/**
 * Loads a checkpoint folder written by `saveCheckpoint` or by transformers (single-file or sharded
 * safetensors). Validates every parameter's presence and shape against config.json, rejects unknown
 * tensors (other than rotary `inv_freq` buffers, and `lm_head.weight` under tied embeddings), and
 * loads training_state.json + optimizer.safetensors when present.
 */
export function loadCheckpoint(dir: string): LoadedCheckpoint {
  if (!existsSync(dir)) throw new CheckpointError(dir, 'checkpoint folder not found');
  if (!statSync(dir).isDirectory()) throw new CheckpointError(dir, 'not a folder');
  const configPath = join(dir, CONFIG_FILE);
  const config = parseModelConfig(readJson(configPath), configPath);
  const weights = readModelWeights(dir);
  const specs = paramSpecs(config);
  const params = new Map<string, Float32Array>();
  const defaultFile = join(dir, WEIGHTS_FILE);
  for (const s of specs) {
    const t = weights.get(s.name);
    if (!t) {
      throw new CheckpointError(
        defaultFile,
        `missing ${s.name}, which config.json (${describeFields(config, s.name)}) implies has shape [${s.shape.join(',')}]`,
      );
    }
    if (!sameShape(t.shape, s.shape)) {
      throw new CheckpointError(
        t.file,
        `${s.name} has shape [${t.shape.join(',')}] but config.json (${describeFields(config, s.name)}) implies [${s.shape.join(',')}]`,
      );
    }
    params.set(s.name, t.data);
  }
  const expected = new Set(specs.map((s) => s.name));
  const unknown = [...weights.keys()].filter(
    (n) =>
      !expected.has(n) && !isIgnorableBuffer(n) && !(n === 'lm_head.weight' && config.tie_word_embeddings),
  );
  if (unknown.length > 0) {
    throw new CheckpointError(
      weights.get(unknown[0])!.file,
      `tensors that a ${config.model_type} model with this config.json does not have: ${listNames(unknown)}`,
    );
  }
  const out: LoadedCheckpoint = { config, params };
  if (existsSync(join(dir, TRAINING_STATE_FILE))) out.training = loadTraining(dir, config);
  if (existsSync(join(dir, 'tokenizer.json'))) out.tokenizerDir = dir;
  return out;
}

function describeFields(config: ModelConfig, name: string): string {
  return shapeFields(name)
    .map((f) => `${f}=${config[f]}`)
    .join(', ');
}

function loadTraining(dir: string, config: ModelConfig): TrainingState {
  const path = join(dir, TRAINING_STATE_FILE);
  const raw = readJson(path) as Record<string, unknown> | null;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CheckpointError(path, 'expected a JSON object');
  }
  if (raw.version !== TRAINING_STATE_VERSION) {
    throw new CheckpointError(
      path,
      `unsupported version ${JSON.stringify(raw.version)} (expected ${TRAINING_STATE_VERSION})`,
    );
  }
  const step = raw.step;
  if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) {
    throw new CheckpointError(
      path,
      `field "step": expected a non-negative integer, got ${JSON.stringify(step)}`,
    );
  }
  const rng = raw.rng;
  if (
    !Array.isArray(rng) ||
    rng.length !== 4 ||
    !rng.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffffffff)
  ) {
    throw new CheckpointError(path, `field "rng": expected four uint32 words, got ${JSON.stringify(rng)}`);
  }
  const opt = raw.optimizer as { hyper?: unknown } | undefined;
  const hyper = opt?.hyper;
  if (
    hyper === null ||
    typeof hyper !== 'object' ||
    Array.isArray(hyper) ||
    !Object.values(hyper).every((x) => typeof x === 'number')
  ) {
    throw new CheckpointError(path, 'field "optimizer.hyper": expected an object of numbers');
  }
  const extra = raw.extra;
  if (extra !== undefined && (extra === null || typeof extra !== 'object' || Array.isArray(extra))) {
    throw new CheckpointError(path, 'field "extra": expected an object');
  }

  const optPath = join(dir, OPTIMIZER_FILE);
  if (!existsSync(optPath))
    throw new CheckpointError(optPath, `file not found (needed by ${TRAINING_STATE_FILE})`);
  const shapes = new Map(paramSpecs(config).map((s) => [s.name, s.shape]));
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  for (const [name, t] of readSafetensors(optPath)) {
    const [target, param] = name.startsWith(V_PREFIX)
      ? [v, name.slice(V_PREFIX.length)]
      : name.startsWith(M_PREFIX)
        ? [m, name.slice(M_PREFIX.length)]
        : [undefined, name];
    const shape = shapes.get(param);
    if (!target || !shape) {
      throw new CheckpointError(
        optPath,
        `unexpected tensor ${name} (expected exp_avg.<param> or exp_avg_sq.<param>)`,
      );
    }
    if (!sameShape(t.shape, shape)) {
      throw new CheckpointError(
        optPath,
        `${name} has shape [${t.shape.join(',')}] but parameter ${param} has shape [${shape.join(',')}]`,
      );
    }
    target.set(param, t.data);
  }
  for (const name of m.keys()) {
    if (!v.has(name)) throw new CheckpointError(optPath, `has ${M_PREFIX}${name} but no ${V_PREFIX}${name}`);
  }
  for (const name of v.keys()) {
    if (!m.has(name)) throw new CheckpointError(optPath, `has ${V_PREFIX}${name} but no ${M_PREFIX}${name}`);
  }
  // Moments come back in paramSpecs order (the file stores them sorted by name).
  const ordered = (moments: Map<string, Float32Array>): Map<string, Float32Array> =>
    new Map([...shapes.keys()].filter((n) => moments.has(n)).map((n) => [n, moments.get(n)!]));
  const state: TrainingState = {
    step,
    rng: rng as RngState,
    dataPosition: raw.dataPosition,
    optimizer: { m: ordered(m), v: ordered(v), hyper: hyper as Record<string, number> },
  };
  if (extra !== undefined) state.extra = extra as Record<string, unknown>;
  return state;
}

/**
 * The complete checkpoint folders `runDir/checkpoints/step-XXXXXXX`, oldest first. Half-written
 * `*.tmp-*` folders and folders without a config.json or weights are skipped.
 */
export function listCheckpoints(runDir: string): string[] {
  const root = join(runDir, 'checkpoints');
  if (!existsSync(root)) return [];
  const found: { step: number; dir: string }[] = [];
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    const match = /^step-(\d+)$/.exec(entry.name);
    if (!match || !entry.isDirectory()) continue;
    const dir = join(root, entry.name);
    const hasWeights = existsSync(join(dir, WEIGHTS_FILE)) || existsSync(join(dir, WEIGHTS_INDEX_FILE));
    if (!existsSync(join(dir, CONFIG_FILE)) || !hasWeights) continue;
    found.push({ step: Number(match[1]), dir });
  }
  return found.sort((a, b) => a.step - b.step).map((f) => f.dir);
}

/** The complete checkpoint with the highest step, or `undefined` when there is none. */
export function latestCheckpoint(runDir: string): string | undefined {
  return listCheckpoints(runDir).at(-1);
}

/** The step encoded in a checkpoint folder's name (`step-0001234` → 1234), or undefined. */
export function checkpointStep(dir: string): number | undefined {
  const match = /^step-(\d+)$/.exec(basename(dir));
  return match ? Number(match[1]) : undefined;
}
