/**
 * How a next-token-reasoning rollout is laid out in tokens (docs/method.md section 1): the prompt
 * built from a context and a budget, and the parse of what the policy wrote back. Three layouts share one
 * interface so the generator, the reward and the learner never look at the layout themselves.
 *
 * Parsing never repairs a response: a missing `</think>` is not patched in, an empty or missing
 * prediction is `no_answer`, and a response cut by the hard cap is `length` whatever it contains.
 */

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import type { PromptConfig } from '../config/rmt-defaults.js';
import { namedToken } from '../data/special-tokens.js';
import type { Tokenizer } from '../data/tokenizer.js';
import { readGenerationConfig } from '../model/generation-config.js';
import { isJsonObject, readJsonObject } from '../util/json-file.js';

export type FinishReason = 'stop' | 'length' | 'no_answer';

export interface ParsedResponse {
  /** Tokens between `<think>` and `</think>` (all generated tokens when `</think>` never came). */
  reasoningIds: number[];
  /** The prediction as token ids; empty unless `finishReason` is `stop`. */
  predictionIds: number[];
  /** UTF-8 bytes of the prediction (what the byte-prefix reward compares); empty unless `stop`. */
  predictionBytes: Uint8Array;
  finishReason: FinishReason;
}

export interface PromptFormat {
  readonly name: PromptConfig['template'];
  /** Ids that end generation (the generator stops after the first of them). */
  readonly stopIds: readonly number[];
  /** Prompt ids for a context; `budget` null states no budget (methods without DTB). */
  buildPrompt(contextIds: readonly number[], budget: number | null): number[];
  /** Splits generated ids (everything after the prompt) into reasoning and prediction. */
  parseResponse(responseIds: readonly number[]): ParsedResponse;
}

/** The bytes a run of tokens stands for: byte-level BPE tokens may split a UTF-8 character. */
export function bytesOfTokens(ids: readonly number[], tokenizer: Pick<Tokenizer, 'tokenBytes'>): Uint8Array {
  const parts = ids.map((id) => tokenizer.tokenBytes(id));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function checkBudget(budget: number | null): void {
  if (budget !== null && !(Number.isInteger(budget) && budget >= 1)) {
    throw new Error(`budget must be a positive integer or null (got ${budget})`);
  }
}

/** Replaces `{name}` by a value without String.replace's `$` patterns (contexts may contain `$&`). */
function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (whole, key: string) => (key in values ? values[key] : whole));
}

interface Split {
  /** Generated ids before the first stop id. */
  body: readonly number[];
  truncated: boolean;
}

function splitAtStop(responseIds: readonly number[], stopIds: readonly number[]): Split {
  const end = responseIds.findIndex((id) => stopIds.includes(id));
  return end < 0
    ? { body: responseIds, truncated: true }
    : { body: responseIds.slice(0, end), truncated: false };
}

const NO_BYTES = new Uint8Array(0);

function unanswered(reasoningIds: number[], finishReason: 'length' | 'no_answer'): ParsedResponse {
  return { reasoningIds, predictionIds: [], predictionBytes: NO_BYTES, finishReason };
}

/**
 * `context <think> [budget marker] c_1 ... c_k </think> y_1 ... y_m <eos>` for the small models this
 * project trains. The budget is the text of `budget_marker` (default ` budget {B}:`) right after
 * `<think>`: plain tokens the model learns to read, with no vocabulary change. Our tokenizers give
 * every digit its own token, so each budget is the same few tokens in the same place, and the
 * colon closes the number so a reasoning that starts with a digit cannot extend it.
 */
