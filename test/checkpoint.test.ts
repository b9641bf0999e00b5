import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import {
  checkpointDir,
  checkpointName,
  checkpointStep,
  latestCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
  type TrainingState,
} from '../shared/model/checkpoint.js';
import { type ModelConfig, parseModelConfig } from '../shared/model/config.js';
import { numel, paramSpecs } from '../shared/model/params.js';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../shared/model/safetensors.js';
import { Rng } from '../shared/util/rng.js';

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'rmt-ckpt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const qwen3 = (): ModelConfig =>
  parseModelConfig({
    model_type: 'qwen3',
    vocab_size: 32,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    tie_word_embeddings: false,
    rope_theta: 1000000,
    bos_token_id: 1,
    eos_token_id: [2, 3],
  });

const tiedLlama = (): ModelConfig =>
  parseModelConfig({
    model_type: 'llama',
    vocab_size: 20,
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    tie_word_embeddings: true,
    attention_bias: true,
    bos_token_id: 0,
    eos_token_id: 1,
  });

function randomParams(config: ModelConfig, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const out = new Map<string, Float32Array>();
  for (const s of paramSpecs(config)) {
    const a = new Float32Array(numel(s.shape));
    for (let i = 0; i < a.length; i++) a[i] = rng.normal() * 0.02;
    out.set(s.name, a);
  }
  return out;
}

function randomTraining(config: ModelConfig, seed: number): TrainingState {
  const rng = new Rng(seed);
  const m = randomParams(config, seed + 1);
  const v = randomParams(config, seed + 2);
  for (const a of v.values()) for (let i = 0; i < a.length; i++) a[i] = a[i] * a[i];
  for (let i = 0; i < 5; i++) rng.nextU32();
  return {
    step: 1234,
    rng: rng.state(),
    dataPosition: { shard: 3, offset: 98765, epoch: 1, order: [2, 0, 1] },
    optimizer: { m, v, hyper: { lr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 } },
    extra: { bestLoss: 2.5, note: 'warmup done', history: [1, 2, 3] },
  };
}

const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

function assertSameParams(
  t: ExecutionContext,
  a: Map<string, Float32Array>,
  b: Map<string, Float32Array>,
): void {
  t.deepEqual([...a.keys()], [...b.keys()]);
  for (const [name, x] of a) t.deepEqual(bits(b.get(name)!), bits(x), name);
}

function makeTokenizerDir(root: string): string {
  const dir = join(root, 'tok');
  mkdirSync(dir);
  writeFileSync(join(dir, 'tokenizer.json'), '{"version":"1.0","model":{"type":"BPE"}}');
  writeFileSync(join(dir, 'tokenizer_config.json'), '{"tokenizer_class":"PreTrainedTokenizerFast"}');
  writeFileSync(join(dir, 'special_tokens_map.json'), '{"eos_token":"<eos>"}');
  return dir;
}

test('qwen3 checkpoint round trip with tokenizer', (t) => {
  const root = tempDir(t);
  const config = qwen3();
  const params = randomParams(config, 11);
  const tokDir = makeTokenizerDir(root);
  const dir = join(root, 'ckpt');
  saveCheckpoint(dir, { config, params, tokenizerDir: tokDir });

  t.deepEqual(readdirSync(dir).sort(), [
    'config.json',
    'generation_config.json',
    'model.safetensors',
    'special_tokens_map.json',
    'tokenizer.json',
    'tokenizer_config.json',
  ]);
  const hf = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  t.deepEqual(hf.architectures, ['Qwen3ForCausalLM']);
  t.is(hf.torch_dtype, 'float32');
  const gen = JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8'));
  t.is(gen.bos_token_id, 1);
  t.deepEqual(gen.eos_token_id, [2, 3]);
  t.is(
    readFileSync(join(dir, 'tokenizer.json'), 'utf8'),
    readFileSync(join(tokDir, 'tokenizer.json'), 'utf8'),
  );
  const header = readSafetensorsHeader(join(dir, 'model.safetensors'));
  t.is(header.metadata.format, 'pt');
  t.true(header.tensors.has('lm_head.weight'));
  t.deepEqual(header.tensors.get('model.layers.1.self_attn.k_norm.weight')!.shape, [8]);

  const loaded = loadCheckpoint(dir);
  t.deepEqual(loaded.config, config);
  assertSameParams(t, params, loaded.params);
  t.is(loaded.training, undefined);
  t.is(loaded.tokenizerDir, dir);
});

