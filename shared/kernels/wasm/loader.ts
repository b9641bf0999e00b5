/**
 * Finds and compiles the WebAssembly kernels built from asm/ (scripts/build-wasm.mjs, run by
 * `npm ci`). Two builds exist: plain SIMD and relaxed SIMD (fused multiply-add). The relaxed one is
 * the default: where the engine does not validate it out of the box (Node 20's V8 11.3 keeps it
 * behind --experimental-wasm-relaxed-simd), the loader turns that V8 flag on before compiling its
 * first module, so every entry point (CLI, services, tests, benches) gets it without a command-line
 * flag; where the engine still refuses it, the plain SIMD build is used. `RMT_WASM_VARIANT=simd|relaxed`
 * forces one.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

export type WasmVariant = 'simd' | 'relaxed';

export interface LoadedModule {
  module: WebAssembly.Module;
  variant: WasmVariant;
  path: string;
}

/** Exports of asm/matmul.ts (byte addresses, i32 flags). */
export interface MatmulExports {
  workBytes(): number;
  relaxed(): number;
  gemm(
    transA: number,
    transB: number,
    m: number,
    n: number,
    k: number,
    a: number,
    b: number,
    c: number,
    i0: number,
    i1: number,
    j0: number,
    j1: number,
    work: number,
    aWhole: number,
    bWhole: number,
  ): void;
  /** Floats of an operand packed whole: `extent` rows (panel 4) or columns (panel 8) over depth k. */
  packedFloats(extent: number, k: number, panel: number): number;
  packAWhole(transA: number, m: number, k: number, a: number, dst: number): void;
  packBWhole(transB: number, n: number, k: number, b: number, dst: number): void;
  gemmDot(
    m: number,
    n: number,
    k: number,
    a: number,
    b: number,
    c: number,
    i0: number,
    i1: number,
    j0: number,
    j1: number,
  ): void;
}

/** Exports of asm/ops.ts: runs units [lo, hi) of the op whose parameter block is at `args`. */
export interface OpsExports {
  chunk(args: number, lo: number, hi: number): void;
}

export type WasmModuleName = 'matmul' | 'ops' | 'peak';

export function wasmPath(variant: WasmVariant, name: WasmModuleName = 'matmul'): string {
  return fileURLToPath(new URL(`../../../asm/build/${name}-${variant}.wasm`, import.meta.url));
}

/** A tiny module using f32x4.relaxed_madd: validates only where relaxed SIMD is on. */
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b,
  0x03, 0x02, 0x01, 0x00, 0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x85, 0x02,
  0x0b,
]);

export function relaxedSimdSupported(): boolean {
  try {
    return WebAssembly.validate(RELAXED_PROBE);
  } catch {
    return false;
  }
}

/**
 * Makes relaxed SIMD available if the engine has it behind a flag: V8 reads its wasm feature flags
 * at each compilation, and worker threads share the process's flags, so setting the flag here,
 * before the first kernel module compiles, covers every thread. True when relaxed SIMD validates.
 */
export function enableRelaxedSimd(): boolean {
  if (relaxedSimdSupported()) return true;
  try {
    v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    return false;
  }
  return relaxedSimdSupported();
}

/** The build to load: the forced one, else relaxed where the engine accepts it, else plain SIMD. */
export function chooseVariant(forced: WasmVariant | null, relaxedAvailable: () => boolean): WasmVariant {
  if (forced) return forced;
  return relaxedAvailable() ? 'relaxed' : 'simd';
}

const cached = new Map<WasmModuleName, LoadedModule | string>();

/** The compiled matmul module, or a sentence saying why there is none. Compiled once per process. */
export function loadMatmulModule(): LoadedModule | string {
  return loadWasmModule('matmul');
}

/** The compiled ops module (asm/ops.ts), or a sentence saying why there is none. */
export function loadOpsModule(): LoadedModule | string {
  return loadWasmModule('ops');
}

/** The peak probe (asm/peak.ts, timed by bench/peak.ts), or a sentence saying why there is none. */
export function loadPeakModule(): LoadedModule | string {
  return loadWasmModule('peak');
}

function loadWasmModule(name: WasmModuleName): LoadedModule | string {
  let m = cached.get(name);
  if (m === undefined) {
    m = load(name);
    cached.set(name, m);
  }
  return m;
}

function load(name: WasmModuleName): LoadedModule | string {
  if (typeof WebAssembly === 'undefined') return 'WebAssembly is not available';
  if (typeof SharedArrayBuffer === 'undefined') return 'SharedArrayBuffer is not available';
  const forced = process.env.RMT_WASM_VARIANT;
  if (forced !== undefined && forced !== '' && forced !== 'simd' && forced !== 'relaxed') {
    return `RMT_WASM_VARIANT=${forced}: expected simd or relaxed`;
  }
  const variant = chooseVariant(forced === 'simd' || forced === 'relaxed' ? forced : null, enableRelaxedSimd);
  // A forced relaxed build still needs the engine flag on Node 20.
  if (variant === 'relaxed') enableRelaxedSimd();
  const path = wasmPath(variant, name);
  if (!existsSync(path)) return `${path} is missing: run \`npm run build:wasm\``;
  try {
    const module = new WebAssembly.Module(readFileSync(path));
    return { module, variant, path };
  } catch (e) {
    return `${path} does not compile here: ${(e as Error).message}`;
  }
}

/**
 * The process-wide instance of a WebAssembly kernel module: built on first use, null (with the
 * reason) where the module is missing or WebAssembly threads are unavailable, and rebuilt after
 * `shutdown()` stops its workers.
 */
export class SharedInstance<T extends { close(): Promise<void> }> {
  private instance: T | null | undefined;
  private reason = '';

  constructor(
    private readonly what: string,
    private readonly load: () => LoadedModule | string,
    private readonly make: (loaded: LoadedModule) => T,
  ) {}

  get(): T | null {
    if (this.instance !== undefined) return this.instance;
    const loaded = this.load();
    if (typeof loaded === 'string') {
      this.reason = loaded;
      this.instance = null;
      return null;
    }
    try {
      this.instance = this.make(loaded);
    } catch (e) {
      this.reason = `${this.what} unavailable: ${(e as Error).message}`;
      this.instance = null;
    }
    return this.instance;
  }

  /** Why `get()` returned null ('' when it did not). */
  unavailableReason(): string {
    this.get();
    return this.reason;
  }

  async shutdown(): Promise<void> {
    const inst = this.instance;
    this.instance = undefined;
    if (inst) await inst.close();
  }
}