export class BareFormat implements PromptFormat {
  readonly name = 'bare';
  readonly stopIds: readonly number[];

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly config: Pick<PromptConfig, 'budget_marker'>,
    stopIds?: readonly number[],
  ) {
    this.stopIds = stopIds ?? [tokenizer.eosId];
  }

  /** The marker tokens for a budget (empty for null). */
  budgetMarkerIds(budget: number | null): number[] {
    checkBudget(budget);
    if (budget === null) return [];
    return this.tokenizer.encode(fill(this.config.budget_marker, { B: String(budget) }));
  }

  buildPrompt(contextIds: readonly number[], budget: number | null): number[] {
    return [...contextIds, this.tokenizer.thinkId, ...this.budgetMarkerIds(budget)];
  }

  parseResponse(responseIds: readonly number[]): ParsedResponse {
    const { body, truncated } = splitAtStop(responseIds, this.stopIds);
    const close = body.indexOf(this.tokenizer.endThinkId);
    const reasoningIds = close < 0 ? [...body] : body.slice(0, close);
    if (truncated) return unanswered(reasoningIds, 'length');
    if (close < 0) return unanswered(reasoningIds, 'no_answer');
    const predictionIds = body.slice(close + 1);
    if (predictionIds.length === 0) return unanswered(reasoningIds, 'no_answer');
    return {
      reasoningIds,
      predictionIds,
      predictionBytes: bytesOfTokens(predictionIds, this.tokenizer),
      finishReason: 'stop',
    };
  }
}

const BOXED = new TextEncoder().encode('\\boxed{');
const OPEN = 0x7b; // '{'
const CLOSE = 0x7d; // '}'

function lastIndexOfBytes(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = hay.length - needle.length; i >= 0; i--) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Bytes inside the last `\boxed{...}`, braces balanced; null when there is none or it never closes
 * (an earlier, closed one is not used: the last box is the answer, as in RPT and verl's math
 * scorer). Works on bytes because the box may start or end inside a token.
 */
export function lastBoxedBytes(bytes: Uint8Array): Uint8Array | null {
  const start = lastIndexOfBytes(bytes, BOXED);
  if (start < 0) return null;
  const from = start + BOXED.length;
  let depth = 1;
  for (let i = from; i < bytes.length; i++) {
    if (bytes[i] === OPEN) depth++;
    else if (bytes[i] === CLOSE && --depth === 0) return bytes.slice(from, i);
  }
  return null;
}

/**
 * The parse shared by the layouts that answer in text: the reasoning between `<think>` (opened by
 * the prompt or by the model) and `</think>`, then the last `\boxed{...}` after it. The prediction
 * is text, so its ids are the tokenizer's own encoding of the boxed text.
 */
function parseBoxedResponse(
  tokenizer: Tokenizer,
  stopIds: readonly number[],
  responseIds: readonly number[],
): ParsedResponse {
  const split = splitAtStop(responseIds, stopIds);
  // A model that opens `<think>` itself: the tag is not reasoning.
  const body = split.body[0] === tokenizer.thinkId ? split.body.slice(1) : split.body;
  const close = body.indexOf(tokenizer.endThinkId);
  const reasoningIds = close < 0 ? [...body] : body.slice(0, close);
  if (split.truncated) return unanswered(reasoningIds, 'length');
  if (close < 0) return unanswered(reasoningIds, 'no_answer');
  const boxed = lastBoxedBytes(bytesOfTokens(body.slice(close + 1), tokenizer));
  if (boxed === null || boxed.length === 0) return unanswered(reasoningIds, 'no_answer');
  return {
    reasoningIds,
    predictionIds: tokenizer.encode(new TextDecoder().decode(boxed)),
    predictionBytes: boxed,
    finishReason: 'stop',
  };
}

export interface RptTemplateOptions extends Pick<PromptConfig, 'rpt_template' | 'rpt_budget_sentence'> {
  /** Ids that end the response (an instruction model's end-of-turn); default the tokenizer's eos. */
  stopIds?: readonly number[];
}

