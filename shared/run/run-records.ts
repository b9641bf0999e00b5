import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTrainConfig, type TrainConfig } from '../config/train-config.js';
import type { DataRoot } from './data-root.js';

/** Where a coordinator notes the runs it drives, under its data root. */
export const RUN_RECORDS_DIR = '.rmt/runs';

const RUN_ID = /^[A-Za-z0-9_-]{1,128}$/;

export interface RunRecord {
  runId: string;
  /** The run's config as it started (paths resolved under the data root). */
  cfg: TrainConfig;
}

/**
 * The runs a coordinator has started and not yet seen end, one small file each under the data
 * root: a coordinator that restarts (killed, rescheduled) reads them and resumes each run from its
 * newest checkpoint. A run that finishes, fails or is stopped by StopRun is crossed off; one stopped
 * because the coordinator shut down is kept, to be resumed by the next one.
 *
 * A record is read like any request: size bounded, id checked, config parsed and its paths
 * resolved under the data root again; one that does not pass is reported by file name and skipped.
 */
export class RunRecords {
  readonly dir: string;

  constructor(
    private readonly root: DataRoot,
    private readonly maxBytes: number,
  ) {
    this.dir = join(root.dir, RUN_RECORDS_DIR);
  }

  save(runId: string, cfg: TrainConfig): void {
    if (!RUN_ID.test(runId)) throw new Error(`run id ${JSON.stringify(runId.slice(0, 40))}: not a run id`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = join(this.dir, `${runId}.json`);
    // Written whole or not at all: a coordinator killed mid-write leaves the previous record.
    writeFileSync(`${file}.tmp`, `${JSON.stringify({ run_id: runId, config: cfg })}\n`, { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }

  remove(runId: string): void {
    if (RUN_ID.test(runId)) rmSync(join(this.dir, `${runId}.json`), { force: true });
  }

  /** The runs recorded, oldest first; `skip` hears of each file that is not a valid record. */
  list(skip: (file: string, why: string) => void): RunRecord[] {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith('.json'));
    } catch {
      return [];
    }
    const out: { rec: RunRecord; mtime: number }[] = [];
    for (const name of names) {
      const file = join(this.dir, name);
      try {
        // A link is not followed: a record names nothing outside the data root.
        const st = lstatSync(file);
        if (!st.isFile()) throw new Error('not a plain file');
        if (st.size > this.maxBytes) throw new Error(`${st.size} bytes, at most ${this.maxBytes}`);
        let raw: { run_id?: unknown; config?: unknown };
        try {
          raw = JSON.parse(readFileSync(file, 'utf8')) as typeof raw;
        } catch {
          throw new Error('not JSON');
        }
        const runId = raw?.run_id;
        if (typeof runId !== 'string' || !RUN_ID.test(runId) || `${runId}.json` !== name) {
          throw new Error('run_id: missing, not a run id, or not the file name');
        }
        const cfg = this.root.config(parseTrainConfig(raw.config, `${RUN_RECORDS_DIR}/${name}`));
        out.push({ rec: { runId, cfg }, mtime: st.mtimeMs });
      } catch (e) {
        skip(name, (e as Error).message);
      }
    }
    return out.sort((a, b) => a.mtime - b.mtime || (a.rec.runId < b.rec.runId ? -1 : 1)).map((o) => o.rec);
  }
}
