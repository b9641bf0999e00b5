// Typed clients of the four services: unary methods return promises, server-streaming methods async
// iterators; both take {deadlineMs, signal, metadata}. Requests are partial messages (unset fields
// take their proto3 defaults). Plus waitForReady and the standard health check. See docs/rpc.md.
import { readFileSync } from 'node:fs';
import {
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  Client,
  credentials,
  Metadata,
  type ServiceDefinition,
  type ServiceError,
  status as Status,
} from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { tokenClientInterceptor } from './auth.js';
import {
  CoordinatorServiceService,
  ListWorkersRequest,
  RunStatusRequest,
  StartRunRequest,
  StopRunRequest,
} from './gen/rmt/v1/coordinator.js';
import {
  CheckpointRequest,
  GetShardGradientRequest,
  GetWeightsRequest,
  InitRunRequest,
  LearnerServiceService,
  RenewLeaseRequest,
  TrainStepRequest,
} from './gen/rmt/v1/learner.js';
import {
  EvaluateRequest,
  GenerateRolloutsRequest,
  RolloutServiceService,
  WorkerStatusRequest,
} from './gen/rmt/v1/rollout.js';
import {
  DetokenizeRequest,
  ScoreDocumentsRequest,
  ScorerServiceService,
  TokenizeRequest,
} from './gen/rmt/v1/scorer.js';
import { CLIENT_CHANNEL_OPTIONS } from './options.js';

/** PEM file paths for a TLS channel: `ca` to verify the server (system roots when unset), `cert` and
 * `key` for mutual TLS, `serverName` when the certificate's name differs from the address's host. */
export interface ClientTls {
  ca?: string;
  cert?: string;
  key?: string;
  serverName?: string;
}

export interface ClientOptions {
  /** Use TLS (plaintext when unset). */
  tls?: ClientTls;
  /** Send `authorization: Bearer <token>` with every call (servers started with `authToken`). */
  token?: string;
  /** Channel options over CLIENT_CHANNEL_OPTIONS. */
  channelOptions?: ChannelOptions;
  /** Deadline for unary calls that set none (none by default; streams never get one implicitly). */
  defaultDeadlineMs?: number;
}

export interface RpcCallOptions {
  /** The call fails with DEADLINE_EXCEEDED (and the server's signal aborts) after this many ms. */
  deadlineMs?: number;
  /** Aborting cancels the call: the server's signal aborts, the call fails with CANCELLED. */
  signal?: AbortSignal;
  metadata?: Metadata | Record<string, string>;
}

type MethodDef = ServiceDefinition[string];
type RequestOf<M> = M extends { requestSerialize: (v: infer Req) => Buffer } ? Req : never;
type ResponseOf<M> = M extends { responseDeserialize: (b: Buffer) => infer Res } ? Res : never;
type PartialOf<F> = F extends { fromPartial(o: infer P): unknown } ? P : never;

/** The message builders of a service's requests (the generated `XxxRequest` objects), by method. */
export type RequestBuilders<D> = { [K in keyof D]: { fromPartial(o: never): RequestOf<D[K]> } };

type ClientMethod<M, F> = M extends { responseStream: true }
  ? (req: PartialOf<F>, opts?: RpcCallOptions) => AsyncGenerator<ResponseOf<M>, void, undefined>
  : (req: PartialOf<F>, opts?: RpcCallOptions) => Promise<ResponseOf<M>>;

/** Our methods by their camelCase names, plus the underlying grpc-js client. */
export type RpcClient<D, F extends RequestBuilders<D>> = {
  readonly [K in keyof D]: ClientMethod<D[K], F[K]>;
} & {
  /** The grpc-js client (channel state, waitForReady, close). */
  readonly grpc: Client;
  readonly address: string;
  close(): void;
};

function channelCredentials(tls: ClientTls | undefined): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  const read = (p: string | undefined) => (p ? readFileSync(p) : null);
  return credentials.createSsl(read(tls.ca), read(tls.key), read(tls.cert));
}