/** RPT's instruction with the context and, for a budget, RMT's budget sentence (text). */
function rptInstruction(
  tokenizer: Tokenizer,
  options: RptTemplateOptions,
  contextIds: readonly number[],
  budget: number | null,
): string {
  checkBudget(budget);
  const sentence = budget === null ? '' : fill(options.rpt_budget_sentence, { B: String(budget) });
  // A context ending inside a UTF-8 character decodes to U+FFFD there.
  return fill(options.rpt_template, { context: tokenizer.decode(contextIds), budget_sentence: sentence });
}

/**
 * RPT's template v0 as plain text, for models prompted without a chat template: the instruction
 * and the context, then `<think>` so the reasoning starts where the bare layout starts it.
 */
export class RptTemplateV0 implements PromptFormat {
  readonly name = 'rpt-v0';
  readonly stopIds: readonly number[];

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: RptTemplateOptions,
  ) {
    this.stopIds = options.stopIds ?? [tokenizer.eosId];
  }

  /** The prompt's text, before the `<think>` token. */
  promptText(contextIds: readonly number[], budget: number | null): string {
    return rptInstruction(this.tokenizer, this.options, contextIds, budget);
  }

  buildPrompt(contextIds: readonly number[], budget: number | null): number[] {
    return [...this.tokenizer.encode(this.promptText(contextIds, budget)), this.tokenizer.thinkId];
  }

  parseResponse(responseIds: readonly number[]): ParsedResponse {
    return parseBoxedResponse(this.tokenizer, this.stopIds, responseIds);
  }
}

export interface ChatTemplateOptions extends RptTemplateOptions {
  /** The model's chat template (Jinja source). */
  chatTemplate: string;
  /** Named in errors (the file the template came from). */
  source: string;
  /** Variables the template reads besides `messages` (`bos_token`, `eos_token`, ...). */
  variables?: Record<string, unknown>;
}

/**
 * The model's own chat template with RPT's instruction as the one user turn and the generation
 * prompt of the assistant turn after it; the model opens `<think>` itself (Qwen3 does).
 */
export class ChatTemplateFormat implements PromptFormat {
  readonly name = 'chat';
  readonly stopIds: readonly number[];
  private readonly template: Template;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: ChatTemplateOptions,
  ) {
    this.stopIds = options.stopIds ?? [tokenizer.eosId];
    try {
      this.template = new Template(options.chatTemplate);
    } catch (e) {
      throw new Error(`${options.source}: chat template does not parse (${(e as Error).message})`);
    }
  }

  promptText(contextIds: readonly number[], budget: number | null): string {
    const content = rptInstruction(this.tokenizer, this.options, contextIds, budget);
    try {
      return this.template.render({
        ...this.options.variables,
        messages: [{ role: 'user', content }],
        add_generation_prompt: true,
      });
    } catch (e) {
      throw new Error(`${this.options.source}: chat template failed to render (${(e as Error).message})`);
    }
  }

  buildPrompt(contextIds: readonly number[], budget: number | null): number[] {
    return this.tokenizer.encode(this.promptText(contextIds, budget));
  }

  parseResponse(responseIds: readonly number[]): ParsedResponse {
    return parseBoxedResponse(this.tokenizer, this.stopIds, responseIds);
  }
}

const isObject = isJsonObject;

function readConfigObject(path: string): Record<string, unknown> {
  return existsSync(path) ? readJsonObject(path) : {};
}

/**
 * The chat template of a tokenizer folder: chat_template.jinja (what current transformers saves),
 * else tokenizer_config.json's `chat_template` (a string, or a list of named templates of which
 * `default` is used). Returns the source and the file it came from; null when there is none.
 */
export function readChatTemplate(dir: string): { template: string; source: string } | null {
  const jinjaPath = join(dir, 'chat_template.jinja');
  if (existsSync(jinjaPath)) return { template: readFileSync(jinjaPath, 'utf8'), source: jinjaPath };
  const configPath = join(dir, 'tokenizer_config.json');
  const v = readConfigObject(configPath).chat_template;
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return { template: v, source: configPath };
  if (Array.isArray(v)) {
    const named = v.find((t) => isObject(t) && t.name === 'default');
    if (named && typeof named.template === 'string') return { template: named.template, source: configPath };
    throw new Error(`${configPath}: chat_template is a list without a "default" entry`);
  }
  throw new Error(`${configPath}: chat_template must be a string or a list of {name, template}`);
}

