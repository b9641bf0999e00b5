// Generated requests for the services, from the protos alone (the descriptor set gen-proto writes):
// every field of every request message gets values of its type, from ordinary ones to the hostile
// (empty and huge strings, paths outside any root, YAML that is not a config, NaN and infinities,
// negative and out-of-range integers, unknown enum numbers, long repeated fields, nesting), and a share
// of requests are bytes that are not a valid encoding at all. Deterministic for a seed.
import { readFileSync } from 'node:fs';
import {
  create,
  createFileRegistry,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  ScalarType,
  toBinary,
} from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import fc from 'fast-check';
import { DESCRIPTOR_SET_URL } from '../shared/rpc/server.js';

/** The four services by the name the fuzzer reports them under. */
export const FUZZ_SERVICES = {
  scorer: 'rmt.v1.ScorerService',
  rollout: 'rmt.v1.RolloutService',
  learner: 'rmt.v1.LearnerService',
  coordinator: 'rmt.v1.CoordinatorService',
} as const;
export type FuzzService = keyof typeof FUZZ_SERVICES;

/** One generated call: the method and the request's bytes on the wire. */
export interface FuzzRequest {
  method: DescMethod;
  /** `/package.Service/Method` */
  path: string;
  bytes: Uint8Array;
  /** Whether the bytes are a valid encoding of the request message. */
  wellFormed: boolean;
}

export function loadServices(): Record<FuzzService, DescService> {
  const set = fromBinary(FileDescriptorSetSchema, readFileSync(DESCRIPTOR_SET_URL));
  const registry = createFileRegistry(set);
  const out = {} as Record<FuzzService, DescService>;
  for (const [k, name] of Object.entries(FUZZ_SERVICES)) {
    const s = registry.getService(name);
    if (!s) throw new Error(`the descriptor set has no ${name} (npm run build:proto)`);
    out[k as FuzzService] = s;
  }
  return out;
}

/** Strings a client may send on purpose: paths outside any root, configs that are not, ids. */
const HOSTILE_STRINGS = [
  '',
  ' ',
  '\u0000',
  '..',
  '../../../../etc/passwd',
  '/etc/passwd',
  '/root',
  '/proc/self/environ',
  'runs/../../escape',
  'moby-dick',
  'synthetic-math',
  'rmt',
  'ntp',
  'ntr',
  'run-1',
  '{}',
  '[]',
  'null',
  '.nan',
  '-.inf',
  '1e309',
  'method: rmt\ntrain: {lr: .nan}',
  'train: {lr: -1e-4, steps: -1}',
  'budget: {B_0: .inf}',
  'grpo: {G: 1000000000}',
  '{"train": {"steps": 1e12}}',
  'a: &a [*a, *a, *a]',
  '!!js/function "function(){}"',
  '%%%',
  '\uD800',
  'é😀\u202e',
];

const stringArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 100_000 }).map((n) => 'x'.repeat(n)) },
);

const i32 = fc.oneof(
  fc.constantFrom(0, 1, -1, 2 ** 31 - 1, -(2 ** 31)),
  fc.integer({ min: -10, max: 100 }),
  fc.integer(),
);
const u32 = fc.oneof(fc.constantFrom(0, 1, 2 ** 32 - 1), fc.integer({ min: 0, max: 100 }), fc.nat());
const i64 = fc.oneof(
  fc.constantFrom(0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n)),
  fc.bigInt({ min: -10n, max: 100n }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
);
const u64 = fc.oneof(
  fc.constantFrom(0n, 1n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: 100n }),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);
const f64 = fc.oneof(
  fc.constantFrom(
    0,
    -0,
    1,
    -1,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    1e308,
    5e-324,
  ),
  fc.double({ min: -10, max: 10 }),
  fc.double(),
);
const f32 = fc.oneof(
  fc.constantFrom(0, 1, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 3.4e38),
  fc.float(),
);

function scalarArb(t: ScalarType): fc.Arbitrary<unknown> {
  switch (t) {
    case ScalarType.STRING:
      return stringArb;
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 64 });
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
      return f64;
    case ScalarType.FLOAT:
      return f32;
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return i32;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return u32;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return i64;
    default:
      return u64;
  }
}

const MAX_DEPTH = 3;

/** Lengths of repeated fields: mostly short, sometimes long for scalars (nested lists stay short). */
function listLength(depth: number, scalar: boolean): fc.Arbitrary<number> {
  if (depth >= MAX_DEPTH) return fc.constant(0);
  const long = scalar ? 256 : depth === 0 ? 24 : 4;
  return fc.oneof(
    { weight: 5, arbitrary: fc.integer({ min: 0, max: 4 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: long }) },
  );
}

function fieldArb(f: DescField, depth: number): fc.Arbitrary<unknown> {
  switch (f.fieldKind) {
    case 'scalar':
      return scalarArb(f.scalar);
    case 'enum': {
      const nums = f.enum.values.map((v) => v.number);
      return fc.oneof(fc.constantFrom(...nums), fc.integer({ min: -3, max: Math.max(...nums) + 5 }));
    }
    case 'message':
      return depth >= MAX_DEPTH ? fc.constant(undefined) : messageInitArb(f.message, depth + 1);
    case 'list': {
      const item =
        f.listKind === 'scalar'
          ? scalarArb(f.scalar)
          : f.listKind === 'enum'
            ? fc.integer({ min: -3, max: 10 })
            : messageInitArb(f.message, depth + 1);
      return listLength(depth, f.listKind !== 'message').chain((n) =>
        fc.array(item, { minLength: n, maxLength: n }),
      );
    }
    case 'map': {
      const value =
        f.mapKind === 'scalar'
          ? scalarArb(f.scalar)
          : f.mapKind === 'enum'
            ? fc.integer({ min: -3, max: 10 })
            : messageInitArb(f.message, depth + 1);
      return fc.dictionary(fc.string({ maxLength: 30 }), value, { maxKeys: depth >= MAX_DEPTH ? 0 : 8 });
    }
  }
}

/** A message's init object: each field set or left at its default. */
function messageInitArb(m: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const shape: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of m.fields) shape[f.localName] = fieldArb(f, depth);
  return fc.record(shape, { requiredKeys: [] });
}

/** Requests of one method: 9 in 10 well-formed, the rest random or truncated bytes. */
export function requestArb(method: DescMethod): fc.Arbitrary<FuzzRequest> {
  const path = `/${method.parent.typeName}/${method.name}`;
  const encoded = messageInitArb(method.input).map((init) =>
    toBinary(method.input, create(method.input, init)),
  );
  return fc.oneof(
    { weight: 9, arbitrary: encoded.map((bytes) => ({ method, path, bytes, wellFormed: true })) },
    {
      weight: 1,
      arbitrary: fc
        .oneof(
          fc.uint8Array({ minLength: 1, maxLength: 64 }),
          // Cut short (a field's tag without its value when there is nothing to cut).
          encoded.map((b) => (b.length > 1 ? b.subarray(0, b.length - 1) : Uint8Array.of(0x0a))),
        )
        .map((bytes) => ({ method, path, bytes, wellFormed: false })),
    },
  );
}

/**
 * `n` requests to a service, spread over its methods (those `skip` names excluded), from `seed`.
 */
export function generateRequests(
  service: DescService,
  n: number,
  seed: number,
  skip: readonly string[] = [],
): FuzzRequest[] {
  const methods = service.methods.filter((m) => !skip.includes(m.name));
  if (methods.length === 0) return [];
  const arb = fc.oneof(...methods.map((m) => requestArb(m)));
  return fc.sample(arb, { numRuns: n, seed });
}
