#!/usr/bin/env node
/**
 * Builds the WebAssembly kernels (asm/*.ts, AssemblyScript) into asm/build/: one plain-SIMD build and
 * one relaxed-SIMD build (fused multiply-add) per kernel module; the loader
 * (shared/kernels/wasm/loader.ts) picks the relaxed one where the engine validates it. Modules:
 * matmul (asm/matmul.ts) and ops (asm/ops.ts: attention, cross-entropy, rmsnorm, rope, swiglu, adamw,
 * ...). Runs from `npm ci` (the `prepare` script); the compiler is the `assemblyscript` npm package
 * (JavaScript and wasm, nothing downloaded). Also peak (asm/peak.ts), the register-only SIMD loops
 * bench/peak.ts times for the wasm peak.
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const asmDir = join(root, 'asm');
mkdirSync(join(asmDir, 'build'), { recursive: true });

const MODULES = ['matmul', 'ops', 'peak'];

let failed = false;
for (const name of MODULES) {
  for (const target of ['simd', 'relaxed']) {
    const outFile = `build/${name}-${target}.wasm`;
    // A failed build must not leave the previous binary behind: the kernels would load it and every
    // test and benchmark would run the old code without a word.
    rmSync(join(asmDir, outFile), { force: true });
    const { error, stderr } = await asc.main(
      [
        `${name}.ts`,
        '--config',
        'asconfig.json',
        '--target',
        target,
        '--outFile',
        outFile,
        '--baseDir',
        asmDir,
      ],
      {},
    );
    if (error) {
      failed = true;
      console.error(`build-wasm: ${name} ${target}: ${error.message}\n${stderr.toString()}`);
      continue;
    }
    const out = join(asmDir, outFile);
    console.log(`build-wasm: ${name} ${target} -> asm/${outFile} (${statSync(out).size} bytes)`);
  }
}
process.exit(failed ? 1 : 0);
