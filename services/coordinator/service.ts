import { randomBytes } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import type { EventBus } from '../../shared/bus/bus.js';
import { RunConfigError } from '../../shared/config/merge.js';
import { SERVICE_LIMITS } from '../../shared/config/service-limits.js';
import { parseTrainConfig, type TrainConfig } from '../../shared/config/train-config.js';
import { asStatus, checkRunId } from '../../shared/rpc/adapters/library-errors.js';
import type { WorkerRegistry } from '../../shared/rpc/adapters/worker-registry.js';
import {
  failedPrecondition,
  handleServerStream,
  handleUnary,
  invalidArgument,
  notFound,
} from '../../shared/rpc/errors.js';
import {
  CoordinatorServiceService,
  RunState,
  type RunStatus,
} from '../../shared/rpc/gen/rmt/v1/coordinator.js';
import { bindService, type ServiceBinding } from '../../shared/rpc/server.js';
import {
  type CoordinatorServices,
  RunCoordinator,
  type RunStatusView,
} from '../../shared/run/coordinator.js';
import type { DataRoot } from '../../shared/run/data-root.js';
import type { LearnerFault } from '../../shared/run/learner-link.js';
import { checkOutDir, configFingerprint } from '../../shared/run/out-dir.js';
import type { RunRecords } from '../../shared/run/run-records.js';

const STATE: Record<RunStatusView['state'], RunState> = {
  preparing: RunState.RUN_STATE_PREPARING,
  running: RunState.RUN_STATE_RUNNING,
  waiting: RunState.RUN_STATE_WAITING,
  done: RunState.RUN_STATE_DONE,
  stopped: RunState.RUN_STATE_STOPPED,
  failed: RunState.RUN_STATE_FAILED,
};

const terminal = (s: RunStatusView['state']) => s === 'done' || s === 'stopped' || s === 'failed';

export function statusToPb(v: RunStatusView): RunStatus {
  return {
    runId: v.runId,
    state: STATE[v.state],
    method: v.method,
    step: v.step,
    totalSteps: v.totalSteps,
    budget: v.budget,
    tierMix: v.tierMix,
    weightVersion: v.weightVersion,
    workers: v.workers,
    metrics: v.metrics,
    error: v.error,
    outDir: v.outDir,
    elapsedS: v.elapsedS,
    reason: v.reason,
  };
}

interface Active {
  coordinator: RunCoordinator;
  stop: AbortController;
  done: Promise<unknown>;
  watchers: Set<() => void>;
  /** When the run ended (ms since the epoch); null while it runs. */
  endedAt: number | null;
}

export interface CoordinatorServiceOptions {
  services: (cfg: TrainConfig) => Omit<CoordinatorServices, 'bus'>;
  bus: EventBus;
  registry: WorkerRegistry;
  log: (line: string) => void;
  onStep?: (step: number, metrics: Record<string, number>) => void;
  /** Where run paths must lie (out_dir, init_from, proxy); unrestricted when unset (tests only). */
  root?: DataRoot;
  /** Longest StartRun config, checked before parsing (SERVICE_LIMITS.max_config_bytes by default). */
  maxConfigBytes?: number;
  /** Finished runs kept for GetRunStatus (SERVICE_LIMITS.finished_runs_kept by default). */
  finishedRunsKept?: number;
  /** Seconds a finished run is kept at most (SERVICE_LIMITS.finished_run_ttl_s by default). */
  finishedRunTtlS?: number;
  /** How a failed learner call reads: a learner away makes the run wait for it (shared/run/learner-link.ts). */
  learnerFault?: (err: unknown) => LearnerFault;
  /** Longest pause between attempts to reach the learner, in ms. */
  learnerRetryMaxMs?: number;
  /** Where the runs being driven are noted, so that a restarted coordinator resumes them. */
  records?: RunRecords;
}

/**
 * rmt.v1.CoordinatorService: starts a run (one active at a time) whose loop is the library's
 * RunCoordinator with the scorer, learner and rollout workers reached over gRPC; reports and
 * streams its status; stops it with a checkpoint.
 */
export class CoordinatorHost {
  readonly runs = new Map<string, Active>();
  private active: Active | null = null;
  /** Set once the process is stopping: the run it stops is resumed by the next coordinator. */
  private shuttingDown = false;
  private readonly timer: NodeJS.Timeout;
  private lastReason = '';
  /** This process as the learner's lease knows it (a restarted coordinator is another holder). */
  readonly holder = `coordinator-${randomBytes(8).toString('hex')}`;

