import { join } from 'node:path';
import type { Method } from '../../shared/config/rmt-defaults.js';
import { parseTrainConfig, type TrainConfig } from '../../shared/config/train-config.js';
import { writeGpt2Tokenizer } from '../../shared/data/gpt2-bpe.js';
import { saveCheckpoint } from '../../shared/model/checkpoint.js';
import { parseModelConfig } from '../../shared/model/config.js';
import { initParams } from '../../shared/model/init.js';

/** A random-weight tiny model with a 300-merge tokenizer: enough to drive every code path. */
export function tinyBaseCheckpoint(root: string): string {
  const tokDir = join(root, 'tok');
  const tok = writeGpt2Tokenizer(tokDir, { merges: 300 });
  const config = parseModelConfig({
    model_type: 'qwen3',
    vocab_size: tok.vocabSize,
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 8,
    max_position_embeddings: 128,
  });
  const dir = join(root, 'base');
  saveCheckpoint(dir, { config, params: initParams(config, 1, 0.5), tokenizerDir: tokDir });
  return dir;
}

/** A run of the tiny model on a slice of Moby-Dick, small enough for a test to take a few steps. */
export function tinyRunConfig(
  base: string,
  outDir: string,
  method: Method,
  steps: number,
  extra: Record<string, unknown> = {},
): TrainConfig {
  return parseTrainConfig(
    {
      method,
      run: { out_dir: outDir, seed: 3, backend: 'cpu' },
      model: { init_from: base },
      data: {
        corpora: ['moby-dick'],
        max_chars_per_corpus: 20000,
        rl_tokens: 400,
        eval_tokens: 200,
        context_len: 8,
        continuation_len: 3,
        score_window: 32,
      },
      budget: { B_0: 8, hard_cap: 10 },
      // A random model's top-16 entropy is near ln 16 everywhere: one tier, and a low filter.
      curriculum: { min_entropy: 0.1, edges: [2.5, 2.7] },
      grpo: { G: 2 },
      train: { steps, positions_per_step: 2, micro_batch: 8, generation_batch: 8 },
      eval: { positions: 4 },
      checkpoint: { every: 2, keep: 1 },
      ...extra,
    },
    'test',
  );
}
