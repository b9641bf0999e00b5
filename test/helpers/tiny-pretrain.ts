import { type PretrainConfig, parsePretrainConfig } from '../../shared/config/pretrain-config.js';
import { applySets } from '../../shared/config/set-overrides.js';

/**
 * A pre-training config of seconds: a one-layer Qwen3 of hidden size 16 on a little Moby-Dick with a
 * 300-merge tokenizer, on the cpu backend. `sets` change single fields (`--set` lines, e.g.
 * `train.steps=4`), so each test states only what it needs different.
 */
export function tinyPretrainConfig(outDir: string, sets: readonly string[] = []): PretrainConfig {
  const raw = {
    run: { out_dir: outDir, seed: 7, backend: 'cpu' },
    tokenizer: { gpt2_merges: 300 },
    model: {
      config: {
        model_type: 'qwen3',
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        max_position_embeddings: 64,
      },
    },
    data: { corpora: ['moby-dick'], max_chars_per_corpus: 20000, seq_len: 16 },
    train: { steps: 6, batch_size: 2, warmup_steps: 2 },
    eval: { every: 3, batches: 1 },
    checkpoint: { every: 3, keep: 5 },
  };
  return parsePretrainConfig(applySets(raw, sets, 'tiny pretrain'), 'tiny pretrain');
}
