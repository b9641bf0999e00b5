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
  return {
    update: (step, info) => {
      if (step % every === 0 || step === total)
        process.stderr.write(`${label} ${step}/${total} ${fmt(info)}\n`);
    },
    stop: () => {},
  };
}

function fmt(info: Record<string, string | number>): string {
  return Object.entries(info)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : v}`)
    .join(' ');
}
