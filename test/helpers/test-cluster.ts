import { type Cluster, type ClusterOptions, startCluster } from '../../cli/up.js';

/**
 * A local cluster as the integration tests run it: WebAssembly kernels, fast heartbeats and a short
 * worker TTL so a killed worker is noticed within seconds, every log line kept in `logs`.
 */
export function startTestCluster(
  logs: string[],
  o: Omit<ClusterOptions, 'backend' | 'logs' | 'heartbeatS' | 'workerTtlS'>,
): Promise<Cluster> {
  return startCluster({
    backend: 'cpu',
    logs: (name, line) => logs.push(`[${name}] ${line}`),
    heartbeatS: 0.5,
    workerTtlS: 3,
    ...o,
  });
}