  constructor(private readonly o: CoordinatorServiceOptions) {
    // A status can change without a step (the bus goes away or comes back): watchers hear of it.
    this.timer = setInterval(() => {
      const a = this.active;
      if (!a || a.endedAt !== null) return;
      const reason = a.coordinator.status().reason;
      if (reason === this.lastReason) return;
      this.lastReason = reason;
      for (const w of a.watchers) w();
    }, 1000);
    this.timer.unref();
  }

  /**
   * Starts again the runs a coordinator before this one was driving when it went (killed,
   * rescheduled, shut down): each from its newest checkpoint. Only one run is active at a time;
   * the newest record wins and older ones are reported and left for StartRun.
   */
  resumeRecorded(): string[] {
    const records = this.o.records;
    if (!records) return [];
    if (this.active && !terminal(this.active.coordinator.status().state)) return [];
    const found = records.list((file, why) => this.o.log(`run record ${file} skipped: ${why}`));
    const newest = found.at(-1);
    for (const r of found.slice(0, -1)) {
      this.o.log(
        `[${r.runId}] not resumed: another run (${newest!.runId}) is resumed; StartRun it again later`,
      );
    }
    if (!newest) return [];
    try {
      checkOutDir(newest.cfg, { strict: true });
      this.launch(newest.runId, newest.cfg);
      this.o.log(`[${newest.runId}] resuming the run a previous coordinator was driving`);
      return [newest.runId];
    } catch (e) {
      this.o.log(`[${newest.runId}] cannot be resumed: ${(e as Error).message}`);
      return [];
    }
  }

  start(req: {
    config: string;
    method: string;
    steps: number;
    outDir: string;
    runId: string;
  }): RunStatusView {
    const busy = this.active && !terminal(this.active.coordinator.status().state) ? this.active : null;
    const maxBytes = this.o.maxConfigBytes ?? SERVICE_LIMITS.max_config_bytes;
    if (req.config.length > maxBytes) {
      throw invalidArgument('config', `${req.config.length} characters, at most ${maxBytes}`);
    }
    if (req.runId) checkRunId(req.runId, 'run_id');
    if (!req.config.trim()) throw invalidArgument('config', 'the run config (YAML or JSON) is required');
    let raw: unknown;
    try {
      raw = parseYaml(req.config);
    } catch (e) {
      throw invalidArgument('config', `not YAML/JSON: ${(e as Error).message}`);
    }
    const parsed = (() => {
      try {
        const c = parseTrainConfig(raw, 'config');
        if (req.method)
          c.method = parseTrainConfig({ ...(raw as object), method: req.method }, 'method').method;
        if (req.steps > 0) c.train.steps = req.steps;
        if (req.outDir) c.run.out_dir = req.outDir;
        return c;
      } catch (e) {
        throw e instanceof RunConfigError ? invalidArgument(e.field, e.reason) : e;
      }
    })();
    // Everything about the run's folders is settled before it starts: inside the data root, and an
    // out_dir that is new or holds this same run. (The checkpoint itself is read by the learner and
    // the scorer: on Kubernetes the coordinator does not mount the models volume.)
    const cfg = this.o.root ? this.o.root.config(parsed) : parsed;
    if (!cfg.model.init_from)
      throw invalidArgument('model.init_from', 'a pre-trained checkpoint folder is required');
    if (busy) {
      // The run already going (resumed from a previous coordinator's record, or started by an
      // earlier call) is the one asked for again: its status, not a second run.
      const going = busy.coordinator.cfg;
      if (going.run.out_dir === cfg.run.out_dir && configFingerprint(going) === configFingerprint(cfg))
        return busy.coordinator.status();
      throw failedPrecondition(`run "${busy.coordinator.runId}" is still active; StopRun it first`);
    }
    checkOutDir(cfg, { strict: true });
    this.prune();
    const runId =
      req.runId ||
      `${cfg.method}-${new Date()
        .toISOString()
        .replace(/[-:.TZ]/g, '')
        .slice(0, 14)}-${randomBytes(2).toString('hex')}`;
    return this.launch(runId, cfg);
  }

