/**
 * C = op(A) · op(B) in hand-written WGSL, tiled, on the device gpu.js uses.
 *
 * Why not gpu.js: its matmul is one thread per output reading A and B straight from storage (every
 * operand element read n or m times from memory), and a B stored [n, k] costs a separate transpose
 * kernel. Measured on an H100/H200 it reached about 0.15x torch.mm at 1024^3 (docs/gpu.md). Here:
 * - each workgroup owns a TILE x TILE block of C and walks k in slices of BK, staging an A slice and a
 *   B slice in workgroup memory, so each operand element is read from storage once per block;
 * - each of the 16 x 8 threads keeps an 8 x 4 block of C in registers (eight vec4 accumulators) and
 *   per k step reads one vec4 of B and two of A from workgroup memory for 32 multiply-adds;
 * - operands are read as vec4 where their contiguous axis is a multiple of 4 (then every vec4 is
 *   entirely inside or entirely outside the matrix), element by element otherwise, and C is written
 *   as vec4 when n is a multiple of 4;
 * - all four layouts (A [m, k] or [k, m], B [k, n] or [n, k]) are handled in the loads, so no
 *   transpose kernel runs: the model's forward and generation use A·Bᵀ, its backward A·B and Aᵀ·B;
 * - the edges: loads past m, n or k give zero, stores past m or n are skipped, so any shape works.
 * One pipeline per (layout, vectorisation) variant, built on first use. 128 invocations and 8 KiB of
 * workgroup memory per workgroup, three storage buffers: within compatibility mode's limits (the CI's
 * software adapter).
 */

import { COMPUTE, COPY_DST, COPY_SRC, STORAGE, UNIFORM } from './constants.js';
import type { DawnBuffer, DawnDevice } from './dawn-types.js';

/** Rows and columns of C per workgroup. */
export const TILE = 64;
/** k per slice staged in workgroup memory. */
export const BK = 16;
/** Threads along n (each 4 columns) and along m (each 8 rows): TX * 4 = TY * 8 = TILE. */
const TX = 16;
const TY = 8;
const THREADS = TX * TY;
/** vec4s per slice of each operand: TILE * BK / 4, loaded by THREADS threads. */
const LOADS = (TILE * BK) / 4 / THREADS;

export interface TiledMatmulShape {
  m: number;
  k: number;
  n: number;
  transA?: boolean;
  transB?: boolean;
}

type Buffer = DawnBuffer;
type Device = DawnDevice;

interface Variant {
  transA: boolean;
  transB: boolean;
  /** Operands read as vec4 (their contiguous axis is a multiple of 4). */
  vecA: boolean;
  vecB: boolean;
  /** C written as vec4 (n a multiple of 4). */
  vecC: boolean;
}

const COMPONENTS = ['x', 'y', 'z', 'w'];

/**
 * One operand's slice load into workgroup memory `dst`, laid out [BK][TILE / 4] vec4s (k-major, so
 * the inner loop reads a vec4 of rows or columns at one k).
 * - `alongK`: the operand's contiguous axis is k (A [m, k] or B [n, k]): thread reads 4 consecutive
 *   k of one row/column and scatters them into 4 k rows of `dst`;
 * - else the contiguous axis is the tile's (A [k, m] or B [k, n]): 4 consecutive rows/columns at one
 *   k, stored as one vec4.
 * `outer` is the tile axis' origin and extent (row0/m or col0/n); `stride` the row length in memory.
 */
