// A gRPC server for one or more of our services, with what every rmt server also serves: the
// standard health service (grpc.health.v1.Health) and server reflection (so that grpcurl and
// clients in other languages need nothing of ours), large messages, keepalive, optional TLS, and a
// shutdown that first reports NOT_SERVING, then drains, then forces. See docs/rpc.md.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import {
  status as grpcStatus,
  type handleBidiStreamingCall,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  Server,
  ServerCredentials,
  ServerInterceptingCall,
  type ServerInterceptor,
  type ServerOptions,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { tokenServerInterceptor } from './auth.js';
import { SERVER_CHANNEL_OPTIONS } from './options.js';

/** The full name of the standard health service. */
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

/** The descriptor set that gen-proto writes (our protos, their imports and the health proto). */
export const DESCRIPTOR_SET_URL = new URL('./gen/rmt.binpb', import.meta.url);

type Handler<M> = M extends {
  requestStream: infer RS;
  responseStream: infer SS;
  requestDeserialize: (b: Buffer) => infer Req;
  responseSerialize: (v: infer Res) => Buffer;
}
  ? RS extends false
    ? SS extends false
      ? handleUnaryCall<Req, Res>
      : handleServerStreamingCall<Req, Res>
    : SS extends false
      ? handleClientStreamingCall<Req, Res>
      : handleBidiStreamingCall<Req, Res>
  : never;

/** The handlers a service definition (e.g. the generated `ScorerServiceService`) needs, by method. */
export type ImplementationOf<D> = { [K in keyof D]: Handler<D[K]> };

/** A service to serve: a generated definition and its handlers. */
export interface ServiceBinding {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

/** A ServiceBinding whose handlers are type-checked against the definition. */
export function bindService<D extends ServiceDefinition>(
  definition: D,
  implementation: ImplementationOf<D>,
): ServiceBinding {
  return guardDecoding({
    definition,
    implementation: implementation as unknown as UntypedServiceImplementation,
  });
}

/**
 * Status details made well-formed UTF-16 before grpc-js percent-encodes them: a lone surrogate from a
 * client's string echoed in an error makes encodeURI throw inside grpc-js, outside any handler, and
 * the process exits. Replaced by U+FFFD instead.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
/**
 * Longest status details sent, in characters: details travel in an HTTP/2 header, and one over the
 * client's header list limit (16 KiB in Node) makes the client drop the whole connection, with every
 * call on it (an error that quotes a 100 kB value did).
 */
export const MAX_STATUS_DETAILS = 1024;
/** Details as sent: well-formed UTF-16, at most MAX_STATUS_DETAILS characters (both ends kept). */
export const wellFormed = (s: string): string => {
  const w = s.replace(LONE_SURROGATE, '\uFFFD');
  if (w.length <= MAX_STATUS_DETAILS) return w;
  const half = MAX_STATUS_DETAILS / 2 - 16;
  return `${w.slice(0, half)} … (${w.length - 2 * half} characters left out) … ${w.slice(-half)}`.replace(
    LONE_SURROGATE,
    '\uFFFD',
  );
};
const wellFormedStatus: ServerInterceptor = (_method, call) =>
  new ServerInterceptingCall(call, {
    sendStatus: (status, next) =>
      next(typeof status.details === 'string' ? { ...status, details: wellFormed(status.details) } : status),
  });

/** What a request that cannot be decoded becomes, for its handler's guard to refuse. */
class UndecodableRequest {
  constructor(readonly reason: string) {}
}

/**
 * Requests whose bytes do not decode (a broken encoding, an int64 beyond 2^53, which the generated
 * code refuses) end with INVALID_ARGUMENT, not the INTERNAL grpc-js gives a decoder's exception: the
 * client sent them, the server did not fail. Their handlers never run.
 */
function guardDecoding(b: ServiceBinding): ServiceBinding {
  const definition: Record<string, ServiceDefinition[string]> = {};
  const implementation: UntypedServiceImplementation = {};
  for (const [name, m] of Object.entries(b.definition)) {
    const decode = m.requestDeserialize;
    definition[name] = {
      ...m,
      requestDeserialize: (buf: Buffer) => {
        try {
          return decode(buf);
        } catch (e) {
          return new UndecodableRequest(String((e as Error).message ?? e).slice(0, 200));
        }
      },
    };
    const handler = b.implementation[name] as (call: { request?: unknown }, cb?: unknown) => void;
    if (!handler || m.requestStream) {
      implementation[name] = b.implementation[name]!;
      continue;
    }
    const status = (u: UndecodableRequest) => ({
      code: grpcStatus.INVALID_ARGUMENT,
      details: `the request is not a valid ${m.path.split('/')[2]} message: ${u.reason}`,
    });
    implementation[name] = m.responseStream
      ? (call: ServerWritableStream<unknown, unknown>) => {
          if (call.request instanceof UndecodableRequest) call.emit('error', status(call.request));
          else handler(call);
        }
      : (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
          if (call.request instanceof UndecodableRequest) cb(status(call.request));
          else handler(call, cb);
        };
  }
  return { definition: definition as ServiceDefinition, implementation };
}

/** The full name of the service a definition describes, e.g. "rmt.v1.ScorerService". */
export function serviceNameOf(definition: ServiceDefinition): string {
  const first = Object.values(definition)[0];
  if (!first) throw new Error('serviceNameOf: a service definition without methods');
  return first.path.split('/')[1]!;
}

/** PEM file paths. With `ca`, clients must present a certificate signed by it (mutual TLS). */
export interface TlsFiles {
  cert: string;
  key: string;
  ca?: string;
}

export interface StartServerOptions {
  /** Interface to listen on; loopback ("127.0.0.1") by default, "0.0.0.0" for all IPv4, "::" for all. */
  host?: string;
  /** Port; 0 picks a free one (see the returned `port`). */
  port: number;
  services: ServiceBinding[];
  /** Names reported by the health service besides the overall ""; the services' full names by default. */
  serviceNames?: string[];
  /** Serve TLS instead of plaintext; with `tls.ca`, mutual TLS. */
  tls?: TlsFiles;
  /** Refuse calls without `authorization: Bearer <authToken>` (UNAUTHENTICATED); health stays open. */
  authToken?: string;
  /** Serve reflection (default true). */
  reflection?: boolean;
  /** The descriptor set reflection answers from; DESCRIPTOR_SET_URL by default. */
  descriptorSet?: string | URL | Uint8Array;
  /** Channel options over SERVER_CHANNEL_OPTIONS. */
  options?: ServerOptions;
  log?: (line: string) => void;
}

export interface RunningServer {
  /** The bound port (the chosen one when port was 0). */
  port: number;
  /** host:port as bound, for clients on this machine ("127.0.0.1:port" when host is a wildcard). */
  address: string;
  server: Server;
  health: HealthImplementation;
  /** The names the health service reports (besides ""). */
  serviceNames: string[];
  /** Sets the health status of one name ("" is the overall status). */
  setServing(name: string, serving: boolean): void;
  /**
   * Reports NOT_SERVING for every name, waits drainMs (default 0: time for load balancers and
   * Kubernetes probes to notice), stops accepting calls and lets the calls in flight finish for up to
   * graceMs (default 10 s), then cancels what is left. Calling it again returns the same promise.
   */
  shutdown(graceMs?: number, opts?: { drainMs?: number }): Promise<void>;
}

/** Splits a FileDescriptorSet (field 1: repeated FileDescriptorProto) into its encoded files. */
export function descriptorSetFiles(set: Uint8Array): Buffer[] {
  const reader = new BinaryReader(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wire] = reader.tag();
    if (field === 1 && wire === WireType.LengthDelimited) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wire);
  }
  return files;
}

