// The service image: every file the services import is in it, and every package they import is a
// production dependency (an import scan from the services' entry points).
import { existsSync, statSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { posix } from 'node:path';
import test from 'ava';
import { copyArgs, dockerignore, parseDockerfile } from './helpers/dockerfile.js';
import { at, read, SERVICES } from './helpers/k8s.js';

test('the image holds every file the services import, and every package they import is a production dependency', (t) => {
  const stages = parseDockerfile(read('Dockerfile'));
  const final = stages.at(-1)!;
  const copies = final.instrs.filter((i) => i.op === 'COPY').map(copyArgs);
  const fromContext = copies.filter((c) => !c.from).flatMap((c) => c.srcs.map((s) => s.replace(/\/$/, '')));
  const fromBuild = copies.filter((c) => c.from).map((c) => c.dest.replace(/\/$/, ''));
  const ignored = dockerignore(read('.dockerignore'));
  const inImage = (p: string) =>
    fromBuild.some((d) => p === d || p.startsWith(`${d}/`)) ||
    (fromContext.some((s) => p === s || p.startsWith(`${s}/`)) && !ignored(p));
  // What `npm ci --omit=dev` installs: the lock file's packages not marked dev (direct or not).
  const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { dev?: boolean }> };
  const deps = JSON.parse(read('package.json')).dependencies as Record<string, string>;
  const transitive = new Set<string>();
  const roots = [
    'bin/rmt.js',
    'cli/main.ts',
    'cli/submit.ts',
    ...SERVICES.map((s) => `services/${s}/main.ts`),
  ];
  const seen = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    t.true(inImage(file), `${file} is imported but not in the image`);
    const src = read(file);
    const specs: { spec: string; typeOnly: boolean }[] = [];
    for (const m of src.matchAll(
      /^\s*(import|export)\s+(type\s+)?(?:[^;'"]*?\s+from\s+)?['"]([^'"]+)['"]/gm,
    )) {
      specs.push({ spec: m[3], typeOnly: !!m[2] });
    }
    for (const m of src.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g))
      specs.push({ spec: m[1], typeOnly: false });
    for (const m of src.matchAll(/new URL\(\s*[`'"](\.[^`'"$]*)/g)) {
      // A file read at run time (asm/build/*.wasm): its folder must be in the image.
      const p = posix.normalize(posix.join(posix.dirname(file), m[1]));
      if (existsSync(at(p)) && statSync(at(p)).isDirectory()) continue; // a folder it resolves against
      t.true(inImage(p), `${file} reads ${p}, which is not in the image`);
    }
    for (const { spec, typeOnly } of specs) {
      if (spec.startsWith('.')) {
        let p = posix.normalize(posix.join(posix.dirname(file), spec));
        if (p.endsWith('.js') && !existsSync(at(p)) && existsSync(at(`${p.slice(0, -3)}.ts`)))
          p = `${p.slice(0, -3)}.ts`;
        if (!existsSync(at(p))) {
          t.fail(`${file}: ${spec} not found`);
          continue;
        }
        if (statSync(at(p)).isFile()) queue.push(p);
      } else if (!isBuiltin(spec) && !typeOnly) {
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        const entry = lock.packages[`node_modules/${name}`];
        t.true(
          entry !== undefined && entry.dev !== true,
          `${file} imports ${name}, which npm ci --omit=dev does not install`,
        );
        if (!deps[name]) transitive.add(name);
      }
    }
  }
  if (transitive.size > 0)
    t.log(`imported but installed only as dependencies of dependencies: ${[...transitive].join(', ')}`);
  t.true(seen.size > 30, `only ${seen.size} files reached`);
  t.true(
    [...seen].some((f) => f.startsWith('shared/rpc/gen/')),
    'the generated gRPC code is reached',
  );
});
