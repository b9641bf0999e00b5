import { hostname } from 'node:os';
import { createBus, type EventBus } from '../shared/bus/index.js';
import { SERVICE_LIMITS } from '../shared/config/service-limits.js';
import { createLogger, type Logger } from '../shared/obs/log.js';
import { type MetricsServer, ServiceMetrics } from '../shared/obs/metrics.js';
import { readTokenFile } from '../shared/rpc/auth.js';
import type { ClientOptions } from '../shared/rpc/client.js';
import type { RunningServer, ServiceBinding } from '../shared/rpc/server.js';
import { startServer } from '../shared/rpc/server.js';
import { DataRoot } from '../shared/run/data-root.js';
import { onShutdown } from '../shared/util/shutdown.js';

/** Flags every service process takes (each also settable by its RMT_* environment variable). */
export const commonFlags = (port: number, metricsPort: number, maxReceiveMib: number) =>
  ({
    host: {
      type: 'string',
      default: '127.0.0.1',
      doc: 'interface the gRPC and metrics servers listen on (0.0.0.0: every interface, for containers)',
    },
    port: { type: 'int', default: port, min: 0, max: 65535, doc: 'gRPC port (0: any free port)' },
    advertise: {
      type: 'string',
      doc: 'host:port other services reach this one at (default: this host name and the bound port)',
    },
    bus: {
      type: 'string',
      default: 'nats://127.0.0.1:4222',
      doc: "event bus: nats://host:port (JetStream) or 'inproc' (only for a single process)",
    },
    'metrics-port': {
      type: 'int',
      default: metricsPort,
      min: 0,
      max: 65535,
      doc: 'Prometheus /metrics, /healthz, /readyz over HTTP (0: any free port)',
    },
    'tls-cert': { type: 'string', doc: 'PEM certificate: serve TLS instead of plaintext' },
    'tls-key': { type: 'string', doc: 'PEM private key of --tls-cert' },
    'tls-ca': { type: 'string', doc: 'PEM CA: require client certificates signed by it (mutual TLS)' },
    'peer-tls-ca': {
      type: 'string',
      doc: 'PEM CA to verify the services this one calls: use TLS for outgoing gRPC (plaintext when unset)',
    },
    'peer-tls-cert': { type: 'string', doc: 'PEM client certificate for outgoing gRPC (mutual TLS)' },
    'peer-tls-key': { type: 'string', doc: 'PEM private key of --peer-tls-cert' },
    'peer-tls-server-name': {
      type: 'string',
      doc: 'name to verify in the certificates of the services called (when it is not their address, e.g. pod IPs)',
    },
    'auth-token-file': {
      type: 'string',
      doc: 'file holding a bearer token: calls to this service must present it, and calls to the others send it (where mutual TLS is not wanted)',
    },
    'bus-creds': { type: 'string', doc: 'NATS credentials file (user JWT and nkey seed)' },
    'bus-nkey-seed': { type: 'string', doc: 'file holding the nkey user seed to connect to NATS with' },
    'bus-tls-ca': { type: 'string', doc: 'PEM CA to verify the NATS server (TLS to the bus)' },
    'bus-tls-cert': { type: 'string', doc: 'PEM client certificate for the NATS server' },
    'bus-tls-key': { type: 'string', doc: 'PEM private key of --bus-tls-cert' },
    'data-root': {
      type: 'string',
      doc: 'the only folder run paths (out_dir, init_from, proxy, tokenizer) may name, relative ones from it (default: the working folder at start)',
    },
    'max-receive-mib': {
      type: 'int',
      default: maxReceiveMib,
      min: 1,
      max: 1024,
      doc: 'largest gRPC message accepted, in MiB (a bigger one is refused with RESOURCE_EXHAUSTED)',
    },
    'max-config-bytes': {
      type: 'int',
      default: SERVICE_LIMITS.max_config_bytes,
      min: 1024,
      doc: 'largest run config accepted (StartRun config, RunRef.config_json), checked before parsing',
    },
    'bus-replicas': {
      type: 'int',
      default: 1,
      min: 1,
      max: 5,
      doc: 'JetStream replicas of the RMT stream (3 on a 3-server NATS cluster); same on every service',
    },
  }) as const;

export interface ServiceProcess {
  log: Logger;
  bus: EventBus;
  metrics: ServiceMetrics;
  server: RunningServer;
  metricsServer: MetricsServer;
  /** host:port others reach this service at. */
  address: string;
}

export interface CommonSettings {
  host: string;
  port: number;
  advertise?: string;
  bus: string;
  metricsPort: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  peerTlsCa?: string;
  peerTlsCert?: string;
  peerTlsKey?: string;
  peerTlsServerName?: string;
  authTokenFile?: string;
  busCreds?: string;
  busNkeySeed?: string;
  busTlsCa?: string;
  busTlsCert?: string;
  busTlsKey?: string;
  busReplicas: number;
  dataRoot?: string;
  maxReceiveMib: number;
  maxConfigBytes: number;
}

