import { lstatSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { TrainConfig } from '../config/train-config.js';
import { echo, RequestError } from './request-error.js';

const inside = (root: string, p: string) => {
  const r = relative(root, p);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
};

/**
 * The one folder a service reads and writes under (`--data-root`, RMT_DATA_ROOT): the paths a
 * client names (a run's out_dir, init_from and proxy, a tokenizer folder) are resolved under it,
 * relative ones from it. A path that leaves it, by `..`, as an absolute path elsewhere or through a
 * symbolic link, is refused with the same message whether or not it exists, so that a client learns
 * nothing about the rest of the file system.
 */
export class DataRoot {
  /** The root, absolute and with its own links resolved (once, at start). */
  readonly dir: string;

  constructor(dir: string) {
    this.dir = realpathSync(resolve(dir));
    if (!statSync(this.dir).isDirectory()) throw new Error(`data root ${dir}: not a folder`);
  }

  /** `p` as an absolute path inside the root, or a RequestError naming `field`. */
  resolve(p: string, field: string): string {
    const outside = () =>
      new RequestError(
        `${field}: ${echo(p)} is not a path inside this service's data root`,
        'argument',
        field,
      );
    if (typeof p !== 'string' || p === '' || p.includes('\0')) {
      throw new RequestError(`${field}: a path is required`, 'argument', field);
    }
    const abs = resolve(this.dir, p);
    if (!inside(this.dir, abs)) throw outside();
    // The deepest part that exists decides where the path really goes (links included); a dangling
    // link cannot be resolved and is refused like any other way out.
    let probe = abs;
    for (;;) {
      try {
        lstatSync(probe);
        break;
      } catch {
        probe = dirname(probe);
      }
    }
    let real: string;
    try {
      real = realpathSync(probe);
    } catch {
      throw outside();
    }
    if (!inside(this.dir, real)) throw outside();
    return join(real, relative(probe, abs));
  }

  /** A run's config with its paths resolved under the root (config field names in errors). */
  config(cfg: TrainConfig): TrainConfig {
    const out = structuredClone(cfg);
    out.run.out_dir = this.resolve(cfg.run.out_dir, 'run.out_dir');
    if (cfg.model.init_from) out.model.init_from = this.resolve(cfg.model.init_from, 'model.init_from');
    if (cfg.model.proxy !== null) out.model.proxy = this.resolve(cfg.model.proxy, 'model.proxy');
    return out;
  }
}
