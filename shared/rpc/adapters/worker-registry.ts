import type { EventBus, Subscription } from '../../bus/bus.js';
import { type ClientOptions, rolloutClient } from '../client.js';
import { RemoteEndpoint } from './remote.js';

export interface WorkerSeen {
  id: string;
  address: string;
  version: number;
  busy: boolean;
  lastSeenS: number;
}

/**
 * The rollout workers alive, as the coordinator learns them from `rmt.workers.heartbeat`: a
 * worker that starts announces its address and is dispatched jobs from its first heartbeat; one
 * silent for longer than `ttlMs` drops out (a job it held is redone elsewhere by the pool).
 */
export class WorkerRegistry {
  private readonly workers = new Map<
    string,
    { endpoint: RemoteEndpoint; address: string; lastSeen: number; version: number; busy: boolean }
  >();
  private sub: Subscription | null = null;

  constructor(
    private readonly ttlMs: number,
    private readonly clientOptions: ClientOptions = {},
  ) {}

  async start(bus: EventBus): Promise<void> {
    this.sub = await bus.subscribe('rmt.workers.heartbeat', (m) => {
      const known = this.workers.get(m.worker_id);
      if (known && known.address === m.address) {
        Object.assign(known, { lastSeen: Date.now(), version: m.weight_version, busy: m.busy });
        return;
      }
      known?.endpoint.client.close();
      this.workers.set(m.worker_id, {
        endpoint: new RemoteEndpoint(m.worker_id, rolloutClient(m.address, this.clientOptions)),
        address: m.address,
        lastSeen: Date.now(),
        version: m.weight_version,
        busy: m.busy,
      });
    });
  }

  /** Endpoints of the workers heard from within the TTL. */
  endpoints(): RemoteEndpoint[] {
    const now = Date.now();
    return [...this.workers.values()].filter((w) => now - w.lastSeen <= this.ttlMs).map((w) => w.endpoint);
  }

  list(): WorkerSeen[] {
    const now = Date.now();
    return [...this.workers.values()]
      .filter((w) => now - w.lastSeen <= this.ttlMs)
      .map((w) => ({
        id: w.endpoint.id,
        address: w.address,
        version: w.version,
        busy: w.busy,
        lastSeenS: (now - w.lastSeen) / 1000,
      }));
  }

  async stop(): Promise<void> {
    await this.sub?.unsubscribe();
    for (const w of this.workers.values()) w.endpoint.client.close();
    this.workers.clear();
  }
}
