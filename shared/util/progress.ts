import cliProgress from 'cli-progress';

/**
 * A progress bar on a terminal; on a pipe or in CI a plain line every `every` steps instead, so logs
 * stay readable.
 */
export interface Progress {
  update(step: number, info: Record<string, string | number>): void;
  stop(): void;
}

export function progress(label: string, total: number, start = 0, every = 20): Progress {
  if (process.stderr.isTTY && !process.env.CI) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} |{bar}| {value}/{total} {info} eta {eta_formatted}`,
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, start, { info: '' });
    return {
      update: (step, info) => bar.update(step, { info: fmt(info) }),
      stop: () => bar.stop(),
    };
  }
  const t0 = performance.now();
  let last = start;
  return {
    update: (step, info) => {
      if (step - last < every && step !== total) return;
      last = step;
      process.stderr.write(
        `${[label, `${step}/${total}`, fmt(info), pace(step - start, total - step, t0)].filter(Boolean).join(' ')}\n`,
      );
    },
    stop: () => {},
  };
}

/** Rate and time left from the steps done since this bar started: logs say how long a job has left. */
export function pace(done: number, left: number, t0: number, now = performance.now()): string {
  const s = (now - t0) / 1000;
  if (done <= 0 || s <= 0) return '';
  const rate = done / s;
  return `rate=${Number(rate.toPrecision(3))}/s eta=${duration(left / rate)}`;
}

export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function fmt(info: Record<string, string | number>): string {
  return Object.entries(info)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : v}`)
    .join(' ');
}