test('tied llama checkpoint round trip without tokenizer; lm_head in file is ignored', (t) => {
  const root = tempDir(t);
  const config = tiedLlama();
  const params = randomParams(config, 5);
  t.false(params.has('lm_head.weight'));
  t.true(params.has('model.layers.0.self_attn.o_proj.bias'));
  const dir = join(root, 'ckpt');
  saveCheckpoint(dir, { config, params });
  t.false(readSafetensorsHeader(join(dir, 'model.safetensors')).tensors.has('lm_head.weight'));
  const loaded = loadCheckpoint(dir);
  t.deepEqual(loaded.config, config);
  assertSameParams(t, params, loaded.params);
  t.is(loaded.tokenizerDir, undefined);
  const gen = JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8'));
  t.is(gen.bos_token_id, 0);
  t.is(gen.eos_token_id, 1);

  // transformers may save a tied lm_head copy, and older versions rotary inv_freq buffers.
  const file = join(dir, 'model.safetensors');
  const tensors = new Map([...readSafetensors(file)].map(([k, v]) => [k, { shape: v.shape, data: v.data }]));
  tensors.set('lm_head.weight', { shape: [20, 8], data: params.get('model.embed_tokens.weight')! });
  tensors.set('model.layers.0.self_attn.rotary_emb.inv_freq', {
    shape: [2],
    data: new Float32Array([1, 0.01]),
  });
  writeSafetensors(file, tensors);
  const again = loadCheckpoint(dir);
  assertSameParams(t, params, again.params);
});

test('training state round trip', (t) => {
  const root = tempDir(t);
  const config = qwen3();
  const params = randomParams(config, 1);
  const training = randomTraining(config, 100);
  const dir = join(root, 'ckpt');
  saveCheckpoint(dir, { config, params, training });
  t.true(existsSync(join(dir, 'training_state.json')));
  const opt = readSafetensorsHeader(join(dir, 'optimizer.safetensors'));
  t.true(opt.tensors.has('exp_avg.model.embed_tokens.weight'));
  t.true(opt.tensors.has('exp_avg_sq.lm_head.weight'));
  t.is(opt.tensors.size, 2 * params.size);

  const loaded = loadCheckpoint(dir);
  const got = loaded.training!;
  t.is(got.step, training.step);
  t.deepEqual(got.rng, training.rng);
  t.deepEqual(got.dataPosition, training.dataPosition);
  t.deepEqual(got.optimizer.hyper, training.optimizer.hyper);
  t.deepEqual(got.extra, training.extra);
  assertSameParams(t, training.optimizer.m, got.optimizer.m);
  assertSameParams(t, training.optimizer.v, got.optimizer.v);
  // The restored RNG continues the same stream.
  const a = new Rng(training.rng);
  const b = new Rng(got.rng);
  t.deepEqual([a.nextU32(), a.nextU32()], [b.nextU32(), b.nextU32()]);
});

test('optimizer state may cover a subset of parameters, but m and v must match', (t) => {
  const root = tempDir(t);
  const config = tiedLlama();
  const params = randomParams(config, 1);
  const name = 'model.norm.weight';
  const training: TrainingState = {
    step: 0,
    rng: new Rng(1).state(),
    dataPosition: null,
    optimizer: {
      m: new Map([[name, new Float32Array(8)]]),
      v: new Map([[name, new Float32Array(8).fill(1)]]),
      hyper: { lr: 1e-3 },
    },
  };
  const dir = join(root, 'ckpt');
  saveCheckpoint(dir, { config, params, training });
  const got = loadCheckpoint(dir).training!;
  t.deepEqual([...got.optimizer.v.keys()], [name]);
  t.is(got.dataPosition, null);
  t.is(got.extra, undefined);

  const bad = { ...training, optimizer: { ...training.optimizer, v: new Map<string, Float32Array>() } };
  t.throws(() => saveCheckpoint(dir, { config, params, training: bad }), {
    message: `${dir}: training.optimizer has m for ${name} but not v`,
  });
  const wrongLen = {
    ...training,
    optimizer: { ...training.optimizer, m: new Map([[name, new Float32Array(3)]]) },
  };
  t.throws(() => saveCheckpoint(dir, { config, params, training: wrongLen }), {
    message: /training\.optimizer\.m\.model\.norm\.weight must be a Float32Array of 8 values/,
  });
  // The failed saves left the earlier checkpoint intact.
  t.deepEqual([...loadCheckpoint(dir).training!.optimizer.m.keys()], [name]);
});

