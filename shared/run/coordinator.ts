import { randomBytes } from 'node:crypto';
import type { EventBus, Subscription } from '../bus/bus.js';
import { METHOD_TABLE, type MethodSpec, type TierProbs } from '../config/rmt-defaults.js';
import { SERVICE_LIMITS } from '../config/service-limits.js';
import type { TrainConfig } from '../config/train-config.js';
import { DifficultyTable, type DifficultyTableJson } from '../curriculum/difficulty-table.js';
import { CasSampler, filterByEntropy, type PositionSampler, UniformSampler } from '../curriculum/sampler.js';
import { tierMix } from '../curriculum/schedule.js';
import { budgetSchedule } from '../rl/budget.js';
import { dynamicSampling, fracRewardZeroStd } from '../rl/grpo.js';
import { type KeyPosition, stepKeySet } from '../rl/key-positions.js';
import { planJobs, type RolloutSettings } from '../rl/rollout-job.js';
import type { Rollout } from '../rl/rollouts.js';
import { type LineLog, RunDir } from '../run-dir/run-dir.js';
import { type Progress, progress as progressBar } from '../util/progress.js';
import { Rng, type RngState } from '../util/rng.js';
import type { EvalResult } from './evaluate.js';
import type { LearnerApi, ScorerApi } from './interfaces.js';
import type { CoordinatorState, LearnerStart } from './learner.js';
import { type LearnerFault, LearnerLink, LearnerReloaded, sameProcessLearner } from './learner-link.js';
import { ObservationInbox } from './observations.js';
import { groupAccuracy } from './rollout-worker.js';
import type { RunRef } from './run-context.js';
import { evalMetrics, rolloutMetrics, scheduleChart, trainingChart } from './step-metrics.js';
import type { WorkerPool } from './worker-pool.js';

export type RunState = 'preparing' | 'running' | 'waiting' | 'done' | 'stopped' | 'failed';

export interface RunStatusView {
  runId: string;
  state: RunState;
  method: string;
  step: number;
  totalSteps: number;
  budget: number;
  tierMix: number[];
  weightVersion: number;
  workers: number;
  metrics: Record<string, number>;
  error: string;
  outDir: string;
  elapsedS: number;
  /** Why the run is held up or degraded now ('' when nothing is): the learner away, the bus down. */
  reason: string;
}

export interface TrainSummary {
  method: string;
  run_id: string;
  out_dir: string;
  steps: number;
  wall_s: number;
  /** The finished model (`final/`), or the newest step checkpoint of a run stopped before the end. */
  final_checkpoint: string;
  eval?: EvalResult;
  /** What the run wrote that a person opens: metrics, event files, plots, evaluation, summary. */
  files: string[];
}

export interface CoordinatorServices {
  scorer: ScorerApi;
  learner: LearnerApi;
  pool: WorkerPool;
  bus: EventBus;
}

export interface CoordinatorOptions {
  log?: LineLog;
  /** Stops the run after the step in flight, with a checkpoint. */
  signal?: AbortSignal;
  onStep?: (step: number, metrics: Record<string, number>) => void;
  onStatus?: (s: RunStatusView) => void;
  /** Progress bars on the terminal (the CLI); services log JSON lines instead. */
  bars?: boolean;
  /**
   * Generate step t+1 while the learner applies step t when `distributed.max_staleness >= 1`. Only
   * for workers that hold their own copy of the weights (not the embedded worker).
   */
  overlap?: boolean;
  /**
   * How a failed learner call reads (shared/run/learner-link.ts): a learner in another process may
   * be away for a while, and the run then waits for it. By default every failure ends the run.
   */
  learnerFault?: (err: unknown) => LearnerFault;
  /** Longest pause between attempts to reach a learner that is away (SERVICE_LIMITS.learner_retry_max_s). */
  learnerRetryMaxMs?: number;
  /**
   * This coordinator as the learner's lease knows it: one id per coordinator process, so that its
   * next run takes the learner at once and a restarted process waits for the old lease to end.
   */
  holder?: string;
}

interface GeneratedStep {
  t: number;
  tStep: number;
  B_t: number;
  row: Record<string, number>;
  groups: Rollout[][];
  /** The weight version each of `groups` was sampled at. */
  versions: number[];
  positions: KeyPosition[];
  snapshot: CoordinatorState;
}