function loadSlice(
  src: string,
  dst: string,
  alongK: boolean,
  vec: boolean,
  origin: string,
  extent: string,
  stride: string,
): string {
  const lines: string[] = [];
  for (let r = 0; r < LOADS; r++) {
    lines.push('{');
    lines.push(`  let idx = t + ${r * THREADS}u;`);
    if (alongK) {
      // TILE rows x BK/4 vec4s along k
      lines.push(`  let o = idx / ${BK / 4}u;`);
      lines.push(`  let kq = idx % ${BK / 4}u;`);
      lines.push(`  let go = ${origin} + o;`);
      lines.push(`  let gk = k0 + kq * 4u;`);
      lines.push('  var v = vec4<f32>(0.0);');
      if (vec) {
        lines.push(`  if (go < ${extent} && gk < prm.k) { v = ${src}[(go * ${stride} + gk) / 4u]; }`);
      } else {
        lines.push(`  if (go < ${extent}) {`);
        lines.push(`    let base = go * ${stride} + gk;`);
        for (let c = 0; c < 4; c++)
          lines.push(`    if (gk + ${c}u < prm.k) { v.${COMPONENTS[c]} = ${src}[base + ${c}u]; }`);
        lines.push('  }');
      }
      lines.push(`  let at = kq * ${4 * (TILE / 4)}u + o / 4u;`);
      lines.push('  let comp = o % 4u;');
      for (let c = 0; c < 4; c++) lines.push(`  ${dst}[at + ${c * (TILE / 4)}u][comp] = v.${COMPONENTS[c]};`);
    } else {
      // BK k rows x TILE/4 vec4s along the tile axis
      lines.push(`  let kk = idx / ${TILE / 4}u;`);
      lines.push(`  let oq = idx % ${TILE / 4}u;`);
      lines.push('  let gk = k0 + kk;');
      lines.push(`  let go = ${origin} + oq * 4u;`);
      lines.push('  var v = vec4<f32>(0.0);');
      if (vec) {
        lines.push(`  if (gk < prm.k && go < ${extent}) { v = ${src}[(gk * ${stride} + go) / 4u]; }`);
      } else {
        lines.push('  if (gk < prm.k) {');
        lines.push(`    let base = gk * ${stride} + go;`);
        for (let c = 0; c < 4; c++)
          lines.push(`    if (go + ${c}u < ${extent}) { v.${COMPONENTS[c]} = ${src}[base + ${c}u]; }`);
        lines.push('  }');
      }
      lines.push(`  ${dst}[kk * ${TILE / 4}u + oq] = v;`);
    }
    lines.push('}');
  }
  return lines.join('\n    ');
}

/** The WGSL of one variant. */
export function tiledMatmulWgsl(v: Variant): string {
  const elem = (vec: boolean) => (vec ? 'vec4<f32>' : 'f32');
  const rows = TILE / TY;
  const acc = Array.from({ length: rows }, (_, i) => `acc${i}`);
  const fmas = acc.map((a, i) => `${a} = ${a} + a${i >> 2}.${COMPONENTS[i & 3]} * bv;`).join('\n      ');
  const stores = acc
    .map((a, i) => {
      const head = `if (r0 + ${i}u < prm.m) {`;
      if (v.vecC) return `${head} if (c0 < prm.n) { c[((r0 + ${i}u) * prm.n + c0) / 4u] = ${a}; } }`;
      const parts = COMPONENTS.map(
        (comp, j) => `if (c0 + ${j}u < prm.n) { c[base${i} + ${j}u] = ${a}.${comp}; }`,
      ).join(' ');
      return `${head} let base${i} = (r0 + ${i}u) * prm.n + c0; ${parts} }`;
    })
    .join('\n  ');
  return /* wgsl */ `
struct P { m: u32, k: u32, n: u32, pad: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<${elem(v.vecA)}>;
@group(0) @binding(2) var<storage, read> b: array<${elem(v.vecB)}>;
@group(0) @binding(3) var<storage, read_write> c: array<${elem(v.vecC)}>;
var<workgroup> As: array<vec4<f32>, ${(BK * TILE) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(BK * TILE) / 4}>;

@compute @workgroup_size(${TX}, ${TY}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = lid.y * ${TX}u + lid.x;
  let row0 = wg.y * ${TILE}u;
  let col0 = wg.x * ${TILE}u;
  ${acc.map((a) => `var ${a} = vec4<f32>(0.0);`).join('\n  ')}
  let slices = (prm.k + ${BK - 1}u) / ${BK}u;
  for (var s = 0u; s < slices; s = s + 1u) {
    let k0 = s * ${BK}u;
    ${loadSlice('a', 'As', !v.transA, v.vecA, 'row0', 'prm.m', v.transA ? 'prm.m' : 'prm.k')}
    ${loadSlice('b', 'Bs', v.transB, v.vecB, 'col0', 'prm.n', v.transB ? 'prm.k' : 'prm.n')}
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk = kk + 1u) {
      let bv = Bs[kk * ${TILE / 4}u + lid.x];
      let a0 = As[kk * ${TILE / 4}u + lid.y * 2u];
      let a1 = As[kk * ${TILE / 4}u + lid.y * 2u + 1u];
      ${fmas}
    }
    workgroupBarrier();
  }
  let r0 = row0 + lid.y * ${rows}u;
  let c0 = col0 + lid.x * 4u;
  ${stores}
}`;
}

