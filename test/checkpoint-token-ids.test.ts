import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { loadTokenizer } from '../shared/data/tokenizer.js';
import { loadCheckpoint, saveCheckpoint } from '../shared/model/checkpoint.js';
import { parseModelConfig } from '../shared/model/config.js';
import { initParams } from '../shared/model/init.js';
import { writeHfTokenizer } from './helpers/hf-tokenizers.js';

const root = mkdtempSync(join(tmpdir(), 'rmt-token-ids-'));

test.after.always(() => {
  rmSync(root, { recursive: true, force: true });
});

const tiny = (vocab: number, ids: Record<string, unknown> = {}) =>
  parseModelConfig({
    model_type: 'qwen3',
    vocab_size: vocab,
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 4,
    tie_word_embeddings: true,
    ...ids,
  });

const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

test("rmt's own tokenizer: config.json and generation_config.json carry its pad token, not null", async (t) => {
  const tokDir = join(root, 'gpt2');
  writeGpt2Tokenizer(tokDir, { merges: 50 });
  const tok = await loadTokenizer(tokDir);
  t.is(tok.padId, tok.eosId);
  // what `rmt pretrain` builds: eos and bos from the tokenizer, pad left to the checkpoint writer
  const config = tiny(tok.vocabSize, { eos_token_id: tok.eosId, bos_token_id: tok.eosId });
  const ck = join(root, 'gpt2-ck');
  saveCheckpoint(ck, { config, params: initParams(config, 1), tokenizerDir: tokDir });
  const cfg = readJson(join(ck, 'config.json'));
  t.deepEqual([cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id], [tok.eosId, tok.eosId, tok.padId]);
  const gen = readJson(join(ck, 'generation_config.json'));
  t.deepEqual(gen, {
    _from_model_config: true,
    bos_token_id: tok.eosId,
    eos_token_id: tok.eosId,
    pad_token_id: tok.padId,
  });
  t.is(loadCheckpoint(ck).config.pad_token_id, tok.padId);
});

test("a model's own generation_config.json (stop ids, sampling defaults) is kept; null ids are filled from the tokenizer", async (t) => {
  const tokDir = join(root, 'qwen');
  writeHfTokenizer(tokDir, 'qwen');
  const tok = await loadTokenizer(tokDir);
  const source = readJson(join(tokDir, 'generation_config.json'));
  const config = tiny(tok.vocabSize + 4);
  const ck = join(root, 'qwen-ck');
  saveCheckpoint(ck, { config, params: initParams(config, 2), tokenizerDir: tokDir });
  const cfg = readJson(join(ck, 'config.json'));
  // Qwen names no bos token: it stays null
  t.deepEqual([cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id], [null, tok.eosId, tok.padId]);
  t.deepEqual(readJson(join(ck, 'generation_config.json')), source);
  // a config that sets an id keeps it
  const own = tiny(tok.vocabSize, { pad_token_id: 0 });
  saveCheckpoint(ck, { config: own, params: initParams(own, 2), tokenizerDir: tokDir });
  t.is(readJson(join(ck, 'config.json')).pad_token_id, 0);
});

test('a generation_config.json or tokenizer_config.json naming ids that do not exist is refused by field', (t) => {
  const tokDir = join(root, 'bad');
  writeHfTokenizer(tokDir, 'llama2');
  const config = tiny(400);
  writeFileSync(join(tokDir, 'generation_config.json'), JSON.stringify({ eos_token_id: [2, 400] }));
  t.throws(
    () =>
      saveCheckpoint(join(root, 'bad-ck'), { config, params: initParams(config, 3), tokenizerDir: tokDir }),
    {
      message:
        /generation_config\.json: eos_token_id must be null, a token id or a list of ids in \[0, 400\)/,
    },
  );
  writeFileSync(join(tokDir, 'generation_config.json'), '{"eos_token_id": 2,');
  t.throws(
    () =>
      saveCheckpoint(join(root, 'bad-ck'), { config, params: initParams(config, 3), tokenizerDir: tokDir }),
    {
      message: /generation_config\.json: not valid JSON/,
    },
  );
  writeFileSync(join(tokDir, 'generation_config.json'), '{}');
  const tc = readJson(join(tokDir, 'tokenizer_config.json'));
  writeFileSync(join(tokDir, 'tokenizer_config.json'), JSON.stringify({ ...tc, pad_token: '<pad>' }));
  t.throws(
    () =>
      saveCheckpoint(join(root, 'bad-ck'), { config, params: initParams(config, 3), tokenizerDir: tokDir }),
    {
      message: /tokenizer_config\.json: pad_token "<pad>" is not a token of tokenizer\.json/,
    },
  );
});