function channelOptions(opts: ClientOptions): ChannelOptions {
  const o: ChannelOptions = { ...CLIENT_CHANNEL_OPTIONS, ...opts.channelOptions };
  if (opts.tls?.serverName) o['grpc.ssl_target_name_override'] = opts.tls.serverName;
  return o;
}

/** A grpc-js client with our channel settings (for services without a factory here). */
export function makeGrpcClient(address: string, opts: ClientOptions = {}): Client {
  return new Client(address, channelCredentials(opts.tls), {
    ...channelOptions(opts),
    ...(opts.token ? { interceptors: [tokenClientInterceptor(opts.token)] } : {}),
  });
}

function metadataOf(m: RpcCallOptions['metadata']): Metadata {
  if (m instanceof Metadata) return m;
  const md = new Metadata();
  for (const [k, v] of Object.entries(m ?? {})) md.set(k, v);
  return md;
}

function callOptionsOf(deadlineMs: number | undefined): CallOptions {
  return deadlineMs === undefined || !Number.isFinite(deadlineMs)
    ? {}
    : { deadline: Date.now() + deadlineMs };
}

/** The error a call aborted before it started fails with (the same shape as grpc-js's). */
function cancelledBeforeStart(): ServiceError {
  return Object.assign(new Error(`${Status.CANCELLED} CANCELLED: Cancelled on client`), {
    code: Status.CANCELLED,
    details: 'Cancelled on client',
    metadata: new Metadata(),
  });
}

function unary<Req, Res>(
  client: Client,
  m: MethodDef,
  req: Req,
  o: RpcCallOptions,
  defaultDeadlineMs: number | undefined,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const { signal } = o;
    if (signal?.aborted) {
      reject(cancelledBeforeStart());
      return;
    }
    const onAbort = () => call.cancel();
    const call = client.makeUnaryRequest<Req, Res>(
      m.path,
      m.requestSerialize,
      m.responseDeserialize,
      req,
      metadataOf(o.metadata),
      callOptionsOf(o.deadlineMs ?? defaultDeadlineMs),
      (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(res as Res);
      },
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function* serverStream<Req, Res>(
  client: Client,
  m: MethodDef,
  req: Req,
  o: RpcCallOptions,
): AsyncGenerator<Res, void, undefined> {
  const { signal } = o;
  if (signal?.aborted) throw cancelledBeforeStart();
  const call = client.makeServerStreamRequest<Req, Res>(
    m.path,
    m.requestSerialize,
    m.responseDeserialize,
    req,
    metadataOf(o.metadata),
    callOptionsOf(o.deadlineMs),
  );
  const onAbort = () => call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const msg of call) yield msg as Res;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // The consumer stopped early (break, throw): tell the server. No-op once the call has ended.
    call.cancel();
  }
}

/**
 * A typed client of a service from its generated definition and request builders. The factories
 * below cover our four services; this is for tests and new services.
 */
export function makeClient<D extends ServiceDefinition, F extends RequestBuilders<D>>(
  definition: D,
  requests: F,
  address: string,
  opts: ClientOptions = {},
): RpcClient<D, F> {
  const client = makeGrpcClient(address, opts);
  const out: Record<string, unknown> = { grpc: client, address, close: () => client.close() };
  for (const [name, m] of Object.entries(definition)) {
    const build = (req: unknown) => (requests[name] as { fromPartial(o: unknown): unknown }).fromPartial(req);
    if (m.requestStream) {
      throw new Error(`makeClient: ${m.path} streams requests; not supported by these helpers`);
    }
    out[name] = m.responseStream
      ? (req: unknown, o: RpcCallOptions = {}) => serverStream(client, m, build(req), o)
      : (req: unknown, o: RpcCallOptions = {}) => unary(client, m, build(req), o, opts.defaultDeadlineMs);
  }
  return out as RpcClient<D, F>;
}