/** The special-token strings of tokenizer_config.json, as chat templates read them. */
function templateVariables(dir: string): Record<string, unknown> {
  const path = join(dir, 'tokenizer_config.json');
  const config = readConfigObject(path);
  const out: Record<string, unknown> = {};
  for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
    const token = namedToken(config, key, path);
    if (token !== null) out[key] = token;
  }
  return out;
}

/**
 * The ids that end a response: `prompt.stop_tokens` when set (token strings or ids, each checked
 * against the vocabulary), else generation_config.json's `eos_token_id` of the tokenizer's folder
 * (the checkpoint), else the tokenizer's eos.
 */
export function resolveStopIds(tokenizer: Tokenizer, stopTokens: readonly (string | number)[]): number[] {
  if (stopTokens.length > 0) {
    return stopTokens.map((t, i) => {
      const field = `prompt.stop_tokens[${i}]`;
      if (typeof t === 'string') {
        const id = tokenizer.idOf(t);
        if (id === undefined)
          throw new Error(`${field}: ${JSON.stringify(t)} is not a token of ${tokenizer.dir}`);
        return id;
      }
      if (typeof t === 'number' && Number.isInteger(t) && t >= 0 && t < tokenizer.vocabSize) return t;
      throw new Error(`${field}: must be a token string or an id in [0, ${tokenizer.vocabSize})`);
    });
  }
  const gen = readGenerationConfig(tokenizer.dir, tokenizer.vocabSize);
  const eos = gen?.eos_token_id;
  if (typeof eos === 'number') return [eos];
  if (Array.isArray(eos)) return eos as number[];
  return [tokenizer.eosId];
}

/** What is wrong with a prompt section, naming the field; null when nothing is. */
export function promptConfigProblem(p: PromptConfig): { field: string; reason: string } | null {
  const templates: PromptConfig['template'][] = ['bare', 'rpt-v0', 'chat'];
  if (!templates.includes(p.template)) {
    return {
      field: 'prompt.template',
      reason: `must be one of ${templates.join(', ')}, got ${JSON.stringify(p.template)}`,
    };
  }
  for (let i = 0; i < p.stop_tokens.length; i++) {
    const t = p.stop_tokens[i];
    if (!(typeof t === 'string' ? t.length > 0 : Number.isInteger(t) && t >= 0)) {
      return {
        field: `prompt.stop_tokens[${i}]`,
        reason: `must be a token string or a non-negative id, got ${JSON.stringify(t)}`,
      };
    }
  }
  return null;
}

/** The format a run config names, with its stop ids and (for `chat`) the checkpoint's chat template. */
export function makePromptFormat(tokenizer: Tokenizer, config: PromptConfig): PromptFormat {
  const problem = promptConfigProblem(config);
  if (problem) throw new Error(`${problem.field}: ${problem.reason}`);
  const stopIds = resolveStopIds(tokenizer, config.stop_tokens);
  switch (config.template) {
    case 'bare':
      return new BareFormat(tokenizer, config, stopIds);
    case 'rpt-v0':
      return new RptTemplateV0(tokenizer, { ...config, stopIds });
    case 'chat': {
      const chat = readChatTemplate(tokenizer.dir);
      if (chat === null) {
        throw new Error(
          `prompt.template: chat needs a chat template, and ${tokenizer.dir} has none (chat_template.jinja or tokenizer_config.json chat_template)`,
        );
      }
      return new ChatTemplateFormat(tokenizer, {
        ...config,
        stopIds,
        chatTemplate: chat.template,
        source: chat.source,
        variables: templateVariables(tokenizer.dir),
      });
    }
  }
}
