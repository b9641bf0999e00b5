/**
 * Finds and compiles the WebAssembly matmul built from asm/matmul.ts (scripts/build-wasm.mjs, run by
 * `npm ci`). Two builds exist: plain SIMD and relaxed SIMD (fused multiply-add). The relaxed one is
 * used where the engine validates it without flags (Node 22+; Node 20's V8 11.3 needs
 * --experimental-wasm-relaxed-simd). `RMT_WASM_VARIANT=simd|relaxed` forces one.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

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
  ): void;
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

export type WasmModuleName = 'matmul' | 'ops';

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

const cached = new Map<WasmModuleName, LoadedModule | string>();

/** The compiled matmul module, or a sentence saying why there is none. Compiled once per process. */
export function loadMatmulModule(): LoadedModule | string {
  return loadWasmModule('matmul');
}

/** The compiled ops module (asm/ops.ts), or a sentence saying why there is none. */
export function loadOpsModule(): LoadedModule | string {
  return loadWasmModule('ops');
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
  const variant: WasmVariant =
    forced === 'simd' || forced === 'relaxed' ? forced : relaxedSimdSupported() ? 'relaxed' : 'simd';
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
