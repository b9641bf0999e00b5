import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { configTextForCoordinator, withAbsoluteRoot } from './data-sources.js';
import { RunConfigError } from './merge.js';
import { applySets } from './set-overrides.js';
import { parseTrainConfig } from './train-config.js';

/**
 * The config text `rmt up` and `rmt submit` send to a coordinator, with their `--set` overrides
 * applied. Overrides are checked here, by the same schema, so a mistyped one fails before anything
 * starts and names its field; without overrides the file goes as it is (the coordinator checks it).
 * `absoluteRoot`: the coordinator runs on this machine, so data.sources' root is made absolute.
 */
export function runConfigText(file: string, sets: readonly string[], o: { absoluteRoot: boolean }): string {
  if (sets.length === 0) return o.absoluteRoot ? configTextForCoordinator(file) : readFileSync(file, 'utf8');
  let raw: unknown;
  try {
    raw = parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new RunConfigError(file, '(file)', (e as Error).message);
  }
  const withSets = applySets(raw, sets, file);
  parseTrainConfig(withSets, file);
  return JSON.stringify(o.absoluteRoot ? withAbsoluteRoot(withSets, file) : withSets);
}
