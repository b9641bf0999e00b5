import { parse } from 'yaml';
import { RunConfigError } from './merge.js';

/**
 * Applies `section.key=value` overrides (the CLI's `--set`) to a parsed YAML document before it is
 * validated, so an override is checked exactly as the same line in the file would be. The value is
 * read as YAML: `--set train.lr=3e-4`, `--set data.corpora=[moby-dick]`, `--set model.proxy=null`.
 */
export function applySets(raw: unknown, sets: readonly string[], source: string): Record<string, unknown> {
  const root: Record<string, unknown> =
    raw === null || raw === undefined ? {} : (structuredClone(raw) as Record<string, unknown>);
  if (typeof root !== 'object' || Array.isArray(root)) {
    throw new RunConfigError(source, '(root)', 'expected a mapping');
  }
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new RunConfigError('--set', s.slice(0, 80), 'expected section.key=value');
    const path = s.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(path)) {
      throw new RunConfigError('--set', path.slice(0, 80), 'expected a dotted name such as train.lr');
    }
    let value: unknown;
    try {
      value = parse(s.slice(eq + 1));
    } catch (e) {
      throw new RunConfigError('--set', path, `value is not YAML: ${(e as Error).message.split('\n')[0]}`);
    }
    const keys = path.split('.');
    let node = root;
    for (const k of keys.slice(0, -1)) {
      const next = node[k];
      if (next === undefined || next === null) node[k] = {};
      else if (typeof next !== 'object' || Array.isArray(next)) {
        throw new RunConfigError('--set', path, `"${k}" is not a section`);
      }
      node = node[k] as Record<string, unknown>;
    }
    node[keys[keys.length - 1]] = value;
  }
  return root;
}
