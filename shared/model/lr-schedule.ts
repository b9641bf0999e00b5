/** Linear warmup then cosine decay to `lrMin`, indexed by the 0-based update number. */
export interface LrSchedule {
  lrMax: number;
  lrMin: number;
  warmupSteps: number;
  totalSteps: number;
}

export function learningRate(s: LrSchedule, step: number): number {
  if (step < s.warmupSteps) return (s.lrMax * (step + 1)) / s.warmupSteps;
  const progress = Math.min(1, (step - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps));
  return s.lrMin + 0.5 * (s.lrMax - s.lrMin) * (1 + Math.cos(Math.PI * progress));
}
