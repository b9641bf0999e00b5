import type { WeightsChunk, WeightsHeader } from '../gen/rmt/v1/learner.js';

/**
 * A GetWeights stream gathered into whole tensors: the header, then each tensor's chunks written at
 * their offsets. Every chunk must fit its tensor's shape (whole float32 values, inside the tensor);
 * `from` names the sender in errors.
 */
export async function readWeightsStream(
  chunks: AsyncIterable<WeightsChunk>,
  from: string,
): Promise<{ header: WeightsHeader; params: Map<string, Float32Array>; bytes: number }> {
  const params = new Map<string, Float32Array>();
  let header: WeightsHeader | null = null;
  let bytes = 0;
  for await (const chunk of chunks) {
    const part = chunk.part;
    if (part?.$case === 'header') {
      header = part.value;
    } else if (part?.$case === 'tensor') {
      const t = part.value;
      const n = t.shape.reduce((a, b) => a * b, 1);
      let buf = params.get(t.name);
      if (!buf) {
        buf = new Float32Array(n);
        params.set(t.name, buf);
      }
      // The bytes of a protobuf field need not be 4-byte aligned: copy before viewing as float32.
      const data = new Uint8Array(t.data);
      if (data.byteLength % 4 !== 0 || t.offset < 0 || t.offset + data.byteLength / 4 > buf.length)
        throw new Error(`GetWeights from ${from}: a chunk of "${t.name}" does not fit its shape`);
      buf.set(new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4), t.offset);
      bytes += t.data.byteLength;
    }
  }
  if (!header) throw new Error(`GetWeights from ${from} ended without a header`);
  return { header, params, bytes };
}
