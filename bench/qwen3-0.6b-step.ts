/**
 * `npm run bench:qwen3-0.6b`: one learner step and one short KV-cache generation at Qwen3-0.6B's real
 * dimensions, with random weights built in memory (nothing is downloaded), on the CPU (webasm, the
 * default) or with --backend webgpu on a GPU.
 *
 * The model is Qwen/Qwen3-0.6B's own config.json (below, as published) read by parseModelConfig.
 * Phases, each timed, with the process's peak RSS (process.resourceUsage().maxRSS, a high-water mark)
 * read after it:
 *  1. weights: every parameter of paramSpecs(config) drawn as init.ts draws them and uploaded one at
 *     a time, so no second host copy of the model is held;
 *  2. generation: greedy KV-cache decoding of one random prompt (--prompt tokens) for --new-tokens
 *     tokens, prefill included; tokens/s = new tokens / time;
 *  3. learner step: forward, next-token cross-entropy, backward, global-norm clipping and AdamW with
 *     the run config's default optimizer settings (shared/config/train-config.ts), as the learner
 *     steps, on a random batch of --batch x --seq tokens; tokens/s = batch*seq / step time. The
 *     step ends with a read of the last updated parameter.
 * A phase that fails (for instance a WebAssembly memory that cannot grow past its 4 GiB) is recorded
 * with its error and the phases after it are skipped. Writes <out>/qwen3-0.6b-<machine>.json and .md
 * with the machine, the commit and the load average before and after.
 *
 * Usage: npm run bench:qwen3-0.6b -- [--backend webasm|cpu|webgpu] [--seq 128] [--batch 1]
 *   [--prompt 16] [--new-tokens 8] [--machine cpu|gpu (from the backend)] [--out bench/results]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adamwConfig } from '../shared/config/optimizer-config.js';
import { defineFlags, parseServiceFlagsOrExit, withoutEnv } from '../shared/config/service-flags.js';
import { TRAIN_DEFAULTS } from '../shared/config/train-config.js';
import type { Backend, Buf } from '../shared/kernels/backend.js';
import { createBackend } from '../shared/kernels/index.js';
import { AdamW } from '../shared/model/adamw.js';
import { nextTokenTargets, padBatch } from '../shared/model/batch.js';
import { parseModelConfig } from '../shared/model/config.js';
import type { Params } from '../shared/model/decoder.js';
import { Decoder } from '../shared/model/decoder.js';
import { generate } from '../shared/model/generate.js';
import { lossAndGrad } from '../shared/model/loss.js';
import { numel, paramSpecs } from '../shared/model/params.js';
import { Rng } from '../shared/util/rng.js';

/** Qwen/Qwen3-0.6B's config.json as published (transformers 4.51 layout). */
export const QWEN3_0_6B_CONFIG = {
  architectures: ['Qwen3ForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: 'silu',
  hidden_size: 1024,
  initializer_range: 0.02,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: 'qwen3',
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.51.0',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const GiB = 1024 ** 3;

const FLAGS = withoutEnv(
  defineFlags({
    backend: { type: 'enum', choices: ['webasm', 'cpu', 'webgpu'], default: 'webasm', doc: 'kernel backend' },
    seq: { type: 'int', default: 128, min: 1, max: 4096, doc: 'tokens per training sequence' },
    batch: { type: 'int', default: 1, min: 1, max: 64, doc: 'sequences per step' },
    prompt: { type: 'int', default: 16, min: 1, max: 4096, doc: 'prompt tokens of the generation' },
    'new-tokens': { type: 'int', default: 8, min: 1, max: 1024, doc: 'tokens generated' },
    machine: { type: 'string', doc: 'name of the machine in the result file (default: gpu or cpu)' },
    out: { type: 'string', arg: '<dir>', doc: 'results folder (default: bench/results)' },
  }),
);

function parseArgs(argv: string[]) {
  const a = parseServiceFlagsOrExit(FLAGS, 'usage: npm run bench:qwen3-0.6b -- [flags]', argv, {});
  const machine = a.machine ?? (a.backend === 'webgpu' ? 'gpu' : 'cpu');
  if (!/^[a-z0-9-]{1,32}$/.test(machine)) throw new Error('--machine: expected [a-z0-9-]{1,32}');
  return { ...a, machine, out: a.out === undefined ? join(ROOT, 'bench', 'results') : resolve(a.out) };
}

/** Peak resident set so far, in bytes. */
const peakRss = (): number => process.resourceUsage().maxRSS * 1024;
const gb = (bytes: number): string => (bytes / GiB).toFixed(2);

function git(args: string[]): string {
  const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

interface Phase {
  name: string;
  ok: boolean;
  seconds: number;
  tokens?: number;
  tokens_per_s?: number;
  peak_rss_bytes: number;
  /** process.memoryUsage() at the phase's end: resident set and the ArrayBuffers (live or not yet collected). */
  rss_bytes: number;
  array_buffers_bytes: number;
  detail?: Record<string, number>;
  error?: string;
}

const memoryNow = () => {
  const m = process.memoryUsage();
  return { rss_bytes: m.rss, array_buffers_bytes: m.arrayBuffers };
};

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const load = { before: os.loadavg(), after: [] as number[] };
  const config = parseModelConfig(QWEN3_0_6B_CONFIG, 'Qwen3-0.6B config.json');
  const specs = paramSpecs(config);
  const paramCount = specs.reduce((n, s) => n + numel(s.shape), 0);
  const largest = specs.reduce((m, s) => Math.max(m, numel(s.shape)), 0);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  log(`Qwen3-0.6B: ${(paramCount / 1e6).toFixed(1)} M parameters (${gb(paramCount * 4)} GiB float32)`);
  const be = await createBackend(args.backend, log);
  const phases: Phase[] = [];
  const phase = async (
    name: string,
    tokens: number | undefined,
    body: () => Promise<Record<string, number> | undefined>,
  ): Promise<boolean> => {
    log(`${name} ...`);
    const t0 = performance.now();
    try {
      const detail = await body();
      const seconds = (performance.now() - t0) / 1000;
      phases.push({
        name,
        ok: true,
        seconds,
        ...(tokens !== undefined ? { tokens, tokens_per_s: tokens / seconds } : {}),
        peak_rss_bytes: peakRss(),
        ...memoryNow(),
        ...(detail ? { detail } : {}),
      });
      log(`${name}: ${seconds.toFixed(1)} s, peak RSS ${gb(peakRss())} GiB`);
      return true;
    } catch (e) {
      const error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      phases.push({
        name,
        ok: false,
        seconds: (performance.now() - t0) / 1000,
        peak_rss_bytes: peakRss(),
        ...memoryNow(),
        error,
      });
      log(`${name} failed: ${error}`);
      return false;
    }
  };

  let model: Decoder | undefined;
  let grads: Params | undefined;
  const ok =
    (await phase('weights', undefined, async () => {
      // As init.ts draws them (normal 0.02, residual projections scaled, norms at one), one
      // parameter at a time so the host copy of each is dropped once uploaded.
      const rng = new Rng(1234);
      const residualStd = 0.02 / Math.sqrt(2 * config.num_hidden_layers);
      const params: Params = new Map();
      for (const s of specs) {
        const a = new Float32Array(numel(s.shape));
        if (s.init === 'ones') a.fill(1);
        else if (s.init === 'normal') {
          const sd = /o_proj|down_proj/.test(s.name) ? residualStd : 0.02;
          for (let i = 0; i < a.length; i++) a[i] = rng.normal() * sd;
        }
        params.set(s.name, be.upload(a));
      }
      model = new Decoder(config, be, params);
      return undefined;
    })) &&
    (await phase('generation', args.newTokens, async () => {
      const rng = new Rng(11);
      const prompt = Array.from({ length: args.prompt }, () => rng.int(config.vocab_size));
      const out = await generate(model as Decoder, [prompt], {
        maxNewTokens: args.newTokens,
        stopTokens: [],
        temperature: 0,
        topK: 0,
        topP: 1,
        rng: new Rng(1),
      });
      if (out[0].tokens.length !== args.newTokens) throw new Error('generation stopped early');
      return { prompt_tokens: args.prompt };
    })) &&
    (await phase('forward + loss + backward', args.batch * args.seq, async () => {
      const rng = new Rng(7);
      const seqs = Array.from({ length: args.batch }, () =>
        Array.from({ length: args.seq }, () => rng.int(config.vocab_size)),
      );
      const batch = padBatch(seqs, 0);
      const r = await lossAndGrad(model as Decoder, batch, nextTokenTargets(batch));
      if (!Number.isFinite(r.loss)) throw new Error(`loss is ${r.loss}`);
      grads = r.grads;
      return { loss: r.loss };
    }));
  // AdamW as the learner runs it (the WebAssembly ops update tensors too big for one wasm memory in
  // slices, ADAMW_CHUNK_ELEMENTS in shared/kernels/wasm/ops.ts).
  let optimizerOk = false;
  if (ok) {
    const optimizer = async (backend: Backend) => {
      const m = model as Decoder;
      const opt = new AdamW(backend, specs, adamwConfig(TRAIN_DEFAULTS.train));
      const r = await opt.update(m.params, grads as Params, TRAIN_DEFAULTS.train.lr);
      await backend.read(m.params.get(specs[specs.length - 1].name) as Buf);
      return { grad_norm: r.gradNorm };
    };
    optimizerOk = await phase('clip + AdamW (as the learner)', undefined, () => optimizer(be));
  }
  load.after = os.loadavg();
  const done = (name: string) => phases.find((p) => p.name === name && p.ok);
  const fb = done('forward + loss + backward');
  const adam = done('clip + AdamW (as the learner)');
  const learnerStep =
    fb && adam
      ? {
          seconds: fb.seconds + adam.seconds,
          tokens: args.batch * args.seq,
          tokens_per_s: (args.batch * args.seq) / (fb.seconds + adam.seconds),
          optimizer_phase: adam.name,
        }
      : null;

  const result = {
    bench: 'qwen3-0.6b-step',
    model: {
      name: 'Qwen/Qwen3-0.6B (random weights, its config.json)',
      config: QWEN3_0_6B_CONFIG,
      parameters: paramCount,
      float32_bytes: paramCount * 4,
      largest_parameter: { elements: largest, bytes: largest * 4 },
    },
    backend: be.name,
    shapes: { batch: args.batch, seq: args.seq, prompt: args.prompt, new_tokens: args.newTokens },
    optimizer: adamwConfig(TRAIN_DEFAULTS.train),
    complete: ok && optimizerOk,
    learner_step: learnerStep,
    phases,
    peak_rss_bytes: peakRss(),
    machine: {
      name: args.machine,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      memory_bytes: os.totalmem(),
      node: process.version,
      load_average_before: load.before,
      load_average_after: load.after,
    },
    commit: git(['rev-parse', 'HEAD']),
    dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    date: new Date().toISOString(),
  };
  mkdirSync(args.out, { recursive: true });
  const base = join(args.out, `qwen3-0.6b-${args.machine}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown(result));
  log(`wrote ${base}.json and ${base}.md`);
  process.stdout.write(markdown(result));
  process.exit(result.complete ? 0 : 1);
}

function markdown(r: {
  backend: string;
  learner_step: { seconds: number; tokens: number; tokens_per_s: number; optimizer_phase: string } | null;
  shapes: { batch: number; seq: number; prompt: number; new_tokens: number };
  model: { parameters: number; float32_bytes: number };
  phases: Phase[];
  peak_rss_bytes: number;
  machine: {
    cpu: string;
    cores: number;
    memory_bytes: number;
    node: string;
    load_average_before: number[];
    load_average_after: number[];
  };
  commit: string;
  dirty: boolean;
  date: string;
}): string {
  const loads = (l: number[]) => l.map((x) => x.toFixed(1)).join(' / ');
  const rows = r.phases.map((p) => {
    const what = p.ok
      ? p.tokens_per_s !== undefined
        ? `${p.tokens} tokens, ${p.tokens_per_s.toPrecision(3)} tokens/s`
        : 'done'
      : `failed: ${p.error}`;
    const extra = p.detail
      ? Object.entries(p.detail)
          .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toPrecision(4)}`)
          .join(', ')
      : '';
    return `| ${p.name} | ${p.seconds.toFixed(1)} | ${what} | ${gb(p.peak_rss_bytes)} | ${gb(p.rss_bytes)} / ${gb(p.array_buffers_bytes)} | ${extra} |`;
  });
  return [
    `# Qwen3-0.6B dimensions on the ${r.backend === 'webgpu' ? 'GPU' : 'CPU'}: one learner step, one short generation`,
    '',
    `Random weights at Qwen/Qwen3-0.6B's config.json (${(r.model.parameters / 1e6).toFixed(1)} M parameters, ${gb(r.model.float32_bytes)} GiB float32), backend \`${r.backend}\`; learner step on ${r.shapes.batch} x ${r.shapes.seq} tokens, greedy generation of ${r.shapes.new_tokens} tokens after a ${r.shapes.prompt}-token prompt (prefill included).`,
    '',
    '| phase | seconds | result | peak RSS so far (GiB) | RSS / ArrayBuffers at the end (GiB) | detail |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    r.learner_step
      ? `Learner step (forward + loss + backward, then ${r.learner_step.optimizer_phase}): ${r.learner_step.seconds.toFixed(1)} s for ${r.learner_step.tokens} tokens, ${r.learner_step.tokens_per_s.toPrecision(3)} tokens/s.`
      : 'Learner step: not completed (see the failed phase).',
    '',
    `Peak RSS of the process: ${gb(r.peak_rss_bytes)} GiB (process.resourceUsage().maxRSS).`,
    '',
    `Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${gb(r.machine.memory_bytes)} GiB memory, Node.js ${r.machine.node}; 1/5/15-minute load average ${loads(r.machine.load_average_before)} before, ${loads(r.machine.load_average_after)} after.${r.machine.load_average_before[0] > r.machine.cores ? ' The machine is shared with other jobs: with a load above the core count, wall times are longer than the code alone needs.' : ''}`,
    '',
    `Commit ${r.commit}${r.dirty ? ' (with uncommitted changes)' : ''}, ${r.date}. Command: \`npm run bench:qwen3-0.6b\`.`,
    '',
  ].join('\n');
}

await main();
