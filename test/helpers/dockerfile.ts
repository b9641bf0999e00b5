// The Dockerfile and .dockerignore as Docker reads them, enough for the tests to check what the
// image holds.
import { posix } from 'node:path';

export interface Instr {
  op: string;
  args: string;
  line: number;
}
export interface Stage {
  image: string;
  name?: string;
  instrs: Instr[];
}

export function parseDockerfile(text: string): Stage[] {
  const instrs: Instr[] = [];
  let buf = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const l = raw.trim();
    if (l.startsWith('#') || (l === '' && buf === '')) return;
    if (buf === '') start = i + 1;
    if (l.endsWith('\\')) {
      buf += `${l.slice(0, -1)} `;
      return;
    }
    buf += l;
    const m = /^(\S+)\s*(.*)$/.exec(buf)!;
    instrs.push({ op: m[1].toUpperCase(), args: m[2], line: start });
    buf = '';
  });
  const stages: Stage[] = [];
  // ARGs before the first FROM, with their defaults: what a FROM line's ${NAME} stands for when the
  // build passes no --build-arg.
  const globalArgs = new Map<string, string>();
  const expand = (s: string) => s.replace(/\$\{?(\w+)\}?/g, (m, n: string) => globalArgs.get(n) ?? m);
  for (const ins of instrs) {
    if (ins.op === 'FROM') {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      stages.push({
        image: expand(words[0]),
        name: words[1]?.toLowerCase() === 'as' ? words[2] : undefined,
        instrs: [],
      });
    } else if (stages.length === 0) {
      if (ins.op !== 'ARG') throw new Error(`Dockerfile:${ins.line}: ${ins.op} before FROM`);
      const eq = ins.args.indexOf('=');
      if (eq > 0) globalArgs.set(ins.args.slice(0, eq).trim(), ins.args.slice(eq + 1).trim());
    } else stages.at(-1)!.instrs.push(ins);
  }
  return stages;
}

export function copyArgs(ins: Instr): { from?: string; srcs: string[]; dest: string } {
  const words = ins.args.trim().startsWith('[')
    ? (JSON.parse(ins.args.slice(ins.args.indexOf('['))) as string[])
    : ins.args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const rest = words.filter((w) => !w.startsWith('--'));
  const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
  return { from, srcs: rest.slice(0, -1), dest: rest.at(-1)! };
}

/** .dockerignore as Docker reads it: last matching pattern wins; a pattern matches a path or a parent. */
export function dockerignore(text: string): (path: string) => boolean {
  const pats = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const neg = l.startsWith('!');
      const p = posix.normalize(neg ? l.slice(1) : l).replace(/^\/+/, '');
      let re = '';
      for (let i = 0; i < p.length; i++) {
        if (p.startsWith('**/', i)) {
          re += '(?:.*/)?';
          i += 2;
        } else if (p.startsWith('**', i)) {
          re += '.*';
          i += 1;
        } else if (p[i] === '*') re += '[^/]*';
        else if (p[i] === '?') re += '[^/]';
        else re += p[i].replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      return { neg, re: new RegExp(`^${re}$`) };
    });
  return (path: string) => {
    const parts = path.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const { neg, re } of pats) if (prefixes.some((p) => re.test(p))) excluded = !neg;
    return excluded;
  };
}
