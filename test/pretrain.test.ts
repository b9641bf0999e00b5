import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { loadPretrainConfig, parsePretrainConfig } from '../shared/config/pretrain-config.js';
import { listCheckpoints, loadCheckpoint } from '../shared/model/checkpoint.js';
import { pretrain } from '../shared/train/pretrain.js';
import { tinyPretrainConfig } from './helpers/tiny-pretrain.js';

const tiny = (outDir: string, steps: number) => tinyPretrainConfig(outDir, [`train.steps=${steps}`]);

const quiet = () => {};

test('pretrain writes metrics, checkpoints and a plot, and a resumed run ends bit-identical to an uninterrupted one', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'rmt-pretrain-'));
  try {
    const straight = join(root, 'straight');
    const summary = await pretrain(tiny(straight, 6), { log: quiet });
    t.is(summary.steps, 6);
    t.true(Number.isFinite(summary.final_held_out_nll));
    t.true(existsSync(join(straight, 'loss.svg')));
    const metrics = readFileSync(join(straight, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    t.deepEqual(
      metrics.map((m) => m.step),
      [0, 1, 2, 3, 4, 5, 6],
    );
    t.deepEqual(
      listCheckpoints(straight).map((d) => d.split('step-')[1]),
      ['0000003', '0000006'],
    );

    // Interrupted after step 4 (between checkpoints), then the same command again.
    const resumed = join(root, 'resumed');
    const stop = new AbortController();
    const partial = await pretrain(tiny(resumed, 6), {
      log: quiet,
      signal: stop.signal,
      onStep: (s) => s === 4 && stop.abort(),
    });
    t.is(partial.steps, 4);
    await pretrain(tiny(resumed, 6), { log: quiet });
    const a = loadCheckpoint(listCheckpoints(straight).at(-1)!);
    const b = loadCheckpoint(listCheckpoints(resumed).at(-1)!);
    for (const [name, p] of a.params) t.deepEqual(Array.from(b.params.get(name)!), Array.from(p), name);
    const resumedMetrics = readFileSync(join(resumed, 'metrics.jsonl'), 'utf8').trim().split('\n');
    t.is(resumedMetrics.length, 7);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('run configs reject unknown and mistyped settings, naming the field', (t) => {
  t.throws(() => parsePretrainConfig({ train: { stpes: 5 } }, 'x.yaml'), {
    message: /x\.yaml: train\.stpes: unknown setting/,
  });
  t.throws(() => parsePretrainConfig({ train: { lr: 'fast' } }, 'x.yaml'), {
    message: /x\.yaml: train\.lr: expected a number/,
  });
  t.throws(() => parsePretrainConfig({ data: { held_out_fraction: 1.5 } }, 'x.yaml'), {
    message: /held_out_fraction/,
  });
});

test('pretrain reads data.sources: a text folder of the user, split by document', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'rmt-pretrain-src-'));
  try {
    mkdirSync(join(root, 'notes'));
    for (let i = 0; i < 30; i++) {
      writeFileSync(
        join(root, 'notes', `${i}.md`),
        `# Note ${i}\n\nThe ship sailed ${i} leagues before dawn. `.repeat(3),
      );
    }
    writeFileSync(
      join(root, 'pretrain.yaml'),
      `run: { out_dir: ${join(root, 'out')}, seed: 7, backend: cpu }
tokenizer: { gpt2_merges: 300 }
model: { config: { model_type: qwen3, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8, max_position_embeddings: 64 } }
data: { sources: [{ path: notes/ }], held_out_fraction: 0.2, seq_len: 16 }
train: { steps: 2, batch_size: 2, warmup_steps: 1 }
eval: { every: 2, batches: 1 }
checkpoint: { every: 2, keep: 1 }
`,
    );
    const summary = await pretrain(loadPretrainConfig(join(root, 'pretrain.yaml')), { log: quiet });
    t.is(summary.steps, 2);
    t.true(
      summary.train_tokens > 2 * summary.held_out_tokens && summary.held_out_tokens > 0,
      JSON.stringify(summary),
    );
    t.true(Number.isFinite(summary.final_held_out_nll));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