/** The variant a shape runs: vec4 wherever the contiguous axis is a multiple of 4. */
export function variantOf(s: TiledMatmulShape): Variant {
  const transA = s.transA === true;
  const transB = s.transB === true;
  return {
    transA,
    transB,
    vecA: (transA ? s.m : s.k) % 4 === 0,
    vecB: (transB ? s.k : s.n) % 4 === 0,
    vecC: s.n % 4 === 0,
  };
}

export class TiledMatmul {
  private readonly pipelines = new Map<string, object>();
  private readonly layout: object;
  /** Dispatches so far (tests check that a product really ran here). */
  dispatches = 0;

  constructor(private readonly device: Device) {
    this.layout = device.createBindGroupLayout({
      entries: ['uniform', 'read-only-storage', 'read-only-storage', 'storage'].map((type, binding) => ({
        binding,
        visibility: COMPUTE,
        buffer: { type },
      })),
    });
  }

  /**
   * Whether `s` fits this kernel: non-empty operands and C, the workgroup grid within the device's per-dimension
   * limit and every matrix within one storage binding. Otherwise the caller uses its general path.
   */
  fits(s: TiledMatmulShape): boolean {
    const { m, k, n } = s;
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    return (
      m > 0 &&
      k > 0 &&
      n > 0 &&
      Math.ceil(m / TILE) <= max &&
      Math.ceil(n / TILE) <= max &&
      Math.max(m * n, m * k, k * n) * 4 <= this.device.limits.maxStorageBufferBindingSize
    );
  }

  private pipeline(v: Variant): object {
    const key = `${+v.transA}${+v.transB}${+v.vecA}${+v.vecB}${+v.vecC}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const d = this.device;
      p = d.createComputePipeline({
        layout: d.createPipelineLayout({ bindGroupLayouts: [this.layout] }),
        compute: { module: d.createShaderModule({ code: tiledMatmulWgsl(v) }), entryPoint: 'main' },
      });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /**
   * Records and submits C = op(A) · op(B) into a new buffer of m * n floats (usage STORAGE |
   * COPY_SRC, the usage of gpu.js's outputs); the caller owns it. `a` and `b` are device buffers of at
   * least m * k and k * n floats.
   */
  run(a: Buffer, b: Buffer, s: TiledMatmulShape): Buffer {
    const { m, k, n } = s;
    for (const [name, v] of Object.entries({ m, k, n })) {
      if (!Number.isInteger(v) || v < 0)
        throw new RangeError(`matmul: ${name} must be a whole number >= 0, got ${v}`);
    }
    if (!this.fits(s)) throw new RangeError(`matmul: shape ${m}x${k}x${n} does not fit the tiled kernel`);
    if (a.size < m * k * 4)
      throw new RangeError(`matmul: a holds ${a.size / 4} floats, the shape needs ${m * k}`);
    if (b.size < k * n * 4)
      throw new RangeError(`matmul: b holds ${b.size / 4} floats, the shape needs ${k * n}`);
    const d = this.device;
    const out = d.createBuffer({ size: m * n * 4, usage: STORAGE | COPY_SRC });
    const prm = d.createBuffer({ size: 16, usage: UNIFORM | COPY_DST });
    d.queue.writeBuffer(prm, 0, Uint32Array.of(m, k, n, 0));
    const group = d.createBindGroup({
      layout: this.layout,
      entries: [
        { binding: 0, resource: { buffer: prm } },
        // bound to exactly the operand's floats: a vec4 view then has no partial last element
        { binding: 1, resource: { buffer: a, size: m * k * 4 } },
        { binding: 2, resource: { buffer: b, size: k * n * 4 } },
        { binding: 3, resource: { buffer: out } },
      ],
    });
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(this.pipeline(variantOf(s)));
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(Math.ceil(n / TILE), Math.ceil(m / TILE));
    pass.end();
    d.queue.submit([enc.finish()]);
    // pooled (device-batching.ts) or destroyed after the held dispatch that reads it has been submitted
    prm.destroy();
    this.dispatches++;
    return out;
  }
}
