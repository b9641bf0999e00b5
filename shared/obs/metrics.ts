// Prometheus metrics per service. Each ServiceMetrics owns a Registry instead of using prom-client's
// global one: in embedded mode all four services share a process, and tests build many instances, so
// a global registry would turn every second construction into a "metric already registered" error.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  Counter,
  type CounterConfiguration,
  collectDefaultMetrics,
  Gauge,
  type GaugeConfiguration,
  Histogram,
  type HistogramConfiguration,
  Registry,
} from 'prom-client';

export const METRIC_PREFIX = 'rmt_';

export interface ServiceMetricsOptions {
  /** Value of the `service` label on every series of this registry. */
  service: string;
  /** More labels on every series, e.g. `{ instance: 'w1' }` for one of several workers in a process. */
  labels?: Record<string, string>;
  /** Process/Node.js metrics (CPU, memory, event loop, GC); default true. */
  defaultMetrics?: boolean;
}

type Cfg<C> = Omit<C, 'registers'>;

export class ServiceMetrics {
  readonly service: string;
  readonly registry: Registry;

  constructor(opts: ServiceMetricsOptions) {
    this.service = opts.service;
    this.registry = new Registry();
    if (opts.labels !== undefined && 'service' in opts.labels) {
      throw new Error('ServiceMetrics: the service label comes from the service option');
    }
    this.registry.setDefaultLabels({ service: opts.service, ...opts.labels });
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Full metric name: `rmt_` is added unless the name already has it. */
  static fullName(name: string): string {
    return name.startsWith(METRIC_PREFIX) ? name : METRIC_PREFIX + name;
  }

  counter<L extends string = string>(cfg: Cfg<CounterConfiguration<L>>): Counter<L> {
    return this.getOrCreate(Counter, cfg, (c) => new Counter<L>(c));
  }

  gauge<L extends string = string>(cfg: Cfg<GaugeConfiguration<L>>): Gauge<L> {
    return this.getOrCreate(Gauge, cfg, (c) => new Gauge<L>(c));
  }

  histogram<L extends string = string>(cfg: Cfg<HistogramConfiguration<L>>): Histogram<L> {
    return this.getOrCreate(Histogram, cfg, (c) => new Histogram<L>(c));
  }

  /** Text exposition format of everything in this registry. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  serve(opts: Omit<ServeMetricsOptions, 'registry'>): Promise<MetricsServer> {
    return serveMetrics({ ...opts, registry: this.registry });
  }

  // Returning the existing metric on a repeated declaration lets components that are instantiated
  // more than once per service (a worker pool, a reconnecting client) declare their metrics locally.
  private getOrCreate<M extends object, C extends { name: string; labelNames?: readonly string[] }>(
    kind: abstract new (...args: never[]) => M,
    cfg: C,
    make: (c: C & { registers: Registry[] }) => M,
  ): M {
    const name = ServiceMetrics.fullName(cfg.name);
    const labelNames = [...(cfg.labelNames ?? [])];
    if (labelNames.includes('service')) {
      throw new Error(`metric ${name}: label "service" is set by ServiceMetrics for every series`);
    }
    const existing = this.registry.getSingleMetric(name);
    if (existing !== undefined) {
      const had = (existing as unknown as { labelNames?: string[] }).labelNames ?? [];
      if (!(existing instanceof kind) || had.join(',') !== labelNames.join(',')) {
        throw new Error(
          `metric ${name} is already registered in service ${this.service} ` +
            `as a ${existing.constructor.name} with labels [${had.join(', ')}]`,
        );
      }
      return existing;
    }
    return make({ ...cfg, name, registers: [this.registry] });
  }
}

export interface ServeMetricsOptions {
  /** 0 picks a free port; the actual one is in the result. */
  port: number;
  /** Default: all interfaces, so a Prometheus scraper and kubelet probes can reach the pod IP. */
  host?: string;
  registry: Registry;
  /** Readiness for `/readyz`; absent means ready as soon as the server listens. */
  ready?: () => boolean;
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

function reply(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8') {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(body);
}

export async function serveMetrics(opts: ServeMetricsOptions): Promise<MetricsServer> {
  const { registry, ready } = opts;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return reply(res, 405, 'method not allowed\n');
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    switch (path) {
      case '/metrics':
        try {
          return reply(res, 200, await registry.metrics(), registry.contentType);
        } catch (err) {
          return reply(res, 500, `collecting metrics failed: ${(err as Error).message}\n`);
        }
      case '/healthz':
        // Liveness only says the event loop answers; dependencies belong in readiness, or a slow
        // dependency would get healthy pods restarted.
        return reply(res, 200, 'ok\n');
      case '/readyz': {
        let ok: boolean;
        try {
          ok = ready === undefined || ready();
        } catch {
          ok = false;
        }
        return reply(res, ok ? 200 : 503, ok ? 'ready\n' : 'not ready\n');
      }
      default:
        return reply(res, 404, 'not found\n');
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) reply(res, 500, 'internal error\n');
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Scrapers and fetch keep connections alive; without this close() waits for their timeout.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
