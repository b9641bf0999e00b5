/**
 * The optimizer's two multi-tensor passes on webgpu, in hand-written WGSL on the device gpu.js uses.
 *
 * Why not gpu.js: a gpu.js kernel has one output and costs a full kernel call (uniform write, bind
 * group, submit) per tensor, and each sum of squares is its own read-back. Measured on an H100/H200,
 * clipping plus AdamW took over half of a learner step (46 parameters: 46 read-backs and 138 calls).
 * Here all parameters go in one compute pass each:
 * - `sumSquares`: per tensor, each thread sums the squares of a 256-element chunk in order (the
 *   arithmetic of gpu.js's `sumSquaresPartial`); the partials of every tensor land in one buffer, read
 *   back once, and are added on the host in float64 in order, as `WebgpuBackend.sumSquares` does.
 * - `adamw`: p, m and v updated in place in one dispatch per parameter (the arithmetic of gpu.js's
 *   adamwM / adamwV / adamwP), so no new buffers are made.
 * Both stay within compatibility mode's four storage buffers per stage (the CI's software adapter).
 */

import { adamwHyperVector } from '../adamw-hyper.js';
import type { AdamWHyper } from '../backend.js';
import { COMPUTE, COPY_DST, COPY_SRC, MAP_READ, STORAGE, UNIFORM } from './constants.js';
import type { DawnBuffer, DawnDevice } from './dawn-types.js';

/** Elements per partial sum: the chunk of gpu.js's sumSquares. */
export const SUMSQ_CHUNK = 256;
const WG = 64;
/** Bytes per uniform slot: the largest minUniformBufferOffsetAlignment WebGPU allows. */
const SLOT = 256;

export interface GpuTensor {
  buffer: object;
  n: number;
}

type Buffer = DawnBuffer;
type Device = DawnDevice;

const INDEX = /* wgsl */ `
fn flatIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * ${WG}u;
}`;

const SUMSQ_WGSL = /* wgsl */ `
struct P { n: u32, offset: u32, chunk: u32, pad: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
${INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  let parts = (prm.n + prm.chunk - 1u) / prm.chunk;
  if (i >= parts) { return; }
  var acc: f32 = 0.0;
  let start = i * prm.chunk;
  let end = min(start + prm.chunk, prm.n);
  for (var j = start; j < end; j = j + 1u) {
    let v = x[j];
    acc = acc + v * v;
  }
  partial[prm.offset + i] = acc;
}`;

// hp = [beta1, 1-beta1, beta2, 1-beta2, gradScale, 1-lr*wd, lr, bc1, bc2, eps] in a, b, c.xy
const ADAMW_WGSL = /* wgsl */ `
struct H { a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, n: u32 }
@group(0) @binding(0) var<uniform> h: H;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
${INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= h.n) { return; }
  let grad = g[i] * h.b.x;
  let m1 = h.a.x * m[i] + h.a.y * grad;
  let v1 = h.a.z * v[i] + h.a.w * grad * grad;
  m[i] = m1;
  v[i] = v1;
  p[i] = p[i] * h.b.y - (h.b.z * (m1 / h.b.w)) / (sqrt(v1 / h.c.x) + h.c.y);
}`;

export class WgslOptimizer {
  private readonly sumsq: { pipeline: object; layout: object };
  private readonly adam: { pipeline: object; layout: object };

  constructor(private readonly device: Device) {
    this.sumsq = this.pipeline(SUMSQ_WGSL, ['uniform', 'read-only-storage', 'storage']);
    this.adam = this.pipeline(ADAMW_WGSL, ['uniform', 'storage', 'read-only-storage', 'storage', 'storage']);
  }