test('shape mismatch names the parameter and the config fields', (t) => {
  const root = tempDir(t);
  const config = qwen3();
  const dir = join(root, 'ckpt');
  saveCheckpoint(dir, { config, params: randomParams(config, 2) });
  const file = join(dir, 'model.safetensors');
  const tensors = new Map([...readSafetensors(file)].map(([k, v]) => [k, { shape: v.shape, data: v.data }]));
  const q = 'model.layers.0.self_attn.q_proj.weight';
  tensors.set(q, { shape: [16, 16], data: new Float32Array(256) });
  writeSafetensors(file, tensors);
  t.throws(() => loadCheckpoint(dir), {
    message: `${file}: ${q} has shape [16,16] but config.json (hidden_size=16, num_attention_heads=4, head_dim=8) implies [32,16]`,
  });

  tensors.set(q, { shape: [32, 16], data: new Float32Array(512) });
  tensors.set('model.layers.1.mlp.gate_proj.weight', { shape: [16, 24], data: new Float32Array(384) });
  writeSafetensors(file, tensors);
  t.throws(() => loadCheckpoint(dir), {
    message: `${file}: model.layers.1.mlp.gate_proj.weight has shape [16,24] but config.json (hidden_size=16, intermediate_size=24) implies [24,16]`,
  });
});

test('missing and unknown tensors are errors naming them', (t) => {
  const root = tempDir(t);
  const config = qwen3();
  const params = randomParams(config, 3);
  const dir = join(root, 'ckpt');
  saveCheckpoint(dir, { config, params });
  const file = join(dir, 'model.safetensors');
  const tensors = new Map([...readSafetensors(file)].map(([k, v]) => [k, { shape: v.shape, data: v.data }]));

  tensors.delete('model.layers.1.self_attn.k_norm.weight');
  writeSafetensors(file, tensors);
  t.throws(() => loadCheckpoint(dir), {
    message: `${file}: missing model.layers.1.self_attn.k_norm.weight, which config.json (head_dim=8) implies has shape [8]`,
  });

  tensors.set('model.layers.1.self_attn.k_norm.weight', { shape: [8], data: new Float32Array(8) });
  tensors.set('model.layers.2.mlp.up_proj.weight', { shape: [1], data: new Float32Array(1) });
  tensors.set('score.weight', { shape: [1], data: new Float32Array(1) });
  writeSafetensors(file, tensors);
  t.throws(() => loadCheckpoint(dir), {
    message: `${file}: tensors that a qwen3 model with this config.json does not have: model.layers.2.mlp.up_proj.weight, score.weight`,
  });
});

test('missing folder or files give errors naming the path', (t) => {
  const root = tempDir(t);
  const absent = join(root, 'absent');
  t.throws(() => loadCheckpoint(absent), { message: `${absent}: checkpoint folder not found` });

  const dir = join(root, 'ckpt');
  const config = tiedLlama();
  saveCheckpoint(dir, { config, params: randomParams(config, 4) });
  rmSync(join(dir, 'model.safetensors'));
  t.throws(() => loadCheckpoint(dir), {
    message: new RegExp(`^${join(dir, 'model.safetensors')}: file not found`),
  });
  rmSync(join(dir, 'config.json'));
  t.throws(() => loadCheckpoint(dir), { message: `${join(dir, 'config.json')}: file not found` });

  saveCheckpoint(dir, { config, params: randomParams(config, 4), training: randomTraining(config, 1) });
  rmSync(join(dir, 'optimizer.safetensors'));
  t.throws(() => loadCheckpoint(dir), {
    message: `${join(dir, 'optimizer.safetensors')}: file not found (needed by training_state.json)`,
  });

  t.throws(
    () => saveCheckpoint(join(root, 'x'), { config, params: randomParams(config, 4), tokenizerDir: absent }),
    {
      message: `${join(absent, 'tokenizer.json')}: tokenizer file not found`,
    },
  );
  t.false(existsSync(join(root, 'x')));
});

test('malformed config.json names the file and the field', (t) => {
  const root = tempDir(t);
  const config = tiedLlama();
  const dir = join(root, 'ckpt');
  saveCheckpoint(dir, { config, params: randomParams(config, 4) });
  const path = join(dir, 'config.json');
  const hf = JSON.parse(readFileSync(path, 'utf8'));
  writeFileSync(path, JSON.stringify({ ...hf, num_attention_heads: 'two' }));
  t.throws(() => loadCheckpoint(dir), {
    message: `${path}: field "num_attention_heads": expected a positive integer, got "two"`,
  });
  writeFileSync(path, '{"model_type": "llama",');
  t.throws(() => loadCheckpoint(dir), { message: new RegExp(`^${path}: invalid JSON`) });
});

