import { readMetrics } from '../obs/metrics-log.js';
import type { Rollout } from '../rl/rollouts.js';
import { lineChartSvg } from '../util/plot.js';
import type { EvalResult } from './evaluate.js';

/** The rollout metrics of docs/method.md section 8. score = correctness, rewards = the total incl. length. */
export function rolloutMetrics(groups: readonly Rollout[][], hardCap: number): Record<string, number> {
  const all = groups.flat();
  if (all.length === 0) return {};
  const mean = (f: (r: Rollout) => number) => all.reduce((s, r) => s + f(r), 0) / all.length;
  const tokens = all.reduce((s, r) => s + r.logprobs.length, 0);
  return {
    'critic/score/mean': mean((r) => r.reward.rMatch),
    'critic/rewards/mean': mean((r) => r.reward.reward),
    'critic/length_reward/mean': mean((r) => r.reward.rLen),
    'response_length/mean': mean((r) => r.responseIds.length),
    'response_length/reasoning_mean': mean((r) => r.parsed.reasoningIds.length),
    'response_length/clip_ratio': mean((r) => (r.responseIds.length >= hardCap ? 1 : 0)),
    'response/no_answer_rate': mean((r) => (r.parsed.finishReason === 'stop' ? 0 : 1)),
    // An estimate of the policy's entropy: mean surprisal of the tokens it sampled.
    'actor/entropy': tokens
      ? -all.reduce((s, r) => s + r.logprobs.reduce((a, b) => a + b, 0), 0) / tokens
      : 0,
  };
}

export function evalMetrics(e: EvalResult): Record<string, number> {
  return {
    'eval/easy': e.easy.mean,
    'eval/medium': e.medium.mean,
    'eval/hard': e.hard.mean,
    'eval/avg': e.avg,
    'eval/reasoning_length': e.reasoning_length,
  };
}

const series = (rows: Record<string, number>[], key: string): [number, number][] =>
  rows.filter((r) => r[key] !== undefined).map((r) => [r.step, r[key]]);

export function trainingChart(metricsPath: string, method: string): string {
  const rows = readMetrics(metricsPath);
  return lineChartSvg({
    title: `rmt train ${method}: score and response length`,
    xLabel: 'step',
    yLabel: 'score (0-1) / length ÷ budget',
    series: [
      { name: 'critic/score/mean', points: series(rows, 'critic/score/mean') },
      { name: 'critic/rewards/mean', points: series(rows, 'critic/rewards/mean') },
      {
        name: 'reasoning / B_t',
        points: rows
          .filter((r) => r['response_length/reasoning_mean'] !== undefined)
          .map((r) => [r.step, r['response_length/reasoning_mean'] / r['budget/current']]),
      },
    ],
  });
}

export function scheduleChart(metricsPath: string): string {
  const rows = readMetrics(metricsPath);
  const maxB = Math.max(...rows.map((r) => r['budget/current'] ?? 0), 1);
  return lineChartSvg({
    title: 'budget B_t (÷ B_0) and tier mix p_t',
    xLabel: 'step',
    yLabel: 'fraction',
    series: [
      { name: 'B_t / B_0', points: rows.map((r) => [r.step, (r['budget/current'] ?? 0) / maxB]) },
      {
        name: 'reasoning / B_0',
        points: rows
          .filter((r) => r['response_length/reasoning_mean'] !== undefined)
          .map((r) => [r.step, r['response_length/reasoning_mean'] / maxB]),
      },
      { name: 'p_easy', points: series(rows, 'curriculum/p_easy') },
      { name: 'p_medium', points: series(rows, 'curriculum/p_medium') },
      { name: 'p_hard', points: series(rows, 'curriculum/p_hard') },
    ],
  });
}