  private pipeline(code: string, kinds: string[]): { pipeline: object; layout: object } {
    const d = this.device;
    const layout = d.createBindGroupLayout({
      entries: kinds.map((type, binding) => ({
        binding,
        visibility: COMPUTE,
        buffer: type === 'uniform' ? { type, hasDynamicOffset: true } : { type },
      })),
    });
    const pipeline = d.createComputePipeline({
      layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module: d.createShaderModule({ code }), entryPoint: 'main' },
    });
    return { pipeline, layout };
  }

  /** Workgroup counts covering `threads` invocations, folded into y past the per-dimension limit. */
  private groups(threads: number): [number, number] {
    const total = Math.max(1, Math.ceil(threads / WG));
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (total <= max) return [total, 1];
    const y = Math.ceil(total / max);
    return [Math.ceil(total / y), y];
  }

  private uniforms(count: number): Buffer {
    return this.device.createBuffer({ size: Math.max(1, count) * SLOT, usage: UNIFORM | COPY_DST });
  }

  /** Σ x² of every tensor: one pass, one read-back. */
  async sumSquares(xs: GpuTensor[]): Promise<number[]> {
    if (xs.length === 0) return [];
    const d = this.device;
    const parts = xs.map((x) => Math.ceil(x.n / SUMSQ_CHUNK));
    const offsets: number[] = [];
    let total = 0;
    for (const p of parts) {
      offsets.push(total);
      total += p;
    }
    const prm = new Uint32Array((xs.length * SLOT) / 4);
    for (let i = 0; i < xs.length; i++) prm.set([xs[i].n, offsets[i], SUMSQ_CHUNK, 0], (i * SLOT) / 4);
    const uniforms = this.uniforms(xs.length);
    d.queue.writeBuffer(uniforms, 0, prm);
    const partial = d.createBuffer({ size: Math.max(4, total * 4), usage: STORAGE | COPY_SRC });
    const staging = d.createBuffer({ size: Math.max(4, total * 4), usage: MAP_READ | COPY_DST });
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(this.sumsq.pipeline);
    xs.forEach((x, i) => {
      if (parts[i] === 0) return;
      const group = d.createBindGroup({
        layout: this.sumsq.layout,
        entries: [
          { binding: 0, resource: { buffer: uniforms, size: 16 } },
          { binding: 1, resource: { buffer: x.buffer } },
          { binding: 2, resource: { buffer: partial } },
        ],
      });
      pass.setBindGroup(0, group, [i * SLOT]);
      pass.dispatchWorkgroups(...this.groups(parts[i]));
    });
    pass.end();
    enc.copyBufferToBuffer(partial, 0, staging, 0, total * 4);
    d.queue.submit([enc.finish()]);
    uniforms.destroy();
    partial.destroy();
    try {
      await staging.mapAsync(MAP_READ);
      const host = new Float32Array(staging.getMappedRange().slice(0, total * 4));
      staging.unmap();
      return xs.map((_, i) => {
        let s = 0;
        for (let q = 0; q < parts[i]; q++) s += host[offsets[i] + q];
        return s;
      });
    } finally {
      staging.destroy();
    }
  }

  /** AdamW on every (p, g, m, v) in place: p, m and v hold the new values afterwards. */
  adamw(items: { p: GpuTensor; g: GpuTensor; m: GpuTensor; v: GpuTensor; h: AdamWHyper }[]): void {
    if (items.length === 0) return;
    const d = this.device;
    const slots = new ArrayBuffer(items.length * SLOT);
    items.forEach((it, i) => {
      for (const t of [it.g, it.m, it.v]) {
        if (t.n !== it.p.n)
          throw new RangeError(`adamw: lengths ${it.p.n}, ${it.g.n}, ${it.m.n}, ${it.v.n} differ`);
      }
      new Float32Array(slots, i * SLOT, 12).set(adamwHyperVector(it.h));
      new Uint32Array(slots, i * SLOT + 48, 1)[0] = it.p.n;
    });
    const uniforms = this.uniforms(items.length);
    d.queue.writeBuffer(uniforms, 0, slots);
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(this.adam.pipeline);
    items.forEach((it, i) => {
      if (it.p.n === 0) return;
      const group = d.createBindGroup({
        layout: this.adam.layout,
        entries: [
          { binding: 0, resource: { buffer: uniforms, size: 64 } },
          { binding: 1, resource: { buffer: it.p.buffer } },
          { binding: 2, resource: { buffer: it.g.buffer } },
          { binding: 3, resource: { buffer: it.m.buffer } },
          { binding: 4, resource: { buffer: it.v.buffer } },
        ],
      });
      pass.setBindGroup(0, group, [i * SLOT]);
      pass.dispatchWorkgroups(...this.groups(it.p.n));
    });
    pass.end();
    d.queue.submit([enc.finish()]);
    uniforms.destroy();
  }
}
