import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TrainConfig } from '../config/train-config.js';
import { RUN_CONFIG_FILE } from '../run-dir/run-dir.js';
import { RequestError } from './request-error.js';

/**
 * What makes two configs the same run: everything but where its folder is and which backend
 * computes it (a run may resume on another machine). Paths count resolved, however they were spelt.
 */
export function configFingerprint(cfg: TrainConfig): string {
  const { out_dir: _out, backend: _backend, ...run } = cfg.run;
  const c = { ...structuredClone(cfg), run };
  if (c.model.init_from) c.model.init_from = resolve(c.model.init_from);
  if (c.model.proxy !== null) c.model.proxy = resolve(c.model.proxy);
  return createHash('sha256').update(JSON.stringify(c)).digest('hex');
}

/**
 * Whether this run may use its out_dir: a new folder, an empty one, or one holding this same run
 * (same config fingerprint: a resume). A folder of another run, or one holding anything else when
 * `strict`, is refused (ALREADY_EXISTS), never overwritten.
 */
export function checkOutDir(cfg: TrainConfig, o: { strict: boolean }): void {
  const out = resolve(cfg.run.out_dir);
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) {
    throw new RequestError('run.out_dir: is a file, not a folder', 'argument', 'run.out_dir');
  }
  const file = join(out, RUN_CONFIG_FILE);
  if (!existsSync(file)) {
    if (o.strict && readdirSync(out).length > 0) {
      throw new RequestError(
        `run.out_dir: the folder holds files but no ${RUN_CONFIG_FILE}: not a run's folder; choose another out_dir`,
        'conflict',
      );
    }
    return;
  }
  let stored: string | null = null;
  try {
    stored = configFingerprint(JSON.parse(readFileSync(file, 'utf8')) as TrainConfig);
  } catch {
    stored = null;
  }
  if (stored !== configFingerprint(cfg)) {
    throw new RequestError(
      `run.out_dir: the folder holds another run (its ${RUN_CONFIG_FILE} differs from this config); ` +
        'choose another out_dir, or remove that run to start over',
      'conflict',
    );
  }
}
