import { RunConfigError } from '../../config/merge.js';
import { SERVICE_LIMITS } from '../../config/service-limits.js';
import { RequestError } from '../../run/request-error.js';
import type { RunContexts } from '../../run/run-context.js';
import { NoWorkersError } from '../../run/worker-pool.js';
import {
  FIELD_KEY,
  failedPrecondition,
  invalidArgument,
  isServiceError,
  RpcError,
  Status,
  unavailable,
} from '../errors.js';
import type { RunRef as PbRunRef } from '../gen/rmt/v1/common.js';

/**
 * Library errors as the status codes a client can act on. Anything not recognised here is left
 * for the handler wrapper, which reports it as INTERNAL (with its stack in the service's log).
 */
export function statusOf(e: unknown, configField = 'run.config_json'): unknown {
  if (e instanceof RpcError || isServiceError(e)) return e;
  if (e instanceof RunConfigError) return invalidArgument(`${configField}: ${e.field}`, e.reason);
  if (e instanceof SyntaxError) return invalidArgument(configField, `not JSON: ${e.message}`);
  if (e instanceof RequestError) {
    if (e.kind === 'precondition') return failedPrecondition(e.message);
    if (e.kind === 'conflict') return new RpcError(Status.ALREADY_EXISTS, e.message);
    if (e.kind === 'busy') return unavailable('learner', e.message);
    return e.field === undefined
      ? invalidArgument(configField, e.message)
      : new RpcError(Status.INVALID_ARGUMENT, e.message, { [FIELD_KEY]: e.field });
  }
  if (e instanceof NoWorkersError) return unavailable('rollout workers', e.message);
  return e;
}

/** Runs `f`, translating what it throws with statusOf. */
export async function asStatus<T>(f: () => Promise<T>, configField?: string): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw statusOf(e, configField);
  }
}

/** A run id as every service takes it: bounded, and only characters safe in logs, subjects and paths. */
export function checkRunId(runId: string, field: string): void {
  const max = SERVICE_LIMITS.max_run_id_chars;
  if (runId.length > max) throw invalidArgument(field, `${runId.length} characters, at most ${max}`);
  if (!/^[A-Za-z0-9_-]+$/.test(runId)) throw invalidArgument(field, 'letters, digits, "-" and "_" only');
}

/** The run a request names, with its tokenizer and prompt layout loaded (INVALID_ARGUMENT if bad). */
export function runOf(contexts: RunContexts, run: PbRunRef | undefined) {
  if (!run?.runId) throw invalidArgument('run.run_id', 'required');
  checkRunId(run.runId, 'run.run_id');
  return asStatus(async () => contexts.get(run.runId, run.configJson));
}
