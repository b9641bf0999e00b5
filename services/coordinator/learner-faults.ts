import { SERVICE_LIMITS } from '../../shared/config/service-limits.js';
import { isServiceError, Status } from '../../shared/rpc/errors.js';
import type { LearnerFault } from '../../shared/run/learner-link.js';

/**
 * A learner call's gRPC error as the run reads it: the learner unreachable (down, restarting, the
 * connection dropped mid-call) is `away` and the run waits for it; FAILED_PRECONDITION (a learner
 * that restarted without the run, or holds it for another coordinator) is `refused` and the run
 * reconnects to see where it stands; anything else is the run's end.
 */
export function learnerFault(err: unknown): LearnerFault {
  if (!isServiceError(err)) return 'other';
  switch (err.code) {
    case Status.UNAVAILABLE:
    case Status.DEADLINE_EXCEEDED:
      return 'away';
    case Status.FAILED_PRECONDITION:
      return 'refused';
    default:
      return 'other';
  }
}

/** --learner: one address, or several comma-separated by rank (data-parallel learners, rank 0 first). */
export function learnerAddresses(flag: string): string[] {
  const list = flag.split(',').map((a) => a.trim());
  if (list.some((a) => a === '')) throw new Error(`--learner ${JSON.stringify(flag)}: an empty address`);
  if (list.length > SERVICE_LIMITS.max_learners)
    throw new Error(`--learner: ${list.length} addresses, at most ${SERVICE_LIMITS.max_learners}`);
  if (new Set(list).size !== list.length) throw new Error(`--learner: an address named twice`);
  return list;
}