const scorerRequests = {
  tokenize: TokenizeRequest,
  detokenize: DetokenizeRequest,
  scoreDocuments: ScoreDocumentsRequest,
} satisfies RequestBuilders<typeof ScorerServiceService>;
const rolloutRequests = {
  generateRollouts: GenerateRolloutsRequest,
  evaluate: EvaluateRequest,
  status: WorkerStatusRequest,
} satisfies RequestBuilders<typeof RolloutServiceService>;
const learnerRequests = {
  initRun: InitRunRequest,
  trainStep: TrainStepRequest,
  getWeights: GetWeightsRequest,
  checkpoint: CheckpointRequest,
  renewLease: RenewLeaseRequest,
  getShardGradient: GetShardGradientRequest,
} satisfies RequestBuilders<typeof LearnerServiceService>;
const coordinatorRequests = {
  startRun: StartRunRequest,
  getRunStatus: RunStatusRequest,
  watchRun: RunStatusRequest,
  stopRun: StopRunRequest,
  listWorkers: ListWorkersRequest,
} satisfies RequestBuilders<typeof CoordinatorServiceService>;

export type ScorerClient = RpcClient<typeof ScorerServiceService, typeof scorerRequests>;
export type RolloutClient = RpcClient<typeof RolloutServiceService, typeof rolloutRequests>;
export type LearnerClient = RpcClient<typeof LearnerServiceService, typeof learnerRequests>;
export type CoordinatorClient = RpcClient<typeof CoordinatorServiceService, typeof coordinatorRequests>;

export function scorerClient(address: string, opts?: ClientOptions): ScorerClient {
  return makeClient(ScorerServiceService, scorerRequests, address, opts);
}
export function rolloutClient(address: string, opts?: ClientOptions): RolloutClient {
  return makeClient(RolloutServiceService, rolloutRequests, address, opts);
}
export function learnerClient(address: string, opts?: ClientOptions): LearnerClient {
  return makeClient(LearnerServiceService, learnerRequests, address, opts);
}
export function coordinatorClient(address: string, opts?: ClientOptions): CoordinatorClient {
  return makeClient(CoordinatorServiceService, coordinatorRequests, address, opts);
}

/** Resolves once the client's channel is connected; rejects after deadlineMs (the server is not up). */
export function waitForReady(client: Client | { grpc: Client }, deadlineMs: number): Promise<void> {
  const c = client instanceof Client ? client : client.grpc;
  return new Promise((resolve, reject) => {
    c.waitForReady(Date.now() + deadlineMs, (err) => (err ? reject(err) : resolve()));
  });
}

/** What the health service says of a name; SERVICE_UNKNOWN when the server does not know it. */
export type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

type HealthDefs = Record<'Check' | 'Watch', MethodDef>;

/** The standard health service's Check and Watch (grpc.health.v1.Health). */
export interface HealthClient {
  check(service?: string, opts?: RpcCallOptions): Promise<HealthStatus>;
  /** The status now and at every change, until the call is cancelled (signal, or break). */
  watch(service?: string, opts?: RpcCallOptions): AsyncGenerator<HealthStatus, void, undefined>;
  readonly grpc: Client;
  close(): void;
}

export function healthClient(address: string, opts: ClientOptions = {}): HealthClient {
  const client = makeGrpcClient(address, opts);
  const defs = healthService as unknown as HealthDefs;
  return {
    grpc: client,
    close: () => client.close(),
    async check(service = '', o = {}) {
      try {
        const res = await unary<{ service: string }, { status: HealthStatus }>(
          client,
          defs.Check,
          { service },
          o,
          opts.defaultDeadlineMs ?? 5_000,
        );
        return res.status;
      } catch (e) {
        if ((e as ServiceError).code === Status.NOT_FOUND) return 'SERVICE_UNKNOWN';
        throw e;
      }
    },
    async *watch(service = '', o = {}) {
      for await (const res of serverStream<{ service: string }, { status: HealthStatus }>(
        client,
        defs.Watch,
        { service },
        o,
      )) {
        yield res.status;
      }
    },
  };
}

/**
 * One health Check of `service` ("" = the server as a whole) at `address`, with a deadline
 * (default 5 s). Resolves to the status; rejects when the server cannot be reached.
 */
export async function healthCheck(
  address: string,
  service = '',
  opts: ClientOptions & { deadlineMs?: number } = {},
): Promise<HealthStatus> {
  const h = healthClient(address, opts);
  try {
    return await h.check(service, { deadlineMs: opts.deadlineMs ?? 5_000 });
  } finally {
    h.close();
  }
}
