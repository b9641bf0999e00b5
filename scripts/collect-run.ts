/**
 * Copies what a run produced (summary, metrics, resolved config, plots, evaluation) into a results
 * folder under docs/, with the machine and commit that made it, so committed numbers say where they
 * came from. Usage: tsx scripts/collect-run.ts <run dir> <results dir>
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

const [run, dest] = process.argv.slice(2);
if (!run || !dest) {
  process.stderr.write('usage: tsx scripts/collect-run.ts <run dir> <results dir>\n');
  process.exit(2);
}
if (!existsSync(join(run, 'summary.json'))) {
  process.stderr.write(`${run}: no summary.json (has the run finished?)\n`);
  process.exit(1);
}
mkdirSync(dest, { recursive: true });
for (const f of readdirSync(run)) {
  if (/^(summary|eval|config\.resolved|compare-ntr|compare-ntp)\.json$|^metrics\.jsonl$|\.svg$/.test(f))
    copyFileSync(join(run, f), join(dest, f));
}
const git = (...args: string[]) => {
  try {
    return execFileSync('git', args, { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
};
writeFileSync(
  join(dest, 'machine.json'),
  `${JSON.stringify(
    {
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      memory_gib: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      commit: git('rev-parse', 'HEAD'),
      dirty: git('status', '--porcelain', '--untracked-files=no') !== '',
      collected_at: new Date().toISOString(),
    },
    null,
    2,
  )}\n`,
);
process.stdout.write(`collected ${run} into ${dest}\n`);
