import type { TrainConfig } from '../../shared/config/train-config.js';
import { type CoordinatorClient, coordinatorClient } from '../../shared/rpc/client.js';
import { RunState, type RunStatus } from '../../shared/rpc/gen/rmt/v1/coordinator.js';

/** A coordinator started by the test (test/helpers/service-processes.ts): its address and logs. */
export interface CoordinatorProcess {
  coordinator: string;
  logs: string[];
}

export const isTerminal = (s: RunState): boolean =>
  s === RunState.RUN_STATE_DONE || s === RunState.RUN_STATE_STOPPED || s === RunState.RUN_STATE_FAILED;

/**
 * Polls GetRunStatus until `pred` holds (a coordinator that is not up yet, or does not know the run
 * yet, is polled again); throws with the last status and the services' last log lines when the run
 * ends first or `timeoutMs` passes.
 */
export async function waitForRunStatus(
  services: CoordinatorProcess,
  runId: string,
  pred: (s: RunStatus) => boolean,
  what: string,
  timeoutMs: number,
): Promise<RunStatus> {
  const end = Date.now() + timeoutMs;
  let last: RunStatus | null = null;
  let client: CoordinatorClient | null = null;
  try {
    for (;;) {
      client ??= coordinatorClient(services.coordinator);
      try {
        last = await client.getRunStatus({ runId }, { deadlineMs: 5_000 });
        if (pred(last)) return last;
        if (isTerminal(last.state)) break;
      } catch {
        client.close();
        client = null;
      }
      if (Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    client?.close();
  }
  throw new Error(
    `${what}: not reached; last status ${JSON.stringify(last)}\n${services.logs.slice(-25).join('\n')}`,
  );
}

/** StartRun of `cfg` under `runId` on the test's coordinator. */
export async function startRunOn(
  services: CoordinatorProcess,
  cfg: TrainConfig,
  runId: string,
): Promise<void> {
  const c = coordinatorClient(services.coordinator);
  try {
    await c.startRun({ config: JSON.stringify(cfg), runId });
  } finally {
    c.close();
  }
}