function loadDescriptorSet(src: string | URL | Uint8Array | undefined): Uint8Array {
  const from = src ?? DESCRIPTOR_SET_URL;
  if (from instanceof Uint8Array) return from;
  try {
    return readFileSync(from);
  } catch (e) {
    throw new Error(
      `reflection: cannot read the descriptor set ${String(from)} (run \`npm run build:proto\`)`,
      {
        cause: e,
      },
    );
  }
}

function reflectionService(set: Uint8Array, services: string[]): ReflectionService {
  // ReflectionService reads only `fileDescriptorProtos` of the package definition's entries.
  const pkg = {
    'rmt.descriptors': {
      format: 'Protocol Buffer 3 DescriptorProto',
      type: {},
      fileDescriptorProtos: descriptorSetFiles(set),
    },
  } as unknown as ConstructorParameters<typeof ReflectionService>[0];
  return new ReflectionService(pkg, { services });
}

function credentials(tls: TlsFiles | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  const ca = tls.ca ? readFileSync(tls.ca) : null;
  return ServerCredentials.createSsl(
    ca,
    [{ cert_chain: readFileSync(tls.cert), private_key: readFileSync(tls.key) }],
    ca !== null,
  );
}

function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Starts a server with the given services plus health and reflection; resolves once it listens. */
export async function startServer(opts: StartServerOptions): Promise<RunningServer> {
  const log = opts.log ?? (() => {});
  const host = opts.host ?? '127.0.0.1';
  const interceptors = [
    wellFormedStatus,
    ...(opts.authToken ? [tokenServerInterceptor(opts.authToken)] : []),
  ];
  const server = new Server({
    ...SERVER_CHANNEL_OPTIONS,
    ...opts.options,
    interceptors: [...interceptors, ...(opts.options?.interceptors ?? [])],
  });
  const names = opts.services.map((s) => serviceNameOf(s.definition));
  for (const s of opts.services) server.addService(s.definition, s.implementation);

  const serviceNames = opts.serviceNames ?? names;
  const health = new HealthImplementation();
  for (const n of ['', ...serviceNames]) health.setStatus(n, 'SERVING');
  health.addToServer(server);

  if (opts.reflection !== false) {
    reflectionService(loadDescriptorSet(opts.descriptorSet), [...names, HEALTH_SERVICE]).addToServer(server);
  }

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(hostPort(host, opts.port), credentials(opts.tls), (err, bound) =>
      err ? reject(err) : resolve(bound),
    );
  });
  const wildcard = host === '0.0.0.0' || host === '::' || host === '[::]' || host === '';
  const address = hostPort(wildcard ? '127.0.0.1' : host, port);
  const security = [opts.tls ? (opts.tls.ca ? 'mutual TLS' : 'TLS') : 'plaintext'];
  if (opts.authToken) security.push('bearer token');
  log(`grpc: serving ${names.join(', ')} on ${hostPort(host, port)} (${security.join(', ')})`);

  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs = 10_000, so: { drainMs?: number } = {}): Promise<void> => {
    stopping ??= (async () => {
      for (const n of ['', ...serviceNames]) health.setStatus(n, 'NOT_SERVING');
      if (so.drainMs && so.drainMs > 0) await sleep(so.drainMs);
      log(`grpc: shutting down (grace ${graceMs} ms)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log('grpc: grace period over, cancelling the calls left');
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    })();
    return stopping;
  };

  return {
    port,
    address,
    server,
    health,
    serviceNames,
    setServing: (name, serving) => health.setStatus(name, serving ? 'SERVING' : 'NOT_SERVING'),
    shutdown,
  };
}
