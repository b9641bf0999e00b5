import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { RMT_DEFAULTS } from '../shared/config/rmt-defaults.js';
import { parseTrainConfig } from '../shared/config/train-config.js';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { loadTokenizer, type Tokenizer } from '../shared/data/tokenizer.js';
import {
  ChatTemplateFormat,
  makePromptFormat,
  readChatTemplate,
  resolveStopIds,
} from '../shared/rl/prompt-format.js';
import { QWEN_CHAT_TEMPLATE, writeHfTokenizer } from './helpers/hf-tokenizers.js';

const root = mkdtempSync(join(tmpdir(), 'rmt-prompt-templates-'));
let qwen: Tokenizer;
let gpt2: Tokenizer;

test.before(async () => {
  writeHfTokenizer(join(root, 'qwen'), 'qwen');
  writeGpt2Tokenizer(join(root, 'gpt2'), { merges: 200 });
  [qwen, gpt2] = await Promise.all([loadTokenizer(join(root, 'qwen')), loadTokenizer(join(root, 'gpt2'))]);
});

test.after.always(() => rmSync(root, { recursive: true, force: true }));

// RPT's template v0 (RPT, Appendix D, Table 10) as the paper prints it.
const V0 =
  "Complete the given text under '### Context' by predicting the next token, and wrap it in '\\boxed{}'. " +
  'Please reason step by step to find the most probable next token as the final answer, and enclose it in ' +
  '\\boxed{} (note: the token may begin with a space, e.g., \\boxed{ para} or \\boxed{ =}; do not use \\text{}).';

const prompt = (template: 'bare' | 'rpt-v0' | 'chat', extra = {}) => ({
  ...RMT_DEFAULTS.prompt,
  template,
  ...extra,
});

test('rpt-v0: the paper template verbatim, the budget sentence only for rows with a budget', (t) => {
  const f = makePromptFormat(gpt2, prompt('rpt-v0'));
  const ctx = gpt2.encode('The price rose by');
  const text = (b: number | null) => gpt2.decode(f.buildPrompt(ctx, b));
  t.is(text(null), `${V0}\n\n### Context The price rose by<think>`);
  t.is(
    text(64),
    `${V0} Please use exactly 64 tokens within <think></think>.\n\n### Context The price rose by<think>`,
  );
});

test('chat: the RPT instruction is the user turn of the model template, with the generation prompt', (t) => {
  const f = makePromptFormat(qwen, prompt('chat'));
  t.is(f.name, 'chat');
  const ctx = qwen.encode('東京 is the');
  const ids = f.buildPrompt(ctx, 16);
  const expected =
    `<|im_start|>user\n${V0} Please use exactly 16 tokens within <think></think>.\n\n### Context 東京 is the<|im_end|>\n` +
    '<|im_start|>assistant\n';
  t.is(qwen.decode(ids), expected);
  t.deepEqual(ids, qwen.encode(expected));
  t.is(ids[0], qwen.idOf('<|im_start|>') as number);
  t.is(ids.filter((id) => id === qwen.idOf('<|im_end|>')).length, 1);
});

test('chat: stop ids from generation_config.json, the answer is the last box after </think>', (t) => {
  const f = makePromptFormat(qwen, prompt('chat'));
  const imEnd = qwen.idOf('<|im_end|>')!;
  const eot = qwen.idOf('<|endoftext|>')!;
  t.deepEqual(f.stopIds, [imEnd, eot]);
  const reasoning = qwen.encode('\nA city name fits; " the" is likely.\n');
  const answer = qwen.encode('\n\nThe next token is \\boxed{ capital}.');
  const p = f.parseResponse([qwen.thinkId, ...reasoning, qwen.endThinkId, ...answer, imEnd, 5, 6]);
  t.is(p.finishReason, 'stop');
  t.deepEqual(p.reasoningIds, reasoning);
  t.is(new TextDecoder().decode(p.predictionBytes), ' capital');
  t.deepEqual(p.predictionIds, qwen.encode(' capital'));
  t.is(f.parseResponse([qwen.thinkId, ...reasoning, qwen.endThinkId, ...answer, eot]).finishReason, 'stop');
  t.is(f.parseResponse([qwen.thinkId, ...reasoning]).finishReason, 'length');
});