/** The budget an `ntr` evaluation states (see `eval.budget`). */
export function evalBudget(cfg: TrainConfig): number | null {
  if (cfg.eval.budget !== null) return cfg.eval.budget;
  const spec = METHOD_TABLE[cfg.method];
  return spec.budget === 'dtb' ? budgetSchedule('dtb', cfg.budget)(cfg.train.steps, cfg.train.steps) : null;
}

/** Held-out positions an evaluation uses: an evenly spaced, fixed subset. */
export function evalSubset(positions: readonly KeyPosition[], n: number): KeyPosition[] {
  if (positions.length <= n) return [...positions];
  const stride = positions.length / n;
  return Array.from({ length: n }, (_, i) => positions[Math.floor(i * stride)]);
}

function makeSampler(
  spec: MethodSpec,
  cfg: TrainConfig,
  positions: readonly KeyPosition[],
  table: DifficultyTable,
): PositionSampler {
  const eligible = filterByEntropy(positions, cfg.curriculum.min_entropy);
  if (eligible.length === 0) {
    throw new Error(
      `no key position has entropy above curriculum.min_entropy = ${cfg.curriculum.min_entropy}`,
    );
  }
  if (spec.curriculum === 'cas')
    return new CasSampler(table.tiers(cfg.curriculum, cfg.curriculum.min_entropy), cfg.curriculum);
  if (spec.curriculum === 'none') return new UniformSampler(positions.map((p) => p.id));
  return new UniformSampler(eligible);
}

/**
 * The curriculum coordinator: owns a run (docs/method.md sections 3-6 and 8). Each step it takes the budget
 * B_t and tier mix p_t of step t, draws key positions with the method's sampler from the
 * difficulty table, has the rollout workers generate G rollouts each (jobs dispatched across the
 * workers alive, at weights no older than the staleness bound), waits for the groups' difficulty
 * observations from the bus, sends the rollouts to the learner for one dual-loss step, and logs the
 * metric names of docs/method.md section 8. The embedded `rmt train` and the coordinator service run this same loop; only the
 * services behind `CoordinatorServices` differ.
 */
export class RunCoordinator {
  private readonly view: RunStatusView;
  private readonly t0 = performance.now();

  constructor(
    readonly runId: string,
    readonly cfg: TrainConfig,
    private readonly s: CoordinatorServices,
    private readonly o: CoordinatorOptions = {},
  ) {
    this.holder = o.holder ?? randomBytes(8).toString('hex');
    this.view = {
      runId,
      state: 'preparing',
      method: cfg.method,
      step: 0,
      totalSteps: cfg.train.steps,
      budget: 0,
      tierMix: [],
      weightVersion: 0,
      workers: 0,
      metrics: {},
      error: '',
      outDir: cfg.run.out_dir,
      elapsedS: 0,
      reason: '',
    };
  }

  readonly holder: string;
  private waitingFor: string | null = null;
  private stateBeforeWait: RunState = 'preparing';

  status(): RunStatusView {
    const bus = this.s.bus.health?.();
    const reasons = [
      ...(this.waitingFor ? [this.waitingFor] : []),
      ...(bus && !bus.connected
        ? [`event bus unreachable for ${((Date.now() - bus.since) / 1000).toFixed(0)} s (reconnecting)`]
        : []),
    ];
    return {
      ...this.view,
      workers: this.s.pool.alive().length,
      elapsedS: (performance.now() - this.t0) / 1000,
      reason: reasons.join('; '),
    };
  }

  /** The run is held up by the learner (a reason), or goes on (null). */
  private waitFor(reason: string | null): void {
    if (reason && !this.waitingFor && this.view.state !== 'waiting') this.stateBeforeWait = this.view.state;
    this.waitingFor = reason;
    this.update({ state: reason ? 'waiting' : this.stateBeforeWait });
  }

  private update(patch: Partial<RunStatusView>): void {
    Object.assign(this.view, patch);
    // A run that has ended waits for nothing.
    if (patch.state === 'done' || patch.state === 'stopped' || patch.state === 'failed')
      this.waitingFor = null;
    this.o.onStatus?.(this.status());
  }

  async run(): Promise<TrainSummary> {
    try {
      return await this.loop();
    } catch (err) {
      if (this.o.signal?.aborted === true) {
        // Stopped before the first step (while scoring): nothing to checkpoint, nothing failed.
        this.update({ state: 'stopped' });
        return {
          method: this.cfg.method,
          run_id: this.runId,
          out_dir: this.cfg.run.out_dir,
          steps: this.view.step,
          wall_s: (performance.now() - this.t0) / 1000,
          final_checkpoint: '',
          files: [],
        };
      }
      this.update({ state: 'failed', error: (err as Error).message });
      throw err;
    }
  }