  private launch(runId: string, cfg: TrainConfig): RunStatusView {
    const records = this.o.records;
    if (records) {
      records.save(runId, cfg);
      // The same folder under another id (started again by a new StartRun) is this run now.
      for (const r of records.list(() => {})) {
        if (r.runId !== runId && r.cfg.run.out_dir === cfg.run.out_dir) records.remove(r.runId);
      }
    }
    const stop = new AbortController();
    const watchers = new Set<() => void>();
    const coordinator = new RunCoordinator(
      runId,
      cfg,
      { ...this.o.services(cfg), bus: this.o.bus },
      {
        log: (l) => this.o.log(`[${runId}] ${l}`),
        signal: stop.signal,
        onStep: this.o.onStep,
        overlap: true,
        learnerFault: this.o.learnerFault,
        holder: this.holder,
        learnerRetryMaxMs: this.o.learnerRetryMaxMs,
        onStatus: () => {
          for (const w of watchers) w();
        },
      },
    );
    const active: Active = { coordinator, stop, done: Promise.resolve(), watchers, endedAt: null };
    active.done = coordinator
      .run()
      .catch((e: Error) => this.o.log(`[${runId}] failed: ${e.message}`))
      .finally(() => {
        active.endedAt = Date.now();
        // A run stopped because this process is going is the next coordinator's to resume.
        const state = coordinator.status().state;
        if (!(this.shuttingDown && state === 'stopped')) this.o.records?.remove(runId);
        // The watchers hear the end from the last status; none is left holding the run.
        for (const w of watchers) w();
        this.prune();
      });
    this.runs.set(runId, active);
    this.active = active;
    return coordinator.status();
  }

  /**
   * Forgets finished runs beyond the newest `finishedRunsKept`, and those ended more than
   * `finishedRunTtlS` ago: a coordinator that serves many runs must not hold each one forever.
   */
  prune(now = Date.now()): void {
    const kept = this.o.finishedRunsKept ?? SERVICE_LIMITS.finished_runs_kept;
    const ttlMs = (this.o.finishedRunTtlS ?? SERVICE_LIMITS.finished_run_ttl_s) * 1000;
    const ended = [...this.runs.entries()]
      .filter(([, a]) => a.endedAt !== null)
      .sort(([, a], [, b]) => b.endedAt! - a.endedAt!);
    for (const [i, [id, a]] of ended.entries()) {
      if (i >= kept || now - a.endedAt! > ttlMs) {
        this.runs.delete(id);
        if (this.active === a) this.active = null;
      }
    }
  }

  find(runId: string): Active {
    if (runId) checkRunId(runId, 'run_id');
    this.prune();
    const a = runId ? this.runs.get(runId) : this.active;
    if (!a) throw notFound(runId ? `run "${runId}"` : 'an active run');
    return a;
  }

  /**
   * Stops the active run (if any) after its step in flight and waits for its checkpoint;
   * `resumeLater` keeps it noted for the next coordinator to resume.
   */
  async stopAll(o: { resumeLater?: boolean } = {}): Promise<void> {
    this.shuttingDown = o.resumeLater === true;
    clearInterval(this.timer);
    if (!this.active) return;
    this.active.stop.abort();
    await this.active.done;
  }
}

export function coordinatorService(host: CoordinatorHost, registry: WorkerRegistry): ServiceBinding {
  return bindService(CoordinatorServiceService, {
    startRun: handleUnary(async (req) => statusToPb(await asStatus(async () => host.start(req), 'config'))),
    getRunStatus: handleUnary(async (req) => statusToPb(host.find(req.runId).coordinator.status())),
    watchRun: handleServerStream(async function* (req, ctx): AsyncGenerator<RunStatus> {
      const a = host.find(req.runId);
      let changed = true;
      let wake: (() => void) | null = null;
      const notify = () => {
        changed = true;
        wake?.();
      };
      // One listener for the whole stream (not one per status): a long run sends thousands.
      const onAbort = () => wake?.();
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      a.watchers.add(notify);
      try {
        for (;;) {
          if (changed) {
            changed = false;
            const s = a.coordinator.status();
            yield statusToPb(s);
            if (terminal(s.state)) return;
          }
          ctx.signal.throwIfAborted();
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = null;
          ctx.signal.throwIfAborted();
        }
      } finally {
        a.watchers.delete(notify);
        ctx.signal.removeEventListener('abort', onAbort);
      }
    }),
    stopRun: handleUnary(async (req) => {
      const a = host.find(req.runId);
      a.stop.abort();
      await a.done;
      return statusToPb(a.coordinator.status());
    }),
    listWorkers: handleUnary(async () => ({
      workers: registry.list().map((w) => ({
        workerId: w.id,
        address: w.address,
        weightVersion: w.version,
        busy: w.busy,
        lastSeenS: w.lastSeenS,
      })),
    })),
  });
}