test('saveCheckpoint rejects missing, wrong-length and unknown parameters', (t) => {
  const root = tempDir(t);
  const config = qwen3();
  const dir = join(root, 'ckpt');
  const params = randomParams(config, 6);
  params.delete('model.norm.weight');
  t.throws(() => saveCheckpoint(dir, { config, params }), {
    message: `${dir}: parameter model.norm.weight is missing (shape [16])`,
  });
  params.set('model.norm.weight', new Float32Array(15));
  t.throws(() => saveCheckpoint(dir, { config, params }), {
    message: `${dir}: parameter model.norm.weight has 15 values but shape [16] needs 16`,
  });
  params.set('model.norm.weight', new Float32Array(16));
  params.set('model.extra.weight', new Float32Array(1));
  t.throws(() => saveCheckpoint(dir, { config, params }), {
    message: `${dir}: parameters not in the model config: model.extra.weight`,
  });
  t.deepEqual(readdirSync(root), []);
});

test('atomic save replaces an existing checkpoint and leaves no temp folders', (t) => {
  const root = tempDir(t);
  const config = tiedLlama();
  const dir = join(root, 'checkpoints', 'step-0000001');
  const first = randomParams(config, 1);
  saveCheckpoint(dir, { config, params: first, training: randomTraining(config, 1) });
  const second = randomParams(config, 2);
  saveCheckpoint(dir, { config, params: second });
  t.deepEqual(readdirSync(join(root, 'checkpoints')), ['step-0000001']);
  // The second save replaced the folder wholesale: no stale training state survives.
  t.false(existsSync(join(dir, 'training_state.json')));
  const loaded = loadCheckpoint(dir);
  assertSameParams(t, second, loaded.params);
  t.is(loaded.training, undefined);
  // A stale temp folder from this process is cleared, not merged in.
  mkdirSync(`${dir}.tmp-${process.pid}`);
  writeFileSync(join(`${dir}.tmp-${process.pid}`, 'junk'), 'x');
  saveCheckpoint(dir, { config, params: first });
  t.deepEqual(readdirSync(join(root, 'checkpoints')), ['step-0000001']);
  t.false(existsSync(join(dir, 'junk')));
});

test('latestCheckpoint picks the highest complete step', (t) => {
  const root = tempDir(t);
  t.is(latestCheckpoint(root), undefined);
  const config = tiedLlama();
  const params = randomParams(config, 1);
  for (const step of [10, 200, 30]) saveCheckpoint(checkpointDir(root, step), { config, params });
  // Not complete or not a checkpoint: a leftover temp folder, an empty step folder, a file.
  mkdirSync(join(root, 'checkpoints', 'step-0000900.tmp-4242'));
  mkdirSync(join(root, 'checkpoints', 'step-0000500'));
  writeFileSync(join(root, 'checkpoints', 'step-0000700'), '');
  t.is(latestCheckpoint(root), join(root, 'checkpoints', 'step-0000200'));
  saveCheckpoint(checkpointDir(root, 12_345_678), { config, params });
  t.is(latestCheckpoint(root), join(root, 'checkpoints', 'step-12345678'));
  t.is(checkpointName(42), 'step-0000042');
  t.is(checkpointStep(latestCheckpoint(root)!), 12_345_678);
  t.is(checkpointStep('/x/y/final'), undefined);
});

// Folders written by PyTorch/transformers (another suite's fixtures): rmt must open them as they are.
const torchRef = join(import.meta.dirname, 'fixtures', 'torch-ref');
for (const name of ['qwen2-tied', 'qwen3-gqa']) {
  const dir = join(torchRef, name);
  const run = existsSync(join(dir, 'model.safetensors')) ? test : test.skip;
  run(`loads the PyTorch-written ${name} folder`, (t) => {
    const header = readSafetensorsHeader(join(dir, 'model.safetensors'));
    t.is(header.metadata.format, 'pt');
    const loaded = loadCheckpoint(dir);
    t.deepEqual(
      [...loaded.params.keys()],
      paramSpecs(loaded.config).map((s) => s.name),
    );
    for (const s of paramSpecs(loaded.config)) t.is(loaded.params.get(s.name)!.length, numel(s.shape));
  });
}
