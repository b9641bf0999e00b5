#!/usr/bin/env node
// Generates the TypeScript of the gRPC contracts (proto/rmt/v1/*.proto) into shared/rpc/gen/ with
// ts-proto, and a descriptor set (shared/rpc/gen/rmt.binpb) that the servers answer reflection
// requests from. The output is not committed; `npm run build` and `npm install` (prepare) make it.
//
//   node scripts/gen-proto.mjs             regenerate
//   node scripts/gen-proto.mjs --if-stale  regenerate only when the protos, the options or the
//                                          tool versions changed since the last run (a hash of
//                                          them is kept in shared/rpc/gen/.stamp)
//
// protoc warnings (an unused import, ...) fail the generation: the contracts stay clean.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const protoRoot = join(root, 'proto');
const outDir = join(root, 'shared/rpc/gen');
const stampFile = join(outDir, '.stamp');
const protocJs = join(root, 'node_modules/protoc/protoc.cjs');
const protocInclude = join(root, 'node_modules/protoc/include');
const plugin = join(
  root,
  'node_modules/.bin',
  process.platform === 'win32' ? 'protoc-gen-ts_proto.cmd' : 'protoc-gen-ts_proto',
);
// The standard health service, added to the descriptor set so that reflection clients (grpcurl) can
// call grpc.health.v1.Health by name; it is served by grpc-health-check, not by generated code.
const healthProto = join(root, 'node_modules/grpc-health-check/proto/health/v1/health.proto');

// ts-proto options (https://github.com/stephenh/ts-proto#supported-options):
//   outputServices=grpc-js   service definitions + typed clients for @grpc/grpc-js
//   esModuleInterop, importSuffix=.js   imports that work under NodeNext ESM
//   forceLong=number         int64/uint64 as plain numbers (|x| > 2^53 throws when decoding)
//   oneof=unions-value       a oneof is one optional field {$case: 'name', value: T}
//   useOptionals=messages    message-typed fields are optional (`run?: RunRef`); scalars and
//                            repeated fields are always present (proto3 defaults)
//   useExactTypes=false      plain DeepPartial<T> for fromPartial/create
//   exportCommonSymbols=false  keep the per-file helpers (DeepPartial, MessageFns) private
const tsProtoOpts = [
  'outputServices=grpc-js',
  'esModuleInterop=true',
  'importSuffix=.js',
  'forceLong=number',
  'oneof=unions-value',
  'useOptionals=messages',
  'useExactTypes=false',
  'exportCommonSymbols=false',
];

const ifStale = process.argv.includes('--if-stale');

function listProtos(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listProtos(p));
    else if (e.name.endsWith('.proto')) out.push(p);
  }
  return out.sort();
}

function versionOf(pkg) {
  return JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8')).version;
}

const protos = listProtos(protoRoot);
const rel = protos.map((p) => relative(protoRoot, p).split('\\').join('/'));

function inputsHash() {
  const h = createHash('sha256');
  h.update(`ts-proto ${versionOf('ts-proto')}\nprotoc ${versionOf('protoc')}\n${tsProtoOpts.join(',')}\n`);
  h.update(readFileSync(fileURLToPath(import.meta.url)));
  for (const [i, p] of protos.entries()) h.update(`\n${rel[i]}\n`).update(readFileSync(p));
  h.update(readFileSync(healthProto));
  return h.digest('hex');
}

const hash = inputsHash();
if (ifStale && existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === hash) process.exit(0);

function protoc(args) {
  const r = spawnSync(process.execPath, [protocJs, ...args], { cwd: root, encoding: 'utf8' });
  if (r.error) throw r.error;
  const stderr = (r.stderr ?? '').trim();
  if (r.status !== 0 || /warning/i.test(stderr)) {
    console.error(stderr || `protoc exited with ${r.status}`);
    console.error('gen-proto: protoc failed or warned; fix the protos (warnings are errors here)');
    process.exit(1);
  }
}

// Generate into a scratch folder on the same disk (outside the tsc and git trees) and swap it in,
// so a concurrent tsc never sees a half-written folder.
const scratch = join(root, 'node_modules/.cache/rmt-gen-proto');
mkdirSync(scratch, { recursive: true });
mkdirSync(dirname(outDir), { recursive: true });
const tmp = mkdtempSync(join(scratch, 'gen-'));
chmodSync(tmp, 0o755);
const healthRoot = mkdtempSync(join(tmpdir(), 'rmt-health-'));
try {
  // Under its canonical name, grpc/health/v1/health.proto.
  cpSync(healthProto, join(healthRoot, 'grpc/health/v1/health.proto'));
  protoc([
    `--plugin=protoc-gen-ts_proto=${plugin}`,
    `-I${protoRoot}`,
    `-I${protocInclude}`,
    `--ts_proto_out=${tmp}`,
    `--ts_proto_opt=${tsProtoOpts.join(',')}`,
    ...rel,
  ]);
  protoc([
    `-I${protoRoot}`,
    `-I${healthRoot}`,
    `-I${protocInclude}`,
    '--include_imports',
    '--include_source_info',
    `--descriptor_set_out=${join(tmp, 'rmt.binpb')}`,
    ...rel,
    'grpc/health/v1/health.proto',
  ]);
  writeFileSync(join(tmp, '.stamp'), `${hash}\n`);
  const old = join(scratch, `old-${process.pid}`);
  try {
    if (existsSync(outDir)) renameSync(outDir, old);
    renameSync(tmp, outDir);
  } catch (e) {
    // Another build swapped in its output meanwhile: fine when it made the same thing.
    const theirs = existsSync(stampFile) ? readFileSync(stampFile, 'utf8').trim() : '';
    if (theirs !== hash) throw e;
  }
  rmSync(old, { recursive: true, force: true });
} finally {
  rmSync(tmp, { recursive: true, force: true });
  rmSync(healthRoot, { recursive: true, force: true });
}
console.log(`gen-proto: ${rel.length} protos -> ${relative(root, outDir)}/`);
