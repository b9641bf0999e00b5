import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';

/**
 * The `grpc-status-details-bin` trailer: a `google.rpc.Status` whose details carry a
 * `google.rpc.BadRequest` (the request field an INVALID_ARGUMENT is about) and a
 * `google.rpc.ErrorInfo` (a machine-readable reason). Go, Java and Python clients decode it with
 * their standard status libraries (`status.FromError(...).Details()`, `StatusProto.fromThrowable`,
 * `grpc_status.rpc_status.from_call`), so they need not know rmt's own `rmt-field` trailer.
 * The messages are few and flat, so they are encoded here from their field numbers in
 * google/rpc/status.proto and error_details.proto; test/rpc-status-details.test.ts decodes them with
 * Python's protobuf runtime against those definitions.
 */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
export const ERROR_DOMAIN = 'rmt.v1';
const TYPE_BAD_REQUEST = 'type.googleapis.com/google.rpc.BadRequest';
const TYPE_ERROR_INFO = 'type.googleapis.com/google.rpc.ErrorInfo';

export interface FieldViolation {
  field: string;
  description: string;
}

export interface StatusDetails {
  code: number;
  message: string;
  /** BadRequest.field_violations; absent when the error is not about a request field. */
  fieldViolations?: FieldViolation[];
  /** ErrorInfo: UPPER_SNAKE_CASE reason within ERROR_DOMAIN, and string metadata. */
  reason: string;
  metadata: Record<string, string>;
}

function any(typeUrl: string, value: Uint8Array): Uint8Array {
  return new BinaryWriter().tag(1, 2).string(typeUrl).tag(2, 2).bytes(value).finish();
}

export function encodeStatusDetails(d: StatusDetails): Uint8Array {
  const details: Uint8Array[] = [];
  if (d.fieldViolations?.length) {
    const w = new BinaryWriter();
    for (const v of d.fieldViolations) {
      w.tag(1, 2).fork().tag(1, 2).string(v.field).tag(2, 2).string(v.description).join();
    }
    details.push(any(TYPE_BAD_REQUEST, w.finish()));
  }
  const info = new BinaryWriter().tag(1, 2).string(d.reason).tag(2, 2).string(ERROR_DOMAIN);
  for (const [k, v] of Object.entries(d.metadata))
    info.tag(3, 2).fork().tag(1, 2).string(k).tag(2, 2).string(v).join();
  details.push(any(TYPE_ERROR_INFO, info.finish()));
  const w = new BinaryWriter().tag(1, 0).int32(d.code).tag(2, 2).string(d.message);
  for (const a of details) w.tag(3, 2).bytes(a);
  return w.finish();
}

/** The inverse, for rmt's own clients and tests. Unknown detail types are skipped. */
export function decodeStatusDetails(bytes: Uint8Array): StatusDetails {
  const out: StatusDetails = { code: 0, message: '', reason: '', metadata: {} };
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1) out.code = r.int32();
    else if (field === 2) out.message = r.string();
    else if (field === 3) {
      const a = new BinaryReader(r.bytes());
      let typeUrl = '';
      let value: Uint8Array = new Uint8Array(0);
      while (a.pos < a.len) {
        const [f, w] = a.tag();
        if (f === 1) typeUrl = a.string();
        else if (f === 2) value = a.bytes();
        else a.skip(w);
      }
      const m = new BinaryReader(value);
      if (typeUrl === TYPE_BAD_REQUEST) {
        out.fieldViolations = [];
        while (m.pos < m.len) {
          const [f, w] = m.tag();
          if (f !== 1) {
            m.skip(w);
            continue;
          }
          const v = new BinaryReader(m.bytes());
          const fv: FieldViolation = { field: '', description: '' };
          while (v.pos < v.len) {
            const [g, gw] = v.tag();
            if (g === 1) fv.field = v.string();
            else if (g === 2) fv.description = v.string();
            else v.skip(gw);
          }
          out.fieldViolations.push(fv);
        }
      } else if (typeUrl === TYPE_ERROR_INFO) {
        while (m.pos < m.len) {
          const [f, w] = m.tag();
          if (f === 1) out.reason = m.string();
          else if (f === 3) {
            const e = new BinaryReader(m.bytes());
            let k = '';
            let val = '';
            while (e.pos < e.len) {
              const [g, gw] = e.tag();
              if (g === 1) k = e.string();
              else if (g === 2) val = e.string();
              else e.skip(gw);
            }
            out.metadata[k] = val;
          } else m.skip(w);
        }
      }
    } else r.skip(wire);
  }
  return out;
}