test('stop tokens set in the config win; without generation_config.json the tokenizer eos stops', (t) => {
  t.deepEqual(resolveStopIds(qwen, ['<|endoftext|>']), [qwen.idOf('<|endoftext|>')]);
  t.deepEqual(resolveStopIds(qwen, [3, '<|im_end|>']), [3, qwen.idOf('<|im_end|>')]);
  t.deepEqual(makePromptFormat(qwen, prompt('bare', { stop_tokens: ['<|im_start|>'] })).stopIds, [
    qwen.idOf('<|im_start|>'),
  ]);
  t.deepEqual(makePromptFormat(gpt2, prompt('bare')).stopIds, [gpt2.eosId]);
  t.throws(() => resolveStopIds(qwen, ['<|nope|>']), {
    message: /prompt\.stop_tokens\[0\]: "<\|nope\|>" is not a token/,
  });
  t.throws(() => resolveStopIds(qwen, ['<|im_end|>', qwen.vocabSize]), {
    message: /prompt\.stop_tokens\[1\]: must be a token string or an id in \[0, \d+\)/,
  });
});

test('chat template sources: chat_template.jinja first, a named list, none is an error naming the field', (t) => {
  const dir = join(root, 'qwen');
  t.is(readChatTemplate(dir)?.template, QWEN_CHAT_TEMPLATE);
  const cfgPath = join(dir, 'tokenizer_config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  writeFileSync(
    cfgPath,
    JSON.stringify({ ...cfg, chat_template: [{ name: 'default', template: 'D{{ messages[0].content }}' }] }),
  );
  t.is(readChatTemplate(dir)?.template, 'D{{ messages[0].content }}');
  writeFileSync(join(dir, 'chat_template.jinja'), '{{ bos_token }}J');
  t.deepEqual(readChatTemplate(dir), {
    template: '{{ bos_token }}J',
    source: join(dir, 'chat_template.jinja'),
  });
  rmSync(join(dir, 'chat_template.jinja'));
  writeFileSync(cfgPath, JSON.stringify(cfg));
  t.throws(() => makePromptFormat(gpt2, prompt('chat')), {
    message: /prompt\.template: chat needs a chat template/,
  });
});

test('chat templates read the special-token strings; a template that does not parse names its file', async (t) => {
  const dir = join(root, 'llama3');
  writeHfTokenizer(dir, 'llama3');
  writeFileSync(
    join(dir, 'chat_template.jinja'),
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}",
  );
  const tok = await loadTokenizer(dir);
  const f = makePromptFormat(tok, prompt('chat'));
  const ids = f.buildPrompt(tok.encode('x'), null);
  t.is(ids[0], tok.bosId as number);
  t.is(ids.at(-1), tok.eosId);
  t.throws(
    () =>
      new ChatTemplateFormat(tok, {
        ...RMT_DEFAULTS.prompt,
        chatTemplate: '{% for m in messages %}',
        source: 'chat_template.jinja',
      }),
    { message: /chat_template\.jinja: chat template does not parse/ },
  );
});

test('the run config validates prompt.template and prompt.stop_tokens by field', (t) => {
  const base = { method: 'rmt', model: { init_from: 'x' } };
  t.is(parseTrainConfig({ ...base, prompt: { template: 'chat' } }, 'c.yaml').prompt.template, 'chat');
  t.throws(() => parseTrainConfig({ ...base, prompt: { template: 'rpt' } }, 'c.yaml'), {
    message: /c\.yaml: prompt\.template: must be one of bare, rpt-v0, chat, got "rpt"/,
  });
  t.throws(() => parseTrainConfig({ ...base, prompt: { stop_tokens: ['<|im_end|>', -1] } }, 'c.yaml'), {
    message: /c\.yaml: prompt\.stop_tokens\[1\]: must be a token string or a non-negative id/,
  });
  t.throws(() => parseTrainConfig({ ...base, prompt: { format: 'bare' } }, 'c.yaml'), {
    message: /c\.yaml: prompt\.format: unknown setting/,
  });
});
