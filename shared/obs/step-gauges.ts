import type { ServiceMetrics } from './metrics.js';

/**
 * Prometheus name of a metrics.jsonl key: `critic/score/mean` -> `rmt_train_critic_score_mean`
 * (the exposition format allows only [a-zA-Z0-9_:] in names).
 */
export function stepMetricName(key: string): string {
  return `train_${key.replace(/[^a-zA-Z0-9_]/g, '_')}`;
}

/**
 * Every metric of a run's step row as a gauge, so a Prometheus dashboard sees what metrics.jsonl and
 * TensorBoard see. Non-finite values (an empty evaluation split) are not set: Prometheus would keep
 * the NaN and break rate() and alerts built on it.
 */
export function stepGauges(metrics: ServiceMetrics): (row: Record<string, number>) => void {
  return (row) => {
    for (const [key, value] of Object.entries(row)) {
      if (!Number.isFinite(value)) continue;
      metrics
        .gauge({ name: stepMetricName(key), help: `${key} of the active run's last step (metrics.jsonl)` })
        .set(value);
    }
  };
}
