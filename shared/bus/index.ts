import type { BusOptions, EventBus } from './bus.js';
import { InProcessBus, type InProcessBusOptions } from './in-process.js';
import { NatsBus, type StreamSettings } from './nats.js';

export * from './bus.js';
export { InProcessBus, type InProcessBusOptions } from './in-process.js';
export { consumerName, NatsBus, type NatsBusOptions, type StreamSettings } from './nats.js';
export * from './permissions.js';
export * from './subjects.js';

export interface CreateBusOptions extends BusOptions {
  /** NATS connection name; default `rmt`. Give each service its own (`rollout-3`, `learner`). */
  name?: string;
  /** JetStream stream limits (NATS only). */
  stream?: StreamSettings;
  /** NATS credentials file (NATS only). */
  credsFile?: string;
  /** File holding an nkey user seed (NATS only). */
  nkeySeedFile?: string;
  /** TLS to the NATS server (NATS only). */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** Retention of the in-process log (embedded mode only). */
  retention?: InProcessBusOptions['retention'];
}

/**
 * The bus a URL names: `undefined`, `''` or `'inproc'` -> InProcessBus (embedded mode);
 * `nats://host:port` (or `tls://`, or a comma-separated list of them) -> NatsBus.
 */
export async function createBus(url: string | undefined, opts: CreateBusOptions = {}): Promise<EventBus> {
  const u = url?.trim() ?? '';
  if (u === '' || u === 'inproc') {
    return new InProcessBus({ logger: opts.logger, redelivery: opts.redelivery, retention: opts.retention });
  }
  const servers = u.split(',').map((s) => s.trim());
  const bad = servers.find((s) => !/^(nats|tls):\/\/[^/\s]+\/?$/.test(s));
  if (bad !== undefined) {
    throw new Error(
      `bus URL ${JSON.stringify(bad)}: expected 'inproc' or nats://host:port (comma-separated for a cluster)`,
    );
  }
  return NatsBus.connect({
    servers,
    name: opts.name ?? 'rmt',
    stream: opts.stream,
    credsFile: opts.credsFile,
    nkeySeedFile: opts.nkeySeedFile,
    tls: opts.tls,
    logger: opts.logger,
    redelivery: opts.redelivery,
  });
}
