/**
 * The UTF-8 bytes a single vocabulary entry stands for, read off the tokenizer's decoder, for the two
 * BPE families Hugging Face ships:
 *
 *  - byte-level (GPT-2, Qwen2/3, Llama 3): every character of a token is one byte under GPT-2's
 *    reversible byte <-> printable-character map;
 *  - SentencePiece-style with byte fallback (Llama 2, Mistral): `<0xNN>` is the byte NN, and any
 *    other token is text in which the word-boundary mark (`▁` by default) stands for a space.
 *
 * Decoder steps that act on a whole sequence (`Strip` of the first space, `Fuse`) are not applied:
 * the bytes are what the token contributes in the middle of a text, which is what a byte-prefix
 * comparison between a prediction and a ground-truth continuation needs.
 */
import { unicodeToByteMap } from './gpt2-bpe.js';

export type TokenBytesOf = (token: string) => Uint8Array;

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;
const SEQUENCE_DECODERS = new Set(['Fuse', 'Strip']);

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The decoder's steps, flattened out of `Sequence` decoders, each checked to be one we can invert per token. */
function decoderSteps(decoder: unknown, where: string): Record<string, unknown>[] {
  if (!isObject(decoder)) throw new Error(`${where}: must be an object`);
  if (decoder.type === 'Sequence') {
    if (!Array.isArray(decoder.decoders)) throw new Error(`${where}.decoders: must be an array`);
    return decoder.decoders.flatMap((d, i) => decoderSteps(d, `${where}.decoders[${i}]`));
  }
  switch (decoder.type) {
    case 'ByteLevel':
    case 'ByteFallback':
    case 'Fuse':
    case 'Strip':
      return [decoder];
    case 'Metaspace':
      if (decoder.replacement !== undefined && typeof decoder.replacement !== 'string') {
        throw new Error(`${where}.replacement: must be a string`);
      }
      return [decoder];
    case 'Replace': {
      const pattern = decoder.pattern;
      if (!isObject(pattern) || typeof pattern.String !== 'string' || typeof decoder.content !== 'string') {
        throw new Error(
          `${where}: only Replace with a {"String": ...} pattern and a string content is supported`,
        );
      }
      return [decoder];
    }
    default:
      throw new Error(
        `${where}.type: unsupported decoder ${JSON.stringify(decoder.type)} (supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)`,
      );
  }
}

/**
 * A function from a (non-added) vocabulary entry to its bytes, for the decoder of a tokenizer.json.
 * `where` names the decoder field in errors. Throws for decoders it cannot invert token by token.
 */
export function tokenBytesFor(decoder: unknown, where: string): TokenBytesOf {
  const steps = decoderSteps(decoder, where);
  if (steps.some((s) => s.type === 'ByteLevel')) {
    const others = steps.filter((s) => s.type !== 'ByteLevel' && !SEQUENCE_DECODERS.has(s.type as string));
    if (others.length > 0) {
      throw new Error(`${where}: a ByteLevel decoder cannot be combined with ${String(others[0].type)}`);
    }
    const byteOf = unicodeToByteMap();
    return (token) => {
      const bytes = new Uint8Array(token.length);
      for (let i = 0; i < token.length; i++) {
        const b = byteOf.get(token[i]);
        if (b === undefined) throw new Error(`token ${JSON.stringify(token)} is not in byte-level form`);
        bytes[i] = b;
      }
      return bytes;
    };
  }
  // `<0xNN>` is a byte only where the decoder says so (the model's byte_fallback only makes them).
  const decodesBytes = steps.some((s) => s.type === 'ByteFallback');
  const replacements: [from: string, to: string][] = [];
  for (const s of steps) {
    if (s.type === 'Replace')
      replacements.push([(s.pattern as { String: string }).String, s.content as string]);
    if (s.type === 'Metaspace') replacements.push([(s.replacement as string | undefined) ?? '▁', ' ']);
  }
  const encoder = new TextEncoder();
  return (token) => {
    const byte = decodesBytes ? BYTE_TOKEN.exec(token) : null;
    if (byte) return Uint8Array.of(Number.parseInt(byte[1], 16));
    let text = token;
    for (const [from, to] of replacements) text = text.replaceAll(from, to);
    return encoder.encode(text);
  };
}