/** The service's data root: --data-root, else the working folder at start (resolved once, here). */
export function dataRootOf(s: CommonSettings): DataRoot {
  const dir = s.dataRoot ?? process.cwd();
  try {
    return new DataRoot(dir);
  } catch {
    throw new Error(`--data-root (env RMT_DATA_ROOT): ${dir} is not a folder this service can open`);
  }
}

/**
 * Options of the gRPC clients a service uses to call the others: TLS when --peer-tls-ca is set
 * (mutual with --peer-tls-cert), the bearer token of --auth-token-file when set.
 */
export function peerClientOptions(s: CommonSettings): ClientOptions {
  if ((s.peerTlsCert === undefined) !== (s.peerTlsKey === undefined)) {
    throw new Error('--peer-tls-cert and --peer-tls-key go together (RMT_PEER_TLS_CERT, RMT_PEER_TLS_KEY)');
  }
  if (s.peerTlsCert && !s.peerTlsCa) {
    throw new Error('--peer-tls-cert needs --peer-tls-ca (RMT_PEER_TLS_CA) to verify the services called');
  }
  return {
    ...(s.peerTlsCa
      ? { tls: { ca: s.peerTlsCa, cert: s.peerTlsCert, key: s.peerTlsKey, serverName: s.peerTlsServerName } }
      : {}),
    ...(s.authTokenFile ? { token: readTokenFile(s.authTokenFile) } : {}),
  };
}

/**
 * What every service process does around its gRPC service: a JSON logger, the bus connection, the
 * gRPC server (with health and reflection), Prometheus metrics over HTTP, and a clean stop on
 * SIGTERM/SIGINT: stop taking calls, let the ones in flight finish (`beforeStop` runs first, to
 * hand back or finish work), close the bus.
 */
export async function startServiceProcess(
  name: string,
  s: CommonSettings,
  build: (p: {
    log: Logger;
    bus: EventBus;
    metrics: ServiceMetrics;
    address: () => string;
  }) => Promise<ServiceBinding[]>,
  /** Runs first on a stop; `reason` is the signal (SIGTERM from Kubernetes, SIGINT from a terminal). */
  beforeStop?: (reason: string) => Promise<void>,
): Promise<ServiceProcess> {
  const log = createLogger({ service: name });
  if ((s.tlsCert === undefined) !== (s.tlsKey === undefined)) {
    throw new Error('--tls-cert and --tls-key go together (RMT_TLS_CERT, RMT_TLS_KEY)');
  }
  if (s.tlsCa && !s.tlsCert) {
    throw new Error('--tls-ca (client certificates) needs --tls-cert and --tls-key: mutual TLS is TLS');
  }
  const busTls =
    s.busTlsCa || s.busTlsCert
      ? { caFile: s.busTlsCa, certFile: s.busTlsCert, keyFile: s.busTlsKey }
      : undefined;
  const bus = await createBus(s.bus, {
    name,
    logger: log,
    credsFile: s.busCreds,
    nkeySeedFile: s.busNkeySeed,
    tls: busTls,
    stream: { replicas: s.busReplicas },
  });
  const metrics = new ServiceMetrics({ service: name });
  // Read at each scrape: an outage shows on /metrics as soon as the client notices it.
  metrics.gauge({
    name: 'bus_connected',
    help: '1 while the event bus connection is up, 0 while it is away (the client reconnects by itself)',
    collect() {
      this.set(bus.health?.().connected === false ? 0 : 1);
    },
  });
  metrics.gauge({
    name: 'bus_disconnected_seconds',
    help: 'seconds the event bus has been unreachable (0 while connected)',
    collect() {
      const h = bus.health?.();
      this.set(h && !h.connected ? (Date.now() - h.since) / 1000 : 0);
    },
  });
  let address = '';
  const services = await build({ log, bus, metrics, address: () => address });
  const server = await startServer({
    host: s.host,
    port: s.port,
    services,
    tls: s.tlsCert && s.tlsKey ? { cert: s.tlsCert, key: s.tlsKey, ca: s.tlsCa } : undefined,
    options: { 'grpc.max_receive_message_length': s.maxReceiveMib * 1024 * 1024 },
    authToken: s.authTokenFile ? readTokenFile(s.authTokenFile) : undefined,
    log: (line) => log.info(line),
  });
  address =
    s.advertise ?? `${s.host === '127.0.0.1' || s.host === 'localhost' ? s.host : hostname()}:${server.port}`;
  const metricsServer = await metrics.serve({ port: s.metricsPort, host: s.host, ready: () => true });
  log.info('serving', { address, port: server.port, metrics_port: metricsServer.port, bus: s.bus });
  onShutdown(
    async (reason) => {
      log.info('stopping', { reason });
      await beforeStop?.(reason);
      await server.shutdown(10_000);
      await metricsServer.close();
      await bus.close();
      log.info('stopped');
    },
    { name, log, timeoutMs: 60_000 },
  );
  return { log, bus, metrics, server, metricsServer, address };
}

export const defaultWorkerId = (): string => `${hostname()}-${process.pid}`;