  private async loop(): Promise<TrainSummary> {
    const { cfg, runId } = this;
    const dir = new RunDir(cfg, this.o.log);
    const { log } = dir;
    const spec = METHOD_TABLE[cfg.method];
    if (spec.reasoning === 'untrained') {
      throw new Error(
        `method "${cfg.method}" is an evaluation mode, not a training run: use \`rmt eval --mode ntr\``,
      );
    }
    const ref: RunRef = { runId, cfg, holder: this.holder };
    dir.writeConfig(cfg);

    const score = async (split: 'train' | 'held_out') => {
      // The scorer knows the window count only once it starts, so the bar starts with its first report.
      let bar: Progress | null = null;
      const positions = await this.s.scorer.keyPositions(ref, split, {
        log,
        signal: this.o.signal,
        progress: this.o.bars
          ? (done, total) => {
              bar ??= progressBar(`score ${split} windows`, total);
              bar.update(done, {});
            }
          : undefined,
      });
      (bar as Progress | null)?.stop();
      return positions;
    };
    const train = await score('train');
    const heldOut = await score('held_out');
    if (train.length === 0 || heldOut.length === 0) {
      throw new Error(
        `no key positions (train ${train.length}, held-out ${heldOut.length}): check data.positions and data.corpora`,
      );
    }
    log(`key positions: ${train.length} train, ${heldOut.length} held-out`);
    const byId = new Map(train.map((p) => [p.id, p]));

    const T = cfg.train.steps;
    // With a staleness bound >= 1 and workers of their own, step t+1 is generated while the learner
    // applies step t; otherwise (and always in one process, where the worker samples from the
    // learner's own parameters) the two alternate.
    const overlap = this.o.overlap === true && cfg.distributed.max_staleness >= 1;
    const link = new LearnerLink(this.s.learner, ref, {
      classify: this.o.learnerFault ?? sameProcessLearner,
      retryMaxMs: this.o.learnerRetryMaxMs ?? SERVICE_LIMITS.learner_retry_max_s * 1000,
      signal: this.o.signal,
      onWait: (reason) => this.waitFor(reason),
      log,
    });

    /** The run from where the learner stands (`start`) to its end or a stop. */
    const segment = async (start: LearnerStart): Promise<TrainSummary> => {
      let step = start.step;
      if (step > 0 && !start.extra) {
        throw new Error(
          `the learner holds this run at step ${step}, past its last checkpoint, and the coordinator state of that step is gone`,
        );
      }
      const saved = start.extra?.difficulty as DifficultyTableJson | undefined;
      // A resumed run keeps its observations (the adaptive state); entropies come from this scoring.
      const table =
        start.resumedFrom && saved ? DifficultyTable.fromJSON(saved) : new DifficultyTable(cfg.curriculum);
      for (const p of train) table.setEntropy(p.id, p.entropy);
      const rng = new Rng((start.extra?.rng as RngState | undefined) ?? cfg.run.seed);
      if (start.resumedFrom) log(`resuming from ${start.resumedFrom} at step ${step}`);
      // Rows after the learner's step are replaced once the learner takes that step; a learner that
      // refuses it (one already further along) leaves every row in place.
      const metrics = dir.metrics(step);
      const metricsPath = metrics.jsonlPath;
      const inbox = new ObservationInbox(runId, table, step);
      const sub: Subscription = await this.s.bus.subscribe(
        'rmt.difficulty.observed',
        (m) => inbox.receive(m),
        {
          deliver: 'new',
        },
      );

      const schedule = budgetSchedule(spec.budget === 'dtb' ? 'dtb' : 'fixed', cfg.budget);
      const evalPositions = evalSubset(heldOut, cfg.eval.positions);
      const state = () => ({ rng: rng.state(), method: cfg.method, difficulty: table.toJSON() });
      const evaluate = async (version: number): Promise<EvalResult> => {
        for (;;) {
          try {
            return await this.s.pool.evaluate(
              ref,
              evalPositions,
              spec.reasoning === 'no' ? 'ntp' : 'ntr',
              evalBudget(cfg),
              version,
            );
          } catch (e) {
            if (!(await link.excuse([version]))) throw e;
          }
        }
      };

      /** Sampling, rollouts and difficulty observations of step t: everything before the update. */
      const generate = async (t: number): Promise<GeneratedStep> => {
        const tStep = performance.now();
        const B_t = schedule(t, T);
        const sampler = makeSampler(spec, cfg, train, table);
        let positions = sampler.sample(cfg.train.positions_per_step, t, T, rng).map((id) => byId.get(id)!);
        const row: Record<string, number> = { step: t + 1, 'budget/current': B_t };
        const mix: TierProbs =
          spec.curriculum === 'cas' ? (sampler as CasSampler).mixAt(t, T) : tierMix(t, T, cfg.curriculum);
        if (spec.curriculum === 'cas') {
          row['curriculum/p_easy'] = mix[0];
          row['curriculum/p_medium'] = mix[1];
          row['curriculum/p_hard'] = mix[2];
        }
        this.update({ budget: B_t, tierMix: spec.curriculum === 'cas' ? [...mix] : [] });
        let groups: Rollout[][] = [];
        // Which weights sampled each group: the learner's pi_old depends on it.
        const sampledAt = new Map<Rollout[], number>();
        const tGen = performance.now();
        if (spec.reward !== 'none') {
          const settings: RolloutSettings = {
            G: cfg.grpo.G,
            temperature: cfg.grpo.temperature,
            budget: B_t,
            stateBudget: spec.budget === 'dtb',
            hardCap: cfg.budget.hard_cap,
            rewardKind: spec.reward,
            maxBatch: cfg.train.generation_batch,
          };
          const minVersion = Math.max(0, t - cfg.distributed.max_staleness);
          const generated: Rollout[][] = [];
          let jobs = 0;
          let oldest = t;
          const rollout = async (at: KeyPosition[]) => {
            const planned = planJobs({ runId, seed: cfg.run.seed }, t, at, settings, minVersion, jobs);
            jobs += planned.length;
            // Not the stop signal: a stop lets the step in flight finish.
            // A job failing while the learner is away (its weights cannot be pulled) waits for it.
            const results = await this.s.pool.run(ref, planned, undefined, () =>
              link.excuse(overlap ? [t - 1, t] : [t]),
            );
            for (const r of results) {
              oldest = Math.min(oldest, r.version);
              for (const gr of r.groups) sampledAt.set(gr, r.version);
            }
            const gs = results.flatMap((r) => r.groups);
            generated.push(...gs);
            return gs;
          };
          groups = await rollout(positions);
          row.frac_reward_zero_std = fracRewardZeroStd(
            groups.flatMap((g) => g.map((r) => r.reward.reward)),
            cfg.grpo.G,
          );
          if (cfg.grpo.dynamic_sampling) {
            // The score of what the curriculum drew, before replacement: critic/score/mean is then over
            // the trained batch, which keeps only groups with mixed rewards, so it is not comparable
            // from step to step.
            row['critic/score/drawn_mean'] = rolloutMetrics(groups, cfg.budget.hard_cap)['critic/score/mean'];
            // DAPO: zero-variance groups are replaced by groups at freshly drawn positions.
            const ds = await dynamicSampling(
              groups,
              (g) => g.map((r) => r.reward.reward),
              async () => (await rollout(sampler.sample(1, t, T, rng).map((id) => byId.get(id)!)))[0],
              cfg.grpo.max_replacement_draws,
            );
            groups = ds.groups;
            row['dynamic_sampling/replaced'] = ds.replaced;
            positions = stepKeySet(positions, groups, byId);
          }
          Object.assign(row, rolloutMetrics(groups, cfg.budget.hard_cap));
          // How many updates behind the policy that sampled this step was (0 when on-policy).
          row['perf/weight_staleness'] = t - oldest;
          // With the bus away no observation is coming: the step applies its own at once.
          const busUp = this.s.bus.health?.().connected !== false;
          const filled = await inbox.settle(
            t,
            generated.map((g) => ({ positionId: g[0].positionId, accuracy: groupAccuracy(g) })),
            busUp ? cfg.distributed.observation_timeout_s * 1000 : 0,
          );
          if (filled > 0) {
            log(
              `step ${t + 1}: ${filled} difficulty observations missing on the bus; applied from the rollouts`,
            );
          }
        }
        row['timing_s/gen'] = (performance.now() - tGen) / 1000;
        // What a checkpoint after this step must hold to resume it exactly, taken before the next
        // step's sampling moves the RNG.
        const versions = groups.map((gr) => sampledAt.get(gr) ?? t);
        return { t, tStep, B_t, row, groups, versions, positions, snapshot: state() };
      };

      /** The update of a generated step, its metrics and checkpoint. Returns true when told to stop. */
      const apply = async (g: GeneratedStep): Promise<boolean> => {
        const { row } = g;
        const done = g.t + 1;
        const learned = await link.call(`train step ${g.t}`, [g.t, done], () =>
          this.s.learner.trainStep(ref, g.t, g.groups, g.positions, g.versions),
        );
        const { rl_tokens, ntp_tokens, ...actor } = learned;
        Object.assign(row, actor);
        row['timing_s/step'] = (performance.now() - g.tStep) / 1000;
        row['perf/throughput'] = (rl_tokens + ntp_tokens) / row['timing_s/step'];
        if (cfg.eval.every > 0 && done % cfg.eval.every === 0 && done < T) {
          lastEval = await evaluate(done);
          Object.assign(row, evalMetrics(lastEval));
        }
        metrics.append(row);
        // The plots follow the run: refreshed at every evaluation, not only after the last step.
        if ('eval/avg' in row) {
          dir.write('training.svg', trainingChart(metricsPath, cfg.method));
          dir.write('schedule.svg', scheduleChart(metricsPath));
        }
        // JSON has no NaN: an undefined metric (an empty eval split) is left out of the event.
        const finite = Object.fromEntries(Object.entries(row).filter(([, v]) => Number.isFinite(v)));
        // A notification: the row is in metrics.jsonl, so a bus that stays away past the publish
        // deadline costs the event, not the run.
        await this.s.bus
          .publish('rmt.metrics.step', { run_id: runId, step: done, metrics: finite })
          .catch((e: Error) => log(`step ${done}: publishing its metrics failed: ${e.message}`));
        step = done;
        this.o.onStep?.(done, row);
        this.update({ step: done, weightVersion: done, metrics: row });
        bar?.update(done, {
          score: row['critic/score/mean'] ?? 0,
          len: row['response_length/mean'] ?? 0,
          B: g.B_t,
        });
        const interrupted = this.o.signal?.aborted === true;
        if (done % cfg.checkpoint.every === 0 || done === T || interrupted) {
          finalDir = await link.call(`checkpoint of step ${done}`, [done], () =>
            this.s.learner.checkpoint(ref, g.snapshot),
          );
        }
        if (interrupted) log(`stopped at step ${done}; rerun the same command to resume`);
        return interrupted;
      };

      const bar = this.o.bars ? progressBar(`train ${cfg.method}`, T, step) : null;
      this.update({ state: 'running', step, weightVersion: step });
      let lastEval: EvalResult | undefined;
      let finalDir = '';
      let pending: Promise<boolean> | null = null;
      try {
        for (let t = step; t < T; t++) {
          const g = await generate(t);
          if (pending && (await pending)) break;
          pending = apply(g);
          if (!overlap && (await pending)) break;
        }
        await pending;
      } finally {
        await pending?.catch(() => {});
        bar?.stop();
        metrics.close();
        await sub.unsubscribe();
      }
      const files = [...metrics.files];
      if (step === T) {
        finalDir = await link.call('final checkpoint', [T], () => this.s.learner.saveFinal(ref));
        lastEval = await evaluate(step);
        files.push(
          dir.writeJson('eval.json', lastEval),
          dir.write('training.svg', trainingChart(metricsPath, cfg.method)),
          dir.write('schedule.svg', scheduleChart(metricsPath)),
        );
      }
      files.push(dir.file('summary.json'));
      const summary: TrainSummary = {
        method: cfg.method,
        run_id: runId,
        out_dir: cfg.run.out_dir,
        steps: step,
        wall_s: (performance.now() - this.t0) / 1000,
        final_checkpoint: finalDir,
        eval: lastEval,
        files,
      };
      dir.writeJson('summary.json', summary);
      this.update({ state: step === T ? 'done' : 'stopped' });
      return summary;
    };

    try {
      let start = await link.connect();
      for (;;) {
        try {
          return await segment(start);
        } catch (e) {
          if (!(e instanceof LearnerReloaded)) throw e;
          // A learner restarted from its last checkpoint: the steps after it are done again, from
          // the coordinator state stored with it, and their rows of metrics.jsonl replaced.
          start = e.start;
          log(`the learner came back at step ${start.step}; the run continues from there`);
        }
      }
    } finally {
      link.close();
    }
  }
}
