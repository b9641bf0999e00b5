#!/usr/bin/env node
/**
 * Builds the WebAssembly kernels (asm/*.ts, AssemblyScript) into asm/build/: one plain-SIMD build and
 * one relaxed-SIMD build (fused multiply-add) per kernel; the loader (shared/kernels/wasm/loader.ts)
 * picks the relaxed one where the engine validates it. Runs from `npm ci` (the `prepare` script); the
 * compiler is the `assemblyscript` npm package (JavaScript and wasm, nothing downloaded).
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const asmDir = join(root, 'asm');
mkdirSync(join(asmDir, 'build'), { recursive: true });

let failed = false;
for (const target of ['simd', 'relaxed']) {
  const { error, stderr } = await asc.main(
    ['matmul.ts', '--config', 'asconfig.json', '--target', target, '--baseDir', asmDir],
    {},
  );
  if (error) {
    failed = true;
    console.error(`build-wasm: ${target}: ${error.message}\n${stderr.toString()}`);
    continue;
  }
  const out = join(asmDir, 'build', `matmul-${target}.wasm`);
  console.log(`build-wasm: ${target} -> asm/build/matmul-${target}.wasm (${statSync(out).size} bytes)`);
}
process.exit(failed ? 1 : 0);
