// The Dockerfile, read against the sources: stages, what is copied and ignored, the user, the
// entrypoint, the GPU libraries. No container engine.
import test from 'ava';
import { copyArgs, dockerignore, parseDockerfile } from './helpers/dockerfile.js';
import { read, SCHEMAS, SERVICES } from './helpers/k8s.js';

// --- the image ----------------------------------------------------------------------------------

test('Dockerfile: multi-stage on node:20, npm ci --omit=dev, non-root, the serve entrypoint, the GPU libraries, nothing secret', (t) => {
  const stages = parseDockerfile(read('Dockerfile'));
  t.true(stages.length >= 2, 'a build stage and a runtime stage');
  const names = new Set(stages.map((s) => s.name).filter(Boolean));
  for (const s of stages) {
    if (names.has(s.image)) continue;
    t.regex(s.image, /^node:20(\.\d+){0,2}-[a-z0-9.-]+$/, `FROM ${s.image}: node:20-<variant>`);
  }
  const final = stages.at(-1)!;
  const ops = (op: string) => final.instrs.filter((i) => i.op === op);
  // npm ci --omit=dev in the final stage, no dev install there.
  const runs = ops('RUN').map((i) => i.args);
  t.true(
    runs.some((r) => /\bnpm ci\b[^&;|]*--omit=dev/.test(r)),
    'final stage: npm ci --omit=dev',
  );
  t.false(
    runs.some((r) => /\bnpm (install|i)\b/.test(r)),
    'final stage: npm install',
  );
  // Non-root.
  const user = ops('USER').at(-1)?.args.split(':')[0];
  t.truthy(user, 'final stage: no USER');
  t.false(['root', '0'].includes(user!), `USER ${user}`);
  // The entrypoint: node bin/rmt.js serve, exec form so that SIGTERM reaches node.
  const ep = ops('ENTRYPOINT').at(-1)?.args ?? '';
  t.deepEqual(JSON.parse(ep), ['node', 'bin/rmt.js', 'serve']);
  t.is(ops('WORKDIR').length > 0, true);
  // The build outputs of `prepare`, from the build stage.
  const copies = ops('COPY').map(copyArgs);
  for (const out of ['asm/build', 'shared/rpc/gen']) {
    t.true(
      copies.some(
        (c) => c.from && names.has(c.from) && c.srcs.some((s) => s.replace(/\/$/, '').endsWith(out)),
      ),
      `final stage: COPY --from=<build> ${out}`,
    );
  }
  // The loader libraries docs/gpu.md lists for the webgpu backend.
  const gpuDebs = /apt-get install -y ([a-z0-9 .+-]+)\n/.exec(read('docs/gpu.md'))![1].trim().split(/\s+/);
  const apt = runs.filter((r) => r.includes('apt-get install')).join(' ');
  for (const d of gpuDebs)
    t.regex(apt, new RegExp(`\\b${d.replace(/\+/g, '\\+')}\\b`), `final stage: apt package ${d}`);
  // The services' default ports are exposed.
  const exposed = new Set(ops('EXPOSE').flatMap((i) => i.args.split(/\s+/).map(Number)));
  for (const s of SERVICES) {
    for (const f of ['port', 'metrics-port']) {
      const d = (SCHEMAS[s][f] as { default?: number }).default!;
      t.true(exposed.has(d), `EXPOSE ${d} (${s} --${f})`);
    }
  }
  // Nothing secret or run-specific goes in.
  for (const s of stages) {
    for (const i of s.instrs) {
      t.not(i.op, 'ADD', `Dockerfile:${i.line}: ADD (use COPY)`);
      if (i.op === 'ENV' || i.op === 'ARG') {
        t.notRegex(
          i.args,
          /(SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|API_KEY)/i,
          `Dockerfile:${i.line}`,
        );
      }
    }
  }
  for (const c of copies.filter((x) => !x.from)) {
    for (const src of c.srcs) {
      const p = src.replace(/^\.\//, '').replace(/\/$/, '');
      t.false(p === '.' || p === '', `final stage: COPY ${src} copies the whole context`);
      t.notRegex(
        p,
        /^(configs|runs|docs|test|bench|\.git)(\/|$)|\.(pem|key|crt|creds|jwt|safetensors)$|(^|\/)\.env/,
        `COPY ${src}`,
      );
      t.false(
        p.startsWith('k8s'),
        `COPY ${src}: nothing of k8s/ belongs in the image (\`rmt submit\` is in cli/)`,
      );
    }
  }
  // .dockerignore keeps secrets and run data out of the context, and lets in what is copied.
  const ignored = dockerignore(read('.dockerignore'));
  for (const p of [
    'node_modules',
    '.git',
    'runs/base/final/model.safetensors',
    'configs/rmt.yaml',
    'tls.key',
    'nats-auth/scorer.creds',
    'rmt-nats-auth/auth.conf',
    'k8s/base/config/run.yaml',
    'a/.env',
  ]) {
    t.true(ignored(p), `.dockerignore lets ${p} in`);
  }
  for (const s of stages) {
    for (const c of s.instrs.filter((i) => i.op === 'COPY').map(copyArgs)) {
      if (c.from) continue;
      for (const src of c.srcs)
        t.false(ignored(src.replace(/\/$/, '')), `COPY ${src}, but .dockerignore excludes it`);
    }
  }
});
