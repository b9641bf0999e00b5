import { CoordinatorHost, coordinatorService } from '../../services/coordinator/service.js';
import { InProcessBus } from '../../shared/bus/in-process.js';
import { WorkerRegistry } from '../../shared/rpc/adapters/worker-registry.js';
import { coordinatorClient } from '../../shared/rpc/client.js';
import { type RunningServer, startServer } from '../../shared/rpc/server.js';

/**
 * A coordinator service on loopback whose runs never start: for tests of what StartRun refuses
 * before any run begins (its `services` throw if a run got that far). `close` stops it all.
 */
export async function startRefusingCoordinator(): Promise<{
  host: CoordinatorHost;
  registry: WorkerRegistry;
  server: RunningServer;
  client: ReturnType<typeof coordinatorClient>;
  close(): Promise<void>;
}> {
  const bus = new InProcessBus();
  const registry = new WorkerRegistry(5000);
  const host = new CoordinatorHost({
    bus,
    registry,
    log: () => {},
    services: () => {
      throw new Error('not used: every StartRun here is refused');
    },
  });
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    services: [coordinatorService(host, registry)],
  });
  const client = coordinatorClient(server.address);
  return {
    host,
    registry,
    server,
    client,
    close: async () => {
      client.close();
      await server.shutdown(100);
      await bus.close();
    },
  };
}
