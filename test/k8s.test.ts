// The Kubernetes deployment (docs/kubernetes.md): renders k8s/base, every overlay and every overlay
// with the optional components, validates every object against the Kubernetes API types offline, and
// checks the manifests against the services (flags, env vars, ports, addresses, paths, credentials),
// the NATS configuration against nats-server (and the credentials against a running one, where it
// is installed), the Dockerfile against the sources, and the guide's commands against the manifests.
// No cluster, no container engine, no network.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { credsAuthenticator, connect as natsConnect } from 'nats';
import ts from 'typescript';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { DEFAULT_USERS, NATS_AUTH_FLAGS, NATS_TLS_DIR, natsAuth } from '../k8s/tools/nats-auth.js';
import { SUBMIT_FLAGS, submit } from '../scripts/submit.js';
import { FLAGS as COORDINATOR_FLAGS } from '../services/coordinator/main.js';
import { FLAGS as LEARNER_FLAGS } from '../services/learner/main.js';
import { FLAGS as ROLLOUT_FLAGS } from '../services/rollout/main.js';
import { FLAGS as SCORER_FLAGS } from '../services/scorer/main.js';
import { createBus } from '../shared/bus/index.js';
import { envName, type FlagSchema, parseServiceFlags } from '../shared/config/service-flags.js';
import { parseTrainConfig } from '../shared/config/train-config.js';
import { failedPrecondition, handleServerStream, handleUnary } from '../shared/rpc/errors.js';
import {
  CoordinatorServiceService,
  RunState,
  RunStatus,
  type StartRunRequest,
} from '../shared/rpc/gen/rmt/v1/coordinator.js';
import { bindService, startServer } from '../shared/rpc/server.js';
import { type K8sObject, keyOf, kustomize } from './helpers/kustomize.js';
import { findNatsServer, startNatsServer } from './helpers/nats-server.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const at = (p: string) => join(root, p);
const read = (p: string) => readFileSync(at(p), 'utf8');

const SERVICES = ['scorer', 'rollout', 'learner', 'coordinator'] as const;
type Service = (typeof SERVICES)[number];
const OVERLAYS = ['cpu', 'gpu', 'dev'] as const;
type Overlay = (typeof OVERLAYS)[number];
// The optional components (k8s/components), each rendered on an overlay the way a user adds it: in
// `components:` of the overlay's kustomization.yaml (a copy of the overlay in a temporary folder).
const VARIANTS = {
  'cpu+tls': { overlay: 'cpu', components: ['tls'] },
  'gpu+queue-autoscaling': { overlay: 'gpu', components: ['queue-autoscaling'] },
  'dev+tls+queue-autoscaling': { overlay: 'dev', components: ['tls', 'queue-autoscaling'] },
} as const satisfies Record<string, { overlay: Overlay; components: readonly string[] }>;
type Variant = keyof typeof VARIANTS;
const TARGETS = ['base', ...OVERLAYS, ...(Object.keys(VARIANTS) as Variant[])] as const;
type Target = (typeof TARGETS)[number];
const DIRS: Record<'base' | Overlay, string> = {
  base: 'k8s/base',
  cpu: 'k8s/overlays/cpu',
  gpu: 'k8s/overlays/gpu',
  dev: 'k8s/overlays/dev',
};
const isVariant = (t: Target): t is Variant => t in VARIANTS;
/** The overlay a target is (or is built on). */
const overlayOf = (t: Target): 'base' | Overlay => (isVariant(t) ? VARIANTS[t].overlay : t);
const componentsOf = (t: Target): readonly string[] => (isVariant(t) ? VARIANTS[t].components : []);
const EXTRA_FILES = ['k8s/tools/models-loader.yaml', 'k8s/monitoring/podmonitor.yaml'];
const NAMESPACE = 'rmt';
const POD = { name: 'pod-name-0', ip: '10.1.2.3' };

// --- shared helpers ---------------------------------------------------------------------------

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML; the API types check them.
type Any = any;

// The variants' kustomizations: copies of their overlays with `components:` added and the paths out
// of the overlay made relative to the copy.
let variantRoot: string | undefined;
// Temporary folders of the file (the variants, the test certificates), removed at its end.
const tempDirs: string[] = [];
test.after.always(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});
function dirOf(t: Target): string {
  if (!isVariant(t)) return at(DIRS[t]);
  if (!variantRoot) {
    variantRoot = mkdtempSync(join(tmpdir(), 'rmt-k8s-'));
    tempDirs.push(variantRoot);
  }
  const dir = join(variantRoot, t);
  if (existsSync(dir)) return dir;
  const from = at(DIRS[VARIANTS[t].overlay]);
  cpSync(from, dir, { recursive: true });
  const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Any;
  const out = (p: string) => relative(dir, resolve(from, p));
  k.resources = (k.resources as string[]).map((r) => (existsSync(join(dir, r)) ? r : out(r)));
  k.components = [
    ...(k.components ?? []).map(out),
    ...VARIANTS[t].components.map((c) => relative(dir, at(`k8s/components/${c}`))),
  ];
  writeFileSync(join(dir, 'kustomization.yaml'), stringify(k));
  return dir;
}

const renders = new Map<Target, K8sObject[]>();
function render(t: Target): K8sObject[] {
  let r = renders.get(t);
  if (!r) {
    r = kustomize(dirOf(t));
    renders.set(t, r);
  }
  return structuredClone(r);
}

function extras(): K8sObject[] {
  return EXTRA_FILES.flatMap((f) => parseAllDocuments(read(f)).map((d) => d.toJS() as K8sObject));
}

const byKind = (objs: K8sObject[], kind: string) => objs.filter((o) => o.kind === kind) as Any[];
const find = (objs: K8sObject[], kind: string, name: string): Any =>
  objs.find((o) => o.kind === kind && o.metadata.name === name);

function podSpec(o: Any): Any | undefined {
  switch (o.kind) {
    case 'Deployment':
    case 'StatefulSet':
    case 'Job':
      return o.spec.template.spec;
    case 'CronJob':
      return o.spec.jobTemplate.spec.template.spec;
    case 'Pod':
      return o.spec;
    default:
      return undefined;
  }
}
function podLabels(o: Any): Record<string, string> {
  switch (o.kind) {
    case 'CronJob':
      return o.spec.jobTemplate.spec.template.metadata?.labels ?? {};
    case 'Pod':
      return o.metadata.labels ?? {};
    default:
      return o.spec.template.metadata?.labels ?? {};
  }
}
const workloads = (objs: K8sObject[]) => objs.filter((o) => podSpec(o) !== undefined) as Any[];
const selects = (sel: Record<string, string> | undefined, labels: Record<string, string>) =>
  Object.entries(sel ?? {}).every(([k, v]) => labels[k] === v);
const component = (o: Any): string => podLabels(o)['app.kubernetes.io/component'] ?? o.metadata.name;

/** Containers that run an rmt service: `args: [<service>, ...flags]` on the image's entrypoint. */
function rmtContainers(objs: K8sObject[]): { w: Any; c: Any; service: Service }[] {
  const out: { w: Any; c: Any; service: Service }[] = [];
  for (const w of workloads(objs)) {
    for (const c of podSpec(w).containers) {
      const first = c.args?.[0];
      if (!c.command && SERVICES.includes(first)) out.push({ w, c, service: first });
    }
  }
  return out;
}

function cpuOf(q: string | number): number {
  const s = String(q);
  return s.endsWith('m') ? Number(s.slice(0, -1)) / 1000 : Number(s);
}
function bytesOf(q: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q));
  if (!m) throw new Error(`quantity ${q}`);
  const unit: Record<string, number> = {
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  return Number(m[1]) * (m[2] ? unit[m[2]] : 1);
}

/** The container's environment as the kubelet builds it: envFrom, then env with $(VAR) expanded. */
function containerEnv(objs: K8sObject[], c: Any): { env: Record<string, string>; names: string[] } {
  const env: Record<string, string> = {};
  const names: string[] = [];
  for (const ef of c.envFrom ?? []) {
    if (ef.configMapRef) {
      const cm = find(objs, 'ConfigMap', ef.configMapRef.name);
      if (!cm && !ef.configMapRef.optional) throw new Error(`envFrom: no ConfigMap ${ef.configMapRef.name}`);
      for (const [k, v] of Object.entries((cm?.data ?? {}) as Record<string, string>)) {
        env[k] = v;
        names.push(k);
      }
    } else {
      throw new Error(`envFrom ${JSON.stringify(ef)}: only ConfigMaps are expected`);
    }
  }
  for (const e of c.env ?? []) {
    let v: string;
    if (typeof e.value === 'string') {
      v = e.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m: string, n: string) => env[n] ?? m);
    } else if (e.valueFrom?.fieldRef) {
      const f = e.valueFrom.fieldRef.fieldPath;
      v =
        f === 'metadata.name'
          ? POD.name
          : f === 'status.podIP'
            ? POD.ip
            : f === 'metadata.namespace'
              ? NAMESPACE
              : `<${f}>`;
    } else if (e.valueFrom?.configMapKeyRef) {
      const r = e.valueFrom.configMapKeyRef;
      v = find(objs, 'ConfigMap', r.name)?.data?.[r.key];
      if (v === undefined) throw new Error(`env ${e.name}: no key ${r.key} in ConfigMap ${r.name}`);
    } else {
      v = '<from elsewhere>';
    }
    env[e.name] = v;
    names.push(e.name);
  }
  return { env, names };
}

// RMT_* variables the code reads besides flags (log format and level, wasm threads, ...).
const RUNTIME_ENV = (() => {
  const found = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(at(dir), { withFileTypes: true })) {
      const p = posix.join(dir, e.name);
      if (e.isDirectory()) {
        if (p !== 'shared/rpc/gen') walk(p);
      } else if (p.endsWith('.ts')) {
        for (const m of read(p).matchAll(/\b(?:process\.env|env)\.(RMT_[A-Z0-9_]+)/g)) found.add(m[1]);
      }
    }
  };
  walk('shared');
  walk('services');
  return found;
})();

// --- the services' flags ------------------------------------------------------------------------

const SCHEMAS: Record<Service, FlagSchema> = {
  scorer: SCORER_FLAGS,
  rollout: ROLLOUT_FLAGS,
  learner: LEARNER_FLAGS,
  coordinator: COORDINATOR_FLAGS,
};

const envNamesOf = (schema: FlagSchema) => new Set(Object.entries(schema).map(([n, s]) => envName(n, s)));

// Flags whose value is a file the process reads (camelCase, as parsed).
const FILE_FLAGS = [
  'tlsCert',
  'tlsKey',
  'tlsCa',
  'peerTlsCa',
  'peerTlsCert',
  'peerTlsKey',
  'busCreds',
  'busTlsCa',
  'busTlsCert',
  'busTlsKey',
] as const;

/** A Service address host:port -> the workloads behind it and the container port it leads to. */
function resolveAddress(objs: K8sObject[], address: string): { svc: Any; pods: Any[]; port: number } {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).split('.')[0];
  const port = Number(address.slice(i + 1));
  const svc = find(objs, 'Service', host);
  if (!svc) throw new Error(`${address}: no Service ${host}`);
  const sp = svc.spec.ports.find((p: Any) => p.port === port);
  if (!sp) throw new Error(`${address}: Service ${host} has no port ${port}`);
  const pods = workloads(objs).filter((w) => selects(svc.spec.selector, podLabels(w)));
  if (pods.length === 0) throw new Error(`${address}: Service ${host} selects no pods`);
  const target = sp.targetPort ?? sp.port;
  const ports = new Set<number>();
  for (const w of pods) {
    const cps = podSpec(w).containers.flatMap((c: Any) => c.ports ?? []);
    const cp = cps.find((p: Any) =>
      typeof target === 'string' ? p.name === target : p.containerPort === target,
    );
    if (!cp) throw new Error(`${address}: targetPort ${target} is no container port of ${w.metadata.name}`);
    ports.add(cp.containerPort);
  }
  if (ports.size !== 1) throw new Error(`${address}: leads to several ports`);
  return { svc, pods, port: [...ports][0] };
}

/** resolveAddress, failing the test with its message instead of throwing. */
function leadsTo(t: ExecutionContext, objs: K8sObject[], address: string, where: string) {
  try {
    return resolveAddress(objs, address);
  } catch (e) {
    t.fail(`${where}: ${(e as Error).message}`);
    return { svc: undefined, pods: [] as Any[], port: -1 };
  }
}

interface Effective {
  w: Any;
  c: Any;
  service: Service;
  flags: Record<string, Any>;
}

function effective(t: ExecutionContext, target: Target, objs: K8sObject[]): Effective[] {
  const sch = SCHEMAS;
  const out: Effective[] = [];
  for (const { w, c, service } of rmtContainers(objs)) {
    const where = `${target}: ${w.metadata.name}/${c.name}`;
    const { env, names } = containerEnv(objs, c);
    const known = envNamesOf(sch[service]);
    for (const n of names) {
      if (n.startsWith('RMT_') && !known.has(n) && !RUNTIME_ENV.has(n)) {
        t.fail(`${where}: ${n} is neither a flag of \`rmt serve ${service}\` nor read by the code`);
      }
      if (env[n].includes('$('))
        t.fail(`${where}: ${n}=${env[n]} refers to a variable not defined before it`);
    }
    try {
      out.push({ w, c, service, flags: parseServiceFlags(sch[service], c.args.slice(1), env) });
    } catch (e) {
      t.fail(`${where}: ${(e as Error).message}`);
    }
  }
  return out;
}

// --- rendering and API validation ---------------------------------------------------------------

function kubectl(): string | null {
  const r = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  return r.status === 0 ? 'kubectl' : null;
}

test('k8s/base and every overlay render', (t) => {
  for (const target of TARGETS) {
    const objs = render(target);
    t.true(objs.length > 20, target);
    for (const kind of ['Deployment', 'Service', 'StatefulSet', 'ConfigMap', 'PersistentVolumeClaim']) {
      t.true(byKind(objs, kind).length > 0, `${target}: no ${kind}`);
    }
    if (target !== 'base') {
      for (const o of objs) t.is(o.metadata.namespace, NAMESPACE, `${target}: ${keyOf(o)}`);
    }
  }
});

(kubectl() ? test : test.skip)(
  'test/helpers/kustomize.ts renders what `kubectl kustomize` renders (needs kubectl: install it from the Kubernetes apt repository or as a release binary)',
  (t) => {
    for (const target of TARGETS) {
      const out = execFileSync('kubectl', ['kustomize', dirOf(target)], { encoding: 'utf8' });
      const theirs = new Map(
        parseAllDocuments(out).map((d) => {
          const o = d.toJS() as K8sObject;
          return [keyOf(o), o];
        }),
      );
      const mine = new Map(render(target).map((o) => [keyOf(o), o]));
      t.deepEqual([...mine.keys()].sort(), [...theirs.keys()].sort(), target);
      for (const [k, o] of mine) t.true(isDeepStrictEqual(o, theirs.get(k)), `${target}: ${k} differs`);
    }
  },
);

const requireCjs = createRequire(import.meta.url);
const isCustom = (o: K8sObject) => o.apiVersion.startsWith('monitoring.coreos.com/');

test('every object validates against the Kubernetes 1.27 API types (kubernetes-models), unknown fields included', (t) => {
  const all: { where: string; o: K8sObject }[] = [];
  for (const target of TARGETS) for (const o of render(target)) all.push({ where: target, o });
  for (const o of extras()) all.push({ where: 'k8s/tools, k8s/monitoring', o });
  // Required fields, types and formats: the models' validators.
  for (const { where, o } of all) {
    if (isCustom(o)) continue;
    const mod = requireCjs(`kubernetes-models/${o.apiVersion}/${o.kind}`) as Record<
      string,
      new (
        d: unknown,
      ) => { validate(): void }
    >;
    try {
      new mod[o.kind](o).validate();
    } catch (e) {
      t.fail(`${where}: ${keyOf(o)}: ${(e as Error).message}`);
    }
  }
  // Unknown fields: the validators let them through, so type-check the objects as object literals
  // against the models' TypeScript types (excess property checks), in memory.
  const file = at('test/__k8s_objects__.ts');
  const lines: string[] = [];
  const whereAt: string[] = [];
  all.forEach(({ where, o }, i) => {
    if (isCustom(o)) return;
    lines.push(`import type { I${o.kind} as T${i} } from 'kubernetes-models/${o.apiVersion}/${o.kind}';`);
    whereAt.push('');
    lines.push(`export const o${i}: T${i} = ${JSON.stringify(o)};`);
    whereAt.push(`${where}: ${keyOf(o)}`);
  });
  const src = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2022.d.ts'],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (f, lang, ...rest) =>
    resolve(f) === file ? ts.createSourceFile(f, src, lang) : getSourceFile(f, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (f) => resolve(f) === file || fileExists(f);
  const readFile = host.readFile.bind(host);
  host.readFile = (f) => (resolve(f) === file ? src : readFile(f));
  const program = ts.createProgram([file], options, host);
  const diags = ts.getPreEmitDiagnostics(program);
  for (const d of diags) {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    t.fail(`${whereAt[line] ?? '?'}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n').slice(0, 400)}`);
  }
  t.true(all.length > 100);
});

// --- the services' flags, ports and addresses ---------------------------------------------------

test('rmt containers: flags and RMT_* variables the services accept, probes on the ports they listen on, addresses that lead to the right pods', async (t) => {
  for (const target of TARGETS) {
    const objs = render(target);
    const eff = effective(t, target, objs);
    t.deepEqual([...new Set(eff.map((e) => e.service))].sort(), [...SERVICES].sort(), target);
    const grpcPort = (s: Service) => eff.find((e) => e.service === s)!.flags.port as number;
    for (const { w, c, service, flags } of eff) {
      const where = `${target}: ${w.metadata.name}/${c.name}`;
      t.true(
        ['0.0.0.0', '::'].includes(flags.host),
        `${where}: --host ${flags.host}: the services listen on loopback unless the manifest says --host=0.0.0.0 (probes and peers come from outside)`,
      );
      const ports = new Map<string, number>((c.ports ?? []).map((p: Any) => [p.name, p.containerPort]));
      t.is(ports.get('grpc'), flags.port, `${where}: container port "grpc" is not --port`);
      t.is(
        ports.get('metrics'),
        flags.metricsPort,
        `${where}: container port "metrics" is not --metrics-port`,
      );
      for (const kind of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        const p = c[kind];
        if (!p) {
          t.fail(`${where}: no ${kind}`);
          continue;
        }
        if (p.grpc) {
          t.is(
            p.grpc.port,
            flags.port,
            `${where}: ${kind} checks port ${p.grpc.port}, the service listens on ${flags.port}`,
          );
          t.true(!p.grpc.service, `${where}: ${kind}: the health service reports the overall status as ""`);
        } else if (p.httpGet) {
          const port = typeof p.httpGet.port === 'string' ? ports.get(p.httpGet.port) : p.httpGet.port;
          t.is(port, flags.metricsPort, `${where}: ${kind} is not on the metrics port`);
          t.true(
            ['/healthz', '/readyz'].includes(p.httpGet.path),
            `${where}: ${kind} path ${p.httpGet.path}`,
          );
        } else t.fail(`${where}: ${kind} is neither gRPC health nor /healthz`);
        if (flags.tlsCert && p.grpc) t.fail(`${where}: the kubelet's gRPC probe cannot speak TLS`);
      }
      const ann = w.spec.template?.metadata?.annotations;
      if (ann?.['prometheus.io/port']) t.is(Number(ann['prometheus.io/port']), flags.metricsPort, where);
      // The bus: a NATS Service whose pods listen where it leads.
      for (const server of String(flags.bus).split(',')) {
        const m = /^(?:nats|tls):\/\/(.+)$/.exec(server);
        t.truthy(m, `${where}: --bus ${flags.bus}`);
        const r = leadsTo(t, objs, m![1], where);
        t.deepEqual(r.pods.map(component), ['nats'], `${where}: --bus leads to ${r.pods.map(component)}`);
        t.is(r.port, 4222, `${where}: --bus leads to NATS port ${r.port}, not the client port`);
      }
      // Where others reach it.
      if (service === 'rollout') {
        t.is(
          flags.advertise,
          `${POD.ip}:${flags.port}`,
          `${where}: --advertise must be the pod IP and --port`,
        );
        t.is(flags.workerId, POD.name, `${where}: --worker-id should be the pod name`);
      } else {
        const r = leadsTo(t, objs, flags.advertise, where);
        t.deepEqual(
          r.pods.map((p) => p.metadata.name),
          [w.metadata.name],
          `${where}: --advertise`,
        );
        t.is(r.port, flags.port, `${where}: --advertise leads to ${r.port}`);
      }
      const dials: [string, Service][] =
        service === 'coordinator'
          ? [
              [flags.scorer, 'scorer'],
              [flags.learner, 'learner'],
            ]
          : service === 'rollout'
            ? [[flags.learner, 'learner']]
            : [];
      for (const [address, to] of dials) {
        const r = leadsTo(t, objs, address, where);
        t.deepEqual(r.pods.map(component), [to], `${where}: ${address} leads to ${r.pods.map(component)}`);
        t.is(
          r.port,
          grpcPort(to),
          `${where}: ${address} leads to port ${r.port}, ${to} listens on ${grpcPort(to)}`,
        );
      }
    }
    // Files the flags name (credentials, certificates, keys) are keys of the Secrets and ConfigMaps
    // mounted there, and no service reads one from an optional Secret: without it the service would
    // crash at start instead of the pod waiting for the Secret.
    for (const { w, c, flags } of eff) {
      checkFiles(t, objs, w, c, flags, `${target}: ${w.metadata.name}/${c.name}`);
    }
    // The bus: one replica count of the RMT stream for every service, one replica per NATS server.
    const sts = find(objs, 'StatefulSet', 'rmt-nats');
    const replicas = [...new Set(eff.map((e) => e.flags.busReplicas as number))];
    t.is(replicas.length, 1, `${target}: the services disagree on RMT_BUS_REPLICAS: ${replicas.join(', ')}`);
    t.is(
      replicas[0],
      sts.spec.replicas,
      `${target}: RMT_BUS_REPLICAS ${replicas[0]} for ${sts.spec.replicas} NATS servers`,
    );
    // The bus credentials reach every service: its own user's creds file, from Secret rmt-bus-creds
    // as k8s/tools/nats-auth.ts writes it (the live check is in the NATS authentication test).
    for (const { w, c, service, flags } of eff) {
      const where = `${target}: ${w.metadata.name}/${c.name}`;
      if (!/^(nats|tls):\/\//.test(flags.bus)) continue;
      t.truthy(flags.busCreds, `${where}: connects to NATS without credentials (RMT_BUS_CREDS)`);
      const src = fileSource(w, c, flags.busCreds ?? '');
      t.is(
        src?.secret,
        'rmt-bus-creds',
        `${where}: --bus-creds ${flags.busCreds} is not from Secret rmt-bus-creds`,
      );
      t.is(src?.key, `${service}.creds`, `${where}: --bus-creds should be the ${service} user's own`);
      t.true(
        (DEFAULT_USERS as readonly string[]).includes(service),
        `${where}: k8s/tools/nats-auth.ts writes no ${service}.creds`,
      );
    }
    t.is(
      new Set(eff.map((e) => e.flags.busTlsCa !== undefined)).size,
      1,
      `${target}: some services reach NATS over TLS, others do not`,
    );
    // TLS between the services: whoever calls a service that serves TLS verifies it, and whoever
    // verifies calls only services that serve TLS (one --peer-tls-ca per process).
    const flagsOf = (s: Service) => eff.find((e) => e.service === s)!.flags;
    const calls: [Service, Service][] = [
      ['coordinator', 'scorer'],
      ['coordinator', 'learner'],
      ['coordinator', 'rollout'],
      ['rollout', 'learner'],
    ];
    for (const [from, to] of calls) {
      t.is(
        flagsOf(from).peerTlsCa !== undefined,
        flagsOf(to).tlsCert !== undefined,
        `${target}: ${from} -> ${to}: ${flagsOf(to).tlsCert ? 'TLS' : 'plaintext'} server, ${flagsOf(from).peerTlsCa ? 'TLS' : 'plaintext'} client`,
      );
      if (flagsOf(to).tlsCa)
        t.truthy(flagsOf(from).peerTlsCert, `${target}: ${to} wants client certificates from ${from}`);
    }
    // The run starter (`rmt submit`): its flags, its coordinator address, TLS as the coordinator serves it.
    const job = find(objs, 'CronJob', 'rmt-start-run');
    const jc = podSpec(job).containers[0];
    t.deepEqual(jc.command, ['node', 'bin/rmt.js', 'submit'], `${target}: rmt-start-run runs \`rmt submit\``);
    const { env, names } = containerEnv(objs, jc);
    const known = envNamesOf(SUBMIT_FLAGS);
    for (const n of names) if (n.startsWith('RMT_')) t.true(known.has(n), `${target}: rmt-start-run: ${n}`);
    const f = parseServiceFlags(SUBMIT_FLAGS, jc.args, env);
    const r = leadsTo(t, objs, f.coordinator, `${target}: rmt-start-run`);
    t.deepEqual(r.pods.map(component), ['coordinator'], `${target}: rmt-start-run --coordinator`);
    t.is(r.port, grpcPort('coordinator'));
    checkFiles(t, objs, job, jc, f, `${target}: rmt-start-run`);
    const coordinator = flagsOf('coordinator');
    t.is(
      f.tlsCa !== undefined,
      coordinator.tlsCert !== undefined,
      `${target}: rmt-start-run ${f.tlsCa ? 'speaks' : 'does not speak'} TLS, the coordinator ${coordinator.tlsCert ? 'serves TLS' : 'is plaintext'}`,
    );
    if (coordinator.tlsCa) t.truthy(f.tlsCert, `${target}: the coordinator wants a client certificate`);
    // Every Service leads to container ports of the pods it selects.
    for (const svc of byKind(objs, 'Service')) {
      for (const p of svc.spec.ports) {
        try {
          resolveAddress(objs, `${svc.metadata.name}:${p.port}`);
        } catch (e) {
          t.fail(`${target}: ${(e as Error).message}`);
        }
      }
    }
  }
});

// --- volumes and paths --------------------------------------------------------------------------

function mountFor(w: Any, c: Any, path: string): { m: Any; v: Any } | undefined {
  const ms = (c.volumeMounts ?? []).filter(
    (m: Any) => path === m.mountPath || path.startsWith(`${m.mountPath.replace(/\/$/, '')}/`),
  );
  const m = ms.sort((a: Any, b: Any) => b.mountPath.length - a.mountPath.length)[0];
  if (!m) return undefined;
  const v = [
    ...(podSpec(w).volumes ?? []),
    ...(w.spec?.volumeClaimTemplates ?? []).map((p: Any) => ({ name: p.metadata.name, claimTemplate: p })),
  ].find((x: Any) => x.name === m.name);
  return { m, v };
}

/** The Secret or ConfigMap key behind a file a container reads, through its volume mounts. */
function fileSource(
  w: Any,
  c: Any,
  path: string,
): { secret?: string; configMap?: string; key: string; optional: boolean } | undefined {
  const hit = mountFor(w, c, path);
  const src = hit?.v?.secret ?? hit?.v?.configMap;
  if (!src) return undefined;
  const rel = posix.relative(hit!.m.mountPath, path);
  let key = rel;
  if (src.items) {
    const item = src.items.find((i: Any) => i.path === rel);
    if (!item) return undefined;
    key = item.key;
  } else if (rel.includes('/')) return undefined;
  const optional = src.optional === true;
  return hit!.v.secret ? { secret: src.secretName, key, optional } : { configMap: src.name, key, optional };
}

/** The file flags of a container: each on a Secret or ConfigMap key, none from an optional Secret. */
function checkFiles(
  t: ExecutionContext,
  objs: K8sObject[],
  w: Any,
  c: Any,
  flags: Record<string, Any>,
  where: string,
) {
  for (const ff of FILE_FLAGS) {
    const path = flags[ff];
    if (path === undefined) continue;
    const flag = `--${ff.replace(/[A-Z]/g, (m) => `-${m.toLowerCase()}`)}`;
    const src = fileSource(w, c, path);
    if (!src) {
      t.fail(`${where}: ${flag} ${path} is on no Secret or ConfigMap key`);
      continue;
    }
    if (src.configMap)
      t.truthy(
        find(objs, 'ConfigMap', src.configMap)?.data?.[src.key],
        `${where}: ${flag}: no key ${src.key}`,
      );
    t.false(src.optional, `${where}: ${flag} reads ${path} from an optional Secret (${src.secret})`);
  }
}

test('volumes and paths: init_from on the read-only models volume, out_dir on a claim of each service that writes it', async (t) => {
  for (const target of TARGETS) {
    const objs = render(target);
    const cm = find(objs, 'ConfigMap', 'rmt-run');
    t.truthy(cm?.data?.['run.yaml'], `${target}: ConfigMap rmt-run has no run.yaml`);
    const cfg = parseTrainConfig(parse(cm.data['run.yaml']), `${target}: rmt-run`);
    const eff = effective(t, target, objs);
    const of = (s: Service) => eff.find((e) => e.service === s)!;
    // model.init_from: read by the scorer, the learner and the workers.
    for (const s of ['scorer', 'learner', 'rollout'] as const) {
      const { w, c } = of(s);
      const hit = mountFor(w, c, cfg.model.init_from);
      t.truthy(hit, `${target}: ${s} does not mount model.init_from (${cfg.model.init_from})`);
      t.true(hit?.m.readOnly === true, `${target}: ${s} should mount the models read-only`);
      t.is(hit?.v.persistentVolumeClaim?.claimName, 'rmt-models', `${target}: ${s}`);
    }
    // run.out_dir: written by the scorer (data/), the learner (checkpoints) and the coordinator.
    const claims = new Map<string, string>();
    for (const s of ['scorer', 'learner', 'coordinator'] as const) {
      const { w, c } = of(s);
      const hit = mountFor(w, c, cfg.run.out_dir);
      t.truthy(hit, `${target}: ${s} does not mount run.out_dir (${cfg.run.out_dir})`);
      t.not(hit?.m.readOnly, true, `${target}: ${s} writes under run.out_dir`);
      const claim = hit?.v.persistentVolumeClaim?.claimName;
      t.truthy(claim, `${target}: ${s} keeps run.out_dir on a volume that dies with the pod`);
      t.truthy(find(objs, 'PersistentVolumeClaim', claim), `${target}: no claim ${claim}`);
      t.false(claims.has(claim), `${target}: ${s} and ${claims.get(claim)} share ${claim}`);
      claims.set(claim, s);
    }
    t.is(claims.get('rmt-learner-checkpoints'), 'learner', `${target}: the learner's checkpoint claim`);
    t.is(
      mountFor(of('rollout').w, of('rollout').c, cfg.run.out_dir),
      undefined,
      'workers write nothing there',
    );
    // Every claim, ConfigMap and Secret a pod names exists (or is optional).
    for (const w of workloads(objs)) {
      for (const v of podSpec(w).volumes ?? []) {
        if (v.persistentVolumeClaim)
          t.truthy(
            find(objs, 'PersistentVolumeClaim', v.persistentVolumeClaim.claimName),
            `${target}: ${w.metadata.name}: claim ${v.persistentVolumeClaim.claimName}`,
          );
        if (v.configMap)
          t.truthy(
            find(objs, 'ConfigMap', v.configMap.name),
            `${target}: ${w.metadata.name}: ConfigMap ${v.configMap.name}`,
          );
        // A Secret may come from outside the manifests (credentials never go into the repository):
        // then it is optional, or the guide creates it.
        if (v.secret)
          t.true(
            v.secret.optional === true ||
              !!find(objs, 'Secret', v.secret.secretName) ||
              guideSecrets().has(v.secret.secretName),
            `${target}: ${w.metadata.name}: Secret ${v.secret.secretName} is not optional, not in the manifests and not created by docs/kubernetes.md`,
          );
        // ...with the keys the pod mounts.
        for (const item of v.secret?.items ?? []) {
          const guide = guideSecrets().get(v.secret.secretName);
          if (guide)
            t.true(
              guide.has(item.key),
              `${target}: ${w.metadata.name}: docs/kubernetes.md creates Secret ${v.secret.secretName} without key ${item.key}`,
            );
        }
      }
      for (const c of podSpec(w).containers) {
        for (const m of c.volumeMounts ?? []) {
          t.truthy(
            mountFor(w, c, m.mountPath)?.v,
            `${target}: ${w.metadata.name}/${c.name} mounts unknown volume ${m.name}`,
          );
        }
      }
    }
    // ReadWriteOnce claims: one pod at a time, so Recreate and one replica.
    for (const d of byKind(objs, 'Deployment')) {
      const rwo = (podSpec(d).volumes ?? []).some((v: Any) => {
        if (!v.persistentVolumeClaim || v.persistentVolumeClaim.readOnly) return false;
        return find(
          objs,
          'PersistentVolumeClaim',
          v.persistentVolumeClaim.claimName,
        )?.spec.accessModes.includes('ReadWriteOnce');
      });
      if (rwo) {
        t.is(d.spec.strategy?.type, 'Recreate', `${target}: ${d.metadata.name} has a ReadWriteOnce volume`);
        t.is(d.spec.replicas, 1, `${target}: ${d.metadata.name} has a ReadWriteOnce volume`);
      }
    }
    // The models volume is mounted on many nodes at once (any worker anywhere), except in dev.
    const modes = find(objs, 'PersistentVolumeClaim', 'rmt-models').spec.accessModes;
    if (overlayOf(target) === 'dev') t.deepEqual(modes, ['ReadWriteOnce']);
    else
      t.true(
        modes.includes('ReadWriteMany') || modes.includes('ReadOnlyMany'),
        `${target}: rmt-models ${modes}`,
      );
    // The run starter reads the config where the ConfigMap is mounted.
    const job = find(objs, 'CronJob', 'rmt-start-run');
    const jc = podSpec(job).containers[0];
    const f = parseServiceFlags(SUBMIT_FLAGS, jc.args, containerEnv(objs, jc).env);
    const hit = mountFor(job, jc, f.config);
    t.is(hit?.v.configMap?.name, 'rmt-run', `${target}: --config ${f.config} is not in ConfigMap rmt-run`);
    t.is(relative(hit!.m.mountPath, f.config), 'run.yaml');
  }
});

// --- workloads ----------------------------------------------------------------------------------

test('workloads: requests and limits, non-root read-only containers, grace periods that cover the shutdown', async (t) => {
  const deadline = /timeoutMs:\s*([\d_]+)/.exec(read('services/process.ts'));
  t.truthy(deadline, 'services/process.ts: the shutdown deadline (timeoutMs) not found');
  const deadlineS = Number(deadline![1].replace(/_/g, '')) / 1000;
  for (const target of TARGETS) {
    const objs = render(target);
    const rmt = new Set(rmtContainers(objs).map(({ w }) => w));
    for (const w of workloads(objs)) {
      const spec = podSpec(w);
      const where = `${target}: ${w.metadata.name}`;
      t.is(spec.automountServiceAccountToken, false, `${where}: mounts a service account token`);
      t.true(
        spec.securityContext?.runAsNonRoot === true && spec.securityContext.runAsUser > 0,
        `${where}: runs as root`,
      );
      if (rmt.has(w)) {
        t.true(
          spec.terminationGracePeriodSeconds > deadlineS,
          `${where}: grace period <= the ${deadlineS} s shutdown deadline`,
        );
        t.true(
          spec.terminationGracePeriodSeconds <= deadlineS + 60,
          `${where}: grace period much longer than needed`,
        );
      }
      for (const c of spec.containers) {
        const cw = `${where}/${c.name}`;
        const r = c.resources ?? {};
        for (const res of ['cpu', 'memory']) {
          t.truthy(r.requests?.[res], `${cw}: no ${res} request`);
          t.truthy(r.limits?.[res], `${cw}: no ${res} limit`);
        }
        t.true(cpuOf(r.requests.cpu) <= cpuOf(r.limits.cpu), `${cw}: cpu request > limit`);
        t.true(bytesOf(r.requests.memory) <= bytesOf(r.limits.memory), `${cw}: memory request > limit`);
        const sc = c.securityContext ?? {};
        t.is(sc.allowPrivilegeEscalation, false, cw);
        t.is(sc.readOnlyRootFilesystem, true, cw);
        t.deepEqual(sc.capabilities?.drop, ['ALL'], cw);
        if (c.image.startsWith('rmt') || c.image.includes('/rmt')) {
          const tmp = mountFor(w, c, '/tmp/x');
          t.truthy(tmp?.v.emptyDir, `${cw}: /tmp must be writable (tsx's cache)`);
          const threads = (c.env ?? []).find((e: Any) => e.name === 'RMT_WASM_THREADS')?.value;
          if (threads)
            t.true(Number(threads) <= cpuOf(r.limits.cpu), `${cw}: RMT_WASM_THREADS ${threads} > cpu limit`);
        }
      }
    }
    // One learner, never autoscaled.
    t.is(find(objs, 'Deployment', 'rmt-learner').spec.replicas, 1, target);
    for (const h of byKind(objs, 'HorizontalPodAutoscaler')) t.not(h.spec.scaleTargetRef.name, 'rmt-learner');
  }
});

test('rollout workers: an autoscaler that owns their count, disruption budgets that select pods', (t) => {
  for (const target of TARGETS) {
    const objs = render(target);
    const hpas = byKind(objs, 'HorizontalPodAutoscaler');
    t.is(hpas.length, 1, target);
    const h = hpas[0];
    const d = find(objs, h.spec.scaleTargetRef.kind, h.spec.scaleTargetRef.name);
    t.truthy(d, `${target}: the autoscaler targets nothing`);
    t.is(component(d), 'rollout', target);
    t.is(d.spec.replicas, undefined, `${target}: rmt-rollout sets replicas, which every apply would reset`);
    t.true(h.spec.minReplicas >= 1 && h.spec.minReplicas <= h.spec.maxReplicas, target);
    // CPU by default; the queue (an external metric of k8s/monitoring/prometheus-adapter.yaml) only
    // with k8s/components/queue-autoscaling.
    const external = adapterExternalMetrics();
    t.deepEqual(
      h.spec.metrics.map((m: Any) => m.type),
      componentsOf(target).includes('queue-autoscaling') ? ['External'] : ['Resource'],
      target,
    );
    for (const m of h.spec.metrics) {
      if (m.type === 'Resource') {
        for (const c of podSpec(d).containers)
          t.truthy(c.resources?.requests?.[m.resource.name], `${target}: utilization needs requests`);
      } else if (m.type === 'External') {
        t.true(
          external.has(m.external.metric.name),
          `${target}: prometheus-adapter.yaml serves no external metric ${m.external.metric.name}`,
        );
        t.is(m.external.target.type, 'AverageValue', `${target}: a queue length is shared by the workers`);
      } else t.fail(`${target}: metric type ${m.type}`);
    }
    const pdbs = byKind(objs, 'PodDisruptionBudget');
    t.deepEqual(pdbs.map((p) => p.metadata.name).sort(), ['rmt-nats', 'rmt-rollout'], target);
    for (const p of pdbs) {
      const sel = workloads(objs).filter((w) => selects(p.spec.selector.matchLabels, podLabels(w)));
      t.is(sel.length, 1, `${target}: PDB ${p.metadata.name} selects ${sel.length} workloads`);
      t.true(p.spec.maxUnavailable !== undefined || p.spec.minAvailable !== undefined);
    }
    t.is(
      component(
        workloads(objs).find((w) =>
          selects(find(objs, 'PodDisruptionBudget', 'rmt-rollout').spec.selector.matchLabels, podLabels(w)),
        ),
      ),
      'rollout',
    );
  }
});

// --- network policies ---------------------------------------------------------------------------

test('network policies: only the services that must talk can', async (t) => {
  for (const target of TARGETS) {
    const objs = render(target);
    const pods = workloads(objs);
    const policies = byKind(objs, 'NetworkPolicy');
    const deny = policies.find(
      (p) =>
        Object.keys(p.spec.podSelector).length === 0 &&
        p.spec.policyTypes.includes('Ingress') &&
        !p.spec.ingress,
    );
    t.truthy(deny, `${target}: no default-deny ingress policy`);
    // What the policies allow, as "from -> to:port" ("*" = anyone in the cluster).
    const allowed = new Set<string>();
    for (const p of policies) {
      t.deepEqual(p.spec.policyTypes, ['Ingress'], `${target}: ${p.metadata.name}`);
      const targets = pods.filter((w) => selects(p.spec.podSelector.matchLabels, podLabels(w)));
      for (const rule of p.spec.ingress ?? []) {
        const froms: string[] = [];
        for (const peer of rule.from ?? [{ namespaceSelector: {} }]) {
          if (peer.namespaceSelector && !peer.podSelector) froms.push('*');
          else if (peer.podSelector && !peer.namespaceSelector) {
            const src = pods.filter((w) => selects(peer.podSelector.matchLabels, podLabels(w)));
            t.true(src.length > 0, `${target}: ${p.metadata.name}: a peer selects no pods`);
            froms.push(...src.map(component));
          } else t.fail(`${target}: ${p.metadata.name}: peer ${JSON.stringify(peer)}`);
        }
        for (const to of targets) {
          const cps = podSpec(to).containers.flatMap((c: Any) => c.ports ?? []);
          for (const port of rule.ports ?? []) {
            const cp = cps.find((x: Any) => x.containerPort === port.port || x.name === port.port);
            t.truthy(
              cp,
              `${target}: ${p.metadata.name}: port ${port.port} is no container port of ${to.metadata.name}`,
            );
            for (const f of froms) allowed.add(`${f} -> ${component(to)}:${cp?.containerPort}`);
          }
        }
      }
    }
    // What must be allowed: every connection the manifests configure, derived from them.
    const eff = effective(t, target, objs);
    const port = (s: Service) => eff.find((e) => e.service === s)!.flags.port as number;
    const needed = new Set<string>([
      `coordinator -> scorer:${port('scorer')}`,
      `coordinator -> learner:${port('learner')}`,
      `rollout -> learner:${port('learner')}`,
      // The coordinator dials the address in each worker's heartbeat.
      `coordinator -> rollout:${port('rollout')}`,
      `client -> coordinator:${port('coordinator')}`,
      ...SERVICES.map((s) => `${s} -> nats:4222`),
    ]);
    if (find(objs, 'ConfigMap', 'rmt-nats-config').data['nats.conf'].includes('cluster {'))
      needed.add('nats -> nats:6222');
    for (const { service, flags } of eff) needed.add(`* -> ${service}:${flags.metricsPort}`);
    needed.add('* -> nats:8222');
    const missing = [...needed].filter((e) => !allowed.has(e));
    const extra = [...allowed].filter((e) => !needed.has(e) && e !== 'nats -> nats:6222');
    t.deepEqual(missing, [], `${target}: connections the services need but the policies block`);
    t.deepEqual(extra, [], `${target}: connections the policies allow but nothing needs`);
  }
});

// --- overlays -----------------------------------------------------------------------------------

test('overlays: GPUs only for the learner and workers on gpu, none on cpu, one replica of everything on dev', (t) => {
  for (const target of TARGETS.filter((x) => x !== 'base')) {
    const overlay = overlayOf(target);
    const objs = render(target);
    const images = new Set<string>();
    for (const w of workloads(objs)) {
      for (const c of podSpec(w).containers) {
        t.regex(
          c.image,
          /:[A-Za-z0-9_.-]+$|@sha256:/,
          `${target}: ${w.metadata.name}: image ${c.image} has no tag`,
        );
        t.false(c.image.endsWith(':latest'), `${target}: ${c.image}`);
        const gpus = c.resources?.limits?.['nvidia.com/gpu'];
        const onGpu = overlay === 'gpu' && ['learner', 'rollout'].includes(component(w));
        t.is(
          gpus !== undefined,
          onGpu,
          `${target}: ${w.metadata.name} ${onGpu ? 'needs' : 'must not take'} a GPU`,
        );
      }
    }
    for (const { c } of rmtContainers(objs)) images.add(c.image);
    images.add(podSpec(find(objs, 'CronJob', 'rmt-start-run')).containers[0].image);
    t.is(images.size, 1, `${target}: the services and rmt-start-run run one image: ${[...images]}`);
    for (const { w, service, flags } of effective(t, target, objs)) {
      if (!('backend' in flags)) continue;
      const onGpu = overlay === 'gpu' && service !== 'scorer';
      t.is(flags.backend === 'webgpu', onGpu, `${target}: ${service} --backend ${flags.backend}`);
      if (onGpu) {
        const spec = podSpec(w);
        t.true(Object.keys(spec.nodeSelector ?? {}).length > 0, `${target}: ${service}: no nodeSelector`);
        t.true(
          (spec.tolerations ?? []).some((x: Any) => x.key === 'nvidia.com/gpu'),
          `${target}: ${service}: no GPU toleration`,
        );
        const caps =
          spec.containers[0].env.find((e: Any) => e.name === 'NVIDIA_DRIVER_CAPABILITIES')?.value ?? '';
        t.true(
          caps.split(',').includes('graphics'),
          `${target}: ${service}: Vulkan needs the graphics capability`,
        );
      }
    }
    if (overlay === 'dev') {
      for (const w of byKind(objs, 'Deployment').concat(byKind(objs, 'StatefulSet'))) {
        if (w.metadata.name === 'rmt-rollout') continue;
        t.is(w.spec.replicas, 1, `dev: ${w.metadata.name}`);
      }
      const h = find(objs, 'HorizontalPodAutoscaler', 'rmt-rollout');
      t.deepEqual([h.spec.minReplicas, h.spec.maxReplicas], [1, 1], 'dev: one rollout worker');
    }
  }
});

// --- NATS ---------------------------------------------------------------------------------------

/** The NATS container, its config file path and the configuration text (from its ConfigMap). */
function natsConfig(objs: K8sObject[]): { sts: Any; c: Any; cfgPath: string; conf: string } {
  const sts = find(objs, 'StatefulSet', 'rmt-nats');
  const c = podSpec(sts).containers[0];
  const cfgPath: string = c.command[c.command.indexOf('--config') + 1];
  const src = fileSource(sts, c, cfgPath);
  const conf: string = find(objs, 'ConfigMap', src?.configMap ?? '')?.data?.[src?.key ?? ''];
  return { sts, c, cfgPath, conf };
}

/** Absolute paths of the files nats.conf includes (include paths are relative to it). */
const includesOf = (conf: string, cfgPath: string) =>
  [...conf.matchAll(/^\s*include\s+"?([^"\s]+)"?/gm)].map((m) => posix.resolve(posix.dirname(cfgPath), m[1]));

// A throwaway CA and one certificate for rmt-nats, rmt-coordinator, localhost and 127.0.0.1 (what the
// guide's certificate names, plus the loopback the tests connect to); null without openssl.
let certs: { dir: string; files: Record<'ca.crt' | 'tls.crt' | 'tls.key', string> } | null | undefined;
function testCerts(): typeof certs {
  if (certs !== undefined) return certs;
  const dir = mkdtempSync(join(tmpdir(), 'rmt-k8s-certs-'));
  tempDirs.push(dir);
  const ssl = (...args: string[]) => spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  writeFileSync(
    join(dir, 'san.ext'),
    'subjectAltName=DNS:rmt-nats,DNS:rmt-coordinator,DNS:localhost,IP:127.0.0.1\n',
  );
  const steps = [
    ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=rmt test CA', '-days', '2'],
    ['req', ...ec, '-keyout', 'tls.key', '-out', 'tls.csr', '-subj', '/CN=rmt'],
    ['x509', '-req', '-in', 'tls.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial'],
  ];
  steps[2].push('-out', 'tls.crt', '-days', '2', '-extfile', 'san.ext');
  for (const a of steps) {
    const r = ssl(...a);
    if (r.error || r.status !== 0) {
      certs = null;
      return certs;
    }
  }
  const files = Object.fromEntries(
    (['ca.crt', 'tls.crt', 'tls.key'] as const).map((f) => [f, readFileSync(join(dir, f), 'utf8')]),
  ) as Record<'ca.crt' | 'tls.crt' | 'tls.key', string>;
  certs = { dir, files };
  return certs;
}

/** Does the target's configuration put NATS behind TLS (the services verify it)? */
const busTls = (t: ExecutionContext, target: Target, objs: K8sObject[]) =>
  effective(t, target, objs).some((e) => e.flags.busTlsCa !== undefined);

/**
 * The files of a NATS pod under `root`, at their mount paths: nats.conf from its ConfigMap, and what
 * the guide's Secrets hold (auth.conf of `auth`, the test certificates). JetStream's store and the
 * pid file are left to the command line (temporary folders).
 */
function natsPodFiles(
  objs: K8sObject[],
  root: string,
  auth: string,
  tlsFiles?: Record<string, string>,
): string {
  const { sts, c, cfgPath, conf } = natsConfig(objs);
  const put = (p: string, text: string) => {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  };
  put(cfgPath, conf.replace(/^\s*store_dir:.*$/m, ''));
  for (const inc of includesOf(conf, cfgPath)) put(inc, auth);
  if (tlsFiles) {
    for (const [name, text] of Object.entries(tlsFiles)) {
      const path = posix.join(NATS_TLS_DIR, name);
      if (fileSource(sts, c, path)?.secret === 'rmt-tls') put(path, text);
    }
  }
  return join(root, cfgPath);
}

test('NATS: the configuration matches the StatefulSet (ports, routes, store, pid file, the auth and TLS Secrets) and nats-server accepts it', (t) => {
  const bin = findNatsServer();
  for (const target of TARGETS) {
    const objs = render(target);
    const { sts, c, cfgPath, conf } = natsConfig(objs);
    t.truthy(conf, `${target}: ${cfgPath} is not from a ConfigMap`);
    const num = (re: RegExp) => Number(re.exec(conf)?.[1]);
    const ports = new Map<string, number>(c.ports.map((p: Any) => [p.name, p.containerPort]));
    const clusterPort = ports.get('cluster') ?? -1;
    t.is(ports.get('client'), num(/^port:\s*(\d+)/m), target);
    t.is(ports.get('monitor'), num(/^http_port:\s*(\d+)/m), target);
    const cluster = /cluster\s*\{([\s\S]*?)\n\}/.exec(conf)?.[1];
    const routes = [...(cluster ?? '').matchAll(/nats:\/\/([a-z0-9-]+)\.([a-z0-9-]+):(\d+)/g)];
    if (cluster) {
      t.is(ports.get('cluster'), Number(/port:\s*(\d+)/.exec(cluster)?.[1]), target);
      t.is(
        routes.length,
        sts.spec.replicas,
        `${target}: ${routes.length} routes for ${sts.spec.replicas} servers`,
      );
      routes.forEach((r, i) => {
        t.is(r[1], `rmt-nats-${i}`, target);
        t.is(r[2], sts.spec.serviceName, target);
        t.is(Number(r[3]), clusterPort, target);
      });
      const headless = find(objs, 'Service', sts.spec.serviceName);
      t.is(headless?.spec.clusterIP, 'None', `${target}: the routes need a headless Service`);
      t.true(headless?.spec.publishNotReadyAddresses, target);
    } else {
      t.is(sts.spec.replicas, 1, `${target}: several servers without a cluster block`);
    }
    const store = /store_dir:\s*(\S+)/.exec(conf)?.[1] ?? '';
    t.truthy(
      mountFor(sts, c, `${store}/x`)?.v.claimTemplate,
      `${target}: store_dir ${store} is not on the data volume`,
    );
    const pid = /pid_file:\s*(\S+)/.exec(conf)?.[1] ?? '';
    t.truthy(mountFor(sts, c, pid)?.v.emptyDir, `${target}: pid_file ${pid} is not on a writable volume`);
    t.true(
      c.lifecycle.preStop.exec.command.join(' ').includes(pid),
      `${target}: preStop signals another pid file`,
    );
    const ldm = num(/lame_duck_duration:\s*(\d+)s/) + num(/lame_duck_grace_period:\s*(\d+)s/);
    t.true(
      podSpec(sts).terminationGracePeriodSeconds > ldm,
      `${target}: grace period shorter than lame duck mode`,
    );
    // Authentication: nats.conf includes auth.conf of Secret rmt-nats-auth, which is not optional (a
    // server without it would take anyone); the TLS block of `nats-auth.ts --tls` reads Secret rmt-tls
    // where the StatefulSet mounts it.
    const includes = includesOf(conf, cfgPath);
    t.is(includes.length, 1, `${target}: nats.conf should include the auth configuration`);
    for (const inc of includes) {
      const src = fileSource(sts, c, inc);
      t.deepEqual(
        [src?.secret, src?.key, src?.optional],
        ['rmt-nats-auth', 'auth.conf', false],
        `${target}: include ${inc} is not auth.conf of Secret rmt-nats-auth`,
      );
    }
    t.true(/^\s*jetstream\s*\{/m.test(conf), `${target}: no JetStream`);
    const tlsSrc = fileSource(sts, c, posix.join(NATS_TLS_DIR, 'tls.crt'));
    t.is(
      tlsSrc?.secret,
      'rmt-tls',
      `${target}: the TLS block of nats-auth.ts reads ${NATS_TLS_DIR}, not Secret rmt-tls`,
    );
    if (busTls(t, target, objs))
      t.false(
        tlsSrc?.optional,
        `${target}: the services expect TLS, but NATS may start without its certificate`,
      );
    if (bin) {
      const variants: { tls: boolean }[] = [{ tls: false }];
      if (busTls(t, target, objs) && testCerts()) variants.push({ tls: true });
      for (const { tls } of variants) {
        const root = mkdtempSync(join(tmpdir(), 'rmt-nats-conf-'));
        try {
          const auth = natsAuth(DEFAULT_USERS, { tls, tlsDir: join(root, NATS_TLS_DIR) }).authConf;
          const path = natsPodFiles(objs, root, auth, tls ? testCerts()!.files : undefined);
          const r = spawnSync(bin, ['-t', '-c', path], {
            encoding: 'utf8',
            env: { ...process.env, SERVER_NAME: 'rmt-nats-0' },
          });
          t.is(r.status, 0, `${target}${tls ? ' (TLS)' : ''}: nats-server -t: ${r.stdout}${r.stderr}`);
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      }
    }
  }
  if (!bin)
    t.log(
      'nats-server not installed (apt-get install nats-server): configuration not run through nats-server -t',
    );
});

/** The Secrets the guide creates: name -> key -> the file the key is made from (its basename). */
function guideSecrets(): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  for (const cmd of guideCommands()) {
    const m = /\bcreate secret generic ([a-z0-9-]+)(.*)$/.exec(cmd);
    if (!m) continue;
    const keys = new Map<string, string>();
    for (const f of m[2].matchAll(/--from-file=(?:([\w.-]+)=)?"?([^"\s]+)"?/g)) {
      keys.set(f[1] ?? posix.basename(f[2]), posix.basename(f[2]));
    }
    out.set(m[1], keys);
  }
  return out;
}

test("NATS authentication: every service reaches a nats-server with the credentials its pod mounts from the Secrets the guide creates; without them, or with another operator's, it is refused", async (t) => {
  const secrets = guideSecrets();
  for (const name of ['rmt-nats-auth', 'rmt-bus-creds'])
    t.true(secrets.has(name), `docs/kubernetes.md creates no Secret ${name}`);
  const written = new Set(['auth.conf', ...DEFAULT_USERS.map((u) => `${u}.creds`)]);
  for (const name of ['rmt-nats-auth', 'rmt-bus-creds']) {
    for (const [key, file] of secrets.get(name) ?? []) {
      t.true(
        written.has(file),
        `docs/kubernetes.md: Secret ${name} key ${key}: nats-auth.ts writes no ${file}`,
      );
    }
  }
  if (!findNatsServer()) {
    t.log('nats-server not installed (apt-get install nats-server): credentials not tried on a server');
    return;
  }
  // One server: the overlays whose NATS is one pod (its configuration as rendered); the three-server
  // configuration is checked by nats-server -t above.
  for (const target of TARGETS.filter((x) => overlayOf(x) === 'dev')) {
    const objs = render(target);
    const eff = effective(t, target, objs);
    const tls = busTls(t, target, objs);
    if (tls && !testCerts()) {
      t.log(`${target}: no openssl for test certificates: not tried`);
      continue;
    }
    const root = mkdtempSync(join(tmpdir(), 'rmt-nats-auth-'));
    const auth = natsAuth(DEFAULT_USERS, { tls, tlsDir: join(root, 'nats', NATS_TLS_DIR) });
    // What `kubectl create secret` would hold, from the files nats-auth.ts writes (and the certificates).
    const files: Record<string, string> = { 'auth.conf': auth.authConf, ...(tls ? testCerts()!.files : {}) };
    for (const [u, text] of Object.entries(auth.creds)) files[`${u}.creds`] = text;
    const secretData = new Map<string, Map<string, string>>();
    for (const [name, keys] of secrets)
      secretData.set(name, new Map([...keys].map(([k, f]) => [k, files[f]])));
    if (tls) secretData.set('rmt-tls', new Map(Object.entries(testCerts()!.files)));
    const conf = natsPodFiles(
      objs,
      join(root, 'nats'),
      secretData.get('rmt-nats-auth')?.get('auth.conf') ?? '',
      tls ? testCerts()!.files : undefined,
    );
    const serverName = process.env.SERVER_NAME;
    process.env.SERVER_NAME = 'rmt-nats-0';
    const server = await startNatsServer({
      args: ['-c', conf, '-P', join(root, 'nats.pid'), '-m', '-1'],
    }).finally(() => {
      if (serverName === undefined) delete process.env.SERVER_NAME;
      else process.env.SERVER_NAME = serverName;
    });
    try {
      /** A file the pod reads, as its Secret puts it there (written under root/<pod>). */
      const podFile = (w: Any, c: Any, path: string | undefined) => {
        if (path === undefined) return undefined;
        const src = fileSource(w, c, path);
        const text = src?.secret ? secretData.get(src.secret)?.get(src.key) : undefined;
        if (text === undefined) return join(root, 'missing', path);
        const p = join(root, w.metadata.name, path);
        mkdirSync(dirname(p), { recursive: true });
        writeFileSync(p, text);
        return p;
      };
      const url = (bus: string) => bus.replace(/\/\/[^,]+$/, `//127.0.0.1:${server.port}`);
      const connect = async (
        bus: string,
        credsFile: string | undefined,
        caFile: string | undefined,
        replicas: number,
      ) => {
        const b = await createBus(url(bus), {
          name: 'k8s-test',
          credsFile,
          tls: caFile ? { caFile } : undefined,
          stream: { replicas },
        });
        await b.close();
      };
      // The coordinator first: only its user may create the stream, the others wait for it.
      const byOwner = [...eff].sort(
        (x, y) => Number(y.service === 'coordinator') - Number(x.service === 'coordinator'),
      );
      for (const { w, c, service, flags } of byOwner) {
        const where = `${target}: ${service}`;
        const creds = podFile(w, c, flags.busCreds);
        const ca = podFile(w, c, flags.busTlsCa);
        await t.notThrowsAsync(connect(flags.bus, creds, ca, flags.busReplicas), `${where}: its credentials`);
      }
      const { flags, w, c } = eff[0];
      const ca = podFile(w, c, flags.busTlsCa);
      const refused = /AUTHORIZATION|Authorization|authentication/;
      await t.throwsAsync(
        connect(flags.bus, undefined, ca, 1),
        { message: refused },
        `${target}: no credentials`,
      );
      const stranger = join(root, 'stranger.creds');
      writeFileSync(stranger, natsAuth(['rollout']).creds.rollout);
      await t.throwsAsync(
        connect(flags.bus, stranger, ca, 1),
        { message: refused },
        `${target}: another operator's user`,
      );
      const cli = join(root, 'cli.creds');
      writeFileSync(cli, auth.creds.cli);
      await t.notThrowsAsync(connect(flags.bus, cli, ca, 1), `${target}: the cli user of the guide`);
      // A worker's user publishes heartbeats but may not read them, nor announce weights.
      const rolloutCreds = join(root, 'rollout.creds');
      writeFileSync(rolloutCreds, auth.creds.rollout);
      const nc = await natsConnect({
        servers: url(flags.bus),
        authenticator: credsAuthenticator(readFileSync(rolloutCreds)),
        tls: ca ? { caFile: ca } : undefined,
      });
      const violations: string[] = [];
      void (async () => {
        for await (const s of nc.status()) if (s.type === 'error') violations.push(String(s.data));
      })();
      nc.publish('rmt.workers.heartbeat', '{}');
      nc.subscribe('rmt.workers.heartbeat');
      nc.publish('rmt.weights.published', '{}');
      await nc.flush().catch(() => {});
      await new Promise((r) => setTimeout(r, 300));
      await nc.close().catch(() => {});
      t.deepEqual(
        violations,
        ['PERMISSIONS_VIOLATION', 'PERMISSIONS_VIOLATION'],
        `${target}: the rollout user's permissions`,
      );
    } finally {
      await server.stop();
      rmSync(root, { recursive: true, force: true });
    }
  }
});

// --- extras -------------------------------------------------------------------------------------

test('k8s/tools and k8s/monitoring fit the base: the models claim, the pods and their metrics ports', (t) => {
  const base = render('base');
  const [loader, monitor] = extras() as Any[];
  t.is(loader.spec.volumes[0].persistentVolumeClaim.claimName, 'rmt-models');
  t.truthy(find(base, 'PersistentVolumeClaim', 'rmt-models'));
  const cfg = parseTrainConfig(parse(find(base, 'ConfigMap', 'rmt-run').data['run.yaml']), 'rmt-run');
  t.true(cfg.model.init_from.startsWith(`${loader.spec.containers[0].volumeMounts[0].mountPath}/`));
  const scraped = workloads(base).filter(
    (w) =>
      selects(monitor.spec.selector.matchLabels, podLabels(w)) &&
      monitor.spec.selector.matchExpressions.every((e: Any) => e.values.includes(podLabels(w)[e.key])),
  );
  t.deepEqual(scraped.map(component).sort(), [...SERVICES].sort());
  for (const w of scraped) {
    const names = podSpec(w).containers.flatMap((c: Any) => (c.ports ?? []).map((p: Any) => p.name));
    t.true(names.includes(monitor.spec.podMetricsEndpoints[0].port), w.metadata.name);
  }
});

/** External metrics that k8s/monitoring/prometheus-adapter.yaml serves -> the series they read. */
function adapterExternalMetrics(): Map<string, string[]> {
  const values = parse(read('k8s/monitoring/prometheus-adapter.yaml')) as Any;
  const out = new Map<string, string[]>();
  for (const r of values.rules?.external ?? []) {
    const series = /^([a-zA-Z_:][\w:]*)/.exec(r.seriesQuery)?.[1] ?? '';
    const name = r.name?.as ?? series;
    const read = [series];
    for (const m of String(r.metricsQuery).matchAll(/__name__=~"([^"]+)"/g)) read.push(...m[1].split('|'));
    for (const m of String(r.metricsQuery).matchAll(/\b(rmt_[a-z_]+)\b/g)) read.push(m[1]);
    out.set(name, [...new Set(read)]);
  }
  return out;
}

test('k8s/monitoring/prometheus-adapter.yaml: the external metrics read gauges the coordinator exports, per namespace', (t) => {
  const values = parse(read('k8s/monitoring/prometheus-adapter.yaml')) as Any;
  const metrics = adapterExternalMetrics();
  t.true(metrics.size > 0);
  const coordinator = read('services/coordinator/main.ts');
  for (const [name, series] of metrics) {
    for (const s of series) {
      t.true(s.startsWith('rmt_'), `${name}: ${s}`);
      t.regex(
        coordinator,
        new RegExp(`gauge\\(\\{\\s*name: '${s.slice('rmt_'.length)}'`),
        `${name} reads ${s}, which is no gauge of the coordinator`,
      );
    }
  }
  for (const r of values.rules.external) {
    t.is(r.resources?.overrides?.namespace?.resource, 'namespace', 'the HPA asks for its own namespace');
    t.true(String(r.metricsQuery).includes('<<.LabelMatchers>>'), 'metricsQuery must keep the namespace');
  }
  // What the queue-autoscaling component asks for is served.
  const hpa = find(render('gpu+queue-autoscaling'), 'HorizontalPodAutoscaler', 'rmt-rollout');
  for (const m of hpa.spec.metrics) t.true(metrics.has(m.external?.metric.name), JSON.stringify(m));
});

// --- the image ----------------------------------------------------------------------------------

interface Instr {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  image: string;
  name?: string;
  instrs: Instr[];
}

function parseDockerfile(text: string): Stage[] {
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
  for (const ins of instrs) {
    if (ins.op === 'FROM') {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      stages.push({
        image: words[0],
        name: words[1]?.toLowerCase() === 'as' ? words[2] : undefined,
        instrs: [],
      });
    } else if (stages.length === 0) {
      if (ins.op !== 'ARG') throw new Error(`Dockerfile:${ins.line}: ${ins.op} before FROM`);
    } else stages.at(-1)!.instrs.push(ins);
  }
  return stages;
}

function copyArgs(ins: Instr): { from?: string; srcs: string[]; dest: string } {
  const words = ins.args.trim().startsWith('[')
    ? (JSON.parse(ins.args.slice(ins.args.indexOf('['))) as string[])
    : ins.args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const rest = words.filter((w) => !w.startsWith('--'));
  const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
  return { from, srcs: rest.slice(0, -1), dest: rest.at(-1)! };
}

/** .dockerignore as Docker reads it: last matching pattern wins; a pattern matches a path or a parent. */
function dockerignore(text: string): (path: string) => boolean {
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
        `COPY ${src}: nothing of k8s/ belongs in the image (\`rmt submit\` is in scripts/)`,
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
    'scripts/cli.ts',
    'scripts/submit.ts',
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

// --- rmt submit ---------------------------------------------------------------------------------

/** A stand-in coordinator: StartRun once (then FAILED_PRECONDITION), WatchRun running then `outcome`. */
async function standInCoordinator(opts: { tls?: { cert: string; key: string } } = {}) {
  const started: StartRunRequest[] = [];
  const state = { outcome: RunState.RUN_STATE_DONE };
  const status = (p: Partial<RunStatus>) =>
    RunStatus.fromPartial({
      runId: 'rmt-1',
      method: 'rmt',
      totalSteps: 2,
      outDir: '/var/lib/rmt/runs/rmt',
      ...p,
    });
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    reflection: false,
    tls: opts.tls,
    services: [
      bindService(CoordinatorServiceService, {
        startRun: handleUnary(async (req) => {
          if (started.length > 0) throw failedPrecondition('run "rmt-1" is still active; StopRun it first');
          started.push(req);
          return status({ state: RunState.RUN_STATE_PREPARING });
        }),
        getRunStatus: handleUnary(async () => status({ state: RunState.RUN_STATE_RUNNING, step: 1 })),
        watchRun: handleServerStream(async function* () {
          yield status({ state: RunState.RUN_STATE_RUNNING, step: 1, metrics: { 'critic/score/mean': 0.5 } });
          yield status({
            state: state.outcome,
            step: 2,
            error: state.outcome === RunState.RUN_STATE_FAILED ? 'boom' : '',
          });
        }),
        stopRun: handleUnary(async () => status({ state: RunState.RUN_STATE_STOPPED })),
        listWorkers: handleUnary(async () => ({ workers: [] })),
      }),
    ],
  });
  return { server, started, state };
}

test('rmt submit sends the run config, follows the run, and follows an active run instead of starting another', async (t) => {
  const { server, started, state } = await standInCoordinator();
  try {
    const config = at('k8s/base/config/run.yaml');
    const out: string[] = [];
    const err: string[] = [];
    const run = (argv: string[], env: Record<string, string> = {}) =>
      submit(
        argv,
        { RMT_COORDINATOR: server.address, ...env },
        (l) => out.push(l),
        (l) => err.push(l),
      );
    t.is(await run(['--config', config, '--steps', '2', '--wait-s', '10']), 0);
    t.is(started[0].config, readFileSync(config, 'utf8'));
    t.is(started[0].steps, 2);
    const lines = out.map((l) => JSON.parse(l));
    t.deepEqual(
      lines.map((l) => l.state),
      ['preparing', 'running', 'done'],
    );
    t.is(lines[1].score, 0.5);
    out.length = 0;
    state.outcome = RunState.RUN_STATE_FAILED;
    t.is(await run([], { RMT_CONFIG: config }), 1, 'a failed run exits 1');
    t.regex(err.join('\n'), /still active.*; following the active run/);
    t.deepEqual(
      out.map((l) => JSON.parse(l).state),
      ['running', 'failed'],
    );
    out.length = 0;
    t.is(await run(['--config', config, '--no-watch']), 0);
    t.deepEqual(out, []);
  } finally {
    await server.shutdown(0);
  }
  t.is(
    await submit(
      ['--config', at('k8s/base/config/run.yaml'), '--coordinator', '127.0.0.1:1', '--wait-s', '0.2'],
      {},
      () => {},
      () => {},
    ),
    3,
  );
});

test('rmt submit speaks TLS to a coordinator that serves it (--tls-ca), as k8s/components/tls sets it up', async (t) => {
  const c = testCerts();
  if (!c) {
    t.log('openssl not installed: no test certificates');
    t.pass();
    return;
  }
  const { server, started } = await standInCoordinator({
    tls: { cert: join(c.dir, 'tls.crt'), key: join(c.dir, 'tls.key') },
  });
  try {
    const config = at('k8s/base/config/run.yaml');
    const port = server.address.split(':').at(-1);
    const quiet = () => {};
    // As after a port-forward: the certificate names localhost.
    const argv = ['--config', config, '--coordinator', `localhost:${port}`, '--wait-s', '5'];
    t.is(await submit(argv, { RMT_TLS_CA: join(c.dir, 'ca.crt') }, quiet, quiet), 0);
    t.is(started.length, 1);
    t.is(await submit([...argv.slice(0, -1), '1'], {}, quiet, quiet), 3, 'plaintext to a TLS coordinator');
  } finally {
    await server.shutdown(0);
  }
});

// --- the guide ----------------------------------------------------------------------------------

const KIND_ALIASES: Record<string, string> = {
  deployment: 'Deployment',
  deploy: 'Deployment',
  statefulset: 'StatefulSet',
  sts: 'StatefulSet',
  svc: 'Service',
  service: 'Service',
  cronjob: 'CronJob',
  hpa: 'HorizontalPodAutoscaler',
  pdb: 'PodDisruptionBudget',
  pvc: 'PersistentVolumeClaim',
  configmap: 'ConfigMap',
  cm: 'ConfigMap',
  networkpolicy: 'NetworkPolicy',
  pod: 'Pod',
  job: 'Job',
};

/** The commands of the guide's sh blocks, one per line, `\\`-continued lines joined. */
function guideCommands(): string[] {
  const doc = read('docs/kubernetes.md');
  const blocks = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  return blocks
    .join('\n')
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .filter((l) => l.trim() !== '');
}

test('docs/kubernetes.md: the commands name files, objects, ports, labels, flags and paths the manifests and tools have', (t) => {
  const doc = read('docs/kubernetes.md');
  const cmds = guideCommands();
  // The components the guide applies are rendered with the overlay.
  const objs = [...render('cpu+tls'), ...extras()];
  // `rmt submit` and nats-auth.ts: flags they have.
  for (const cmd of cmds) {
    const submitAt = /\b(?:rmt|bin\/rmt\.js) submit\b/.exec(cmd)?.index;
    const authAt = /k8s\/tools\/nats-auth\.ts\b/.exec(cmd)?.index;
    const at0 = submitAt ?? authAt;
    if (at0 === undefined) continue;
    const tool = submitAt !== undefined ? SUBMIT_FLAGS : NATS_AUTH_FLAGS;
    for (const m of cmd.slice(at0).matchAll(/\s--(?:no-)?([a-z][a-z0-9-]*)/g))
      t.true(m[1] in tool || m[1] === 'help', `${cmd}: no flag --${m[1]}`);
    for (const m of cmd.matchAll(/(?:^|\s)(k8s\/\S+\.ts)/g))
      t.true(existsSync(at(m[1])), `${cmd}: no ${m[1]}`);
  }
  // Components named in the guide exist.
  for (const m of doc.matchAll(/components\/([a-z0-9-]+)/g))
    t.true(
      existsSync(at(`k8s/components/${m[1]}/kustomization.yaml`)),
      `docs/kubernetes.md: no component ${m[1]}`,
    );
  const jobs = new Set(
    cmds.flatMap((c) => [...c.matchAll(/create job ([a-z0-9-]+) --from=/g)].map((m) => m[1])),
  );
  const forwarded = new Map<number, string>();
  const shellVars = new Map<string, string>();
  let checked = 0;
  for (const cmd of cmds) {
    if (!/\b(kubectl|kustomize|grpcurl)\b/.test(cmd)) continue;
    checked++;
    for (const m of cmd.matchAll(/-n (\S+)/g)) t.is(m[1], NAMESPACE, cmd);
    for (const m of cmd.matchAll(/create namespace (\S+)/g)) t.is(m[1], NAMESPACE, cmd);
    for (const m of cmd.matchAll(/-k (\S+)/g))
      t.true(Object.values(DIRS).includes(m[1]), `${cmd}: ${m[1]} is no overlay`);
    for (const m of cmd.matchAll(/-f (k8s\/\S+)/g)) t.true(existsSync(at(m[1])), `${cmd}: no ${m[1]}`);
    for (const m of cmd.matchAll(/\b([a-z]+)\/([a-z0-9-]+)\b/g)) {
      const kind = KIND_ALIASES[m[1]];
      if (!kind) continue;
      if (kind === 'Job') t.true(jobs.has(m[2]), `${cmd}: job ${m[2]} is created nowhere in the guide`);
      else t.truthy(find(objs, kind, m[2]), `${cmd}: no ${kind} ${m[2]}`);
    }
    for (const m of cmd.matchAll(/\b(?:get|patch|describe) ([a-z]+) ([a-z][a-z0-9-]*)/g)) {
      const kind = KIND_ALIASES[m[1]];
      if (kind) t.truthy(find(objs, kind, m[2]), `${cmd}: no ${kind} ${m[2]}`);
    }
    const patch = /patch ([a-z]+) ([a-z0-9-]+) -p '([^']+)'/.exec(cmd);
    if (patch) {
      const o = find(objs, KIND_ALIASES[patch[1]], patch[2]);
      const has = (obj: Any, p: Any): boolean =>
        Object.entries(p).every(([k, v]) => k in obj && (typeof v !== 'object' || has(obj[k], v)));
      t.true(has(o, JSON.parse(patch[3])), `${cmd}: patches fields ${patch[2]} does not have`);
    }
    for (const m of cmd.matchAll(/port-forward svc\/([a-z0-9-]+) (\d+):(\d+)/g)) {
      const svc = find(objs, 'Service', m[1]);
      t.true(
        svc.spec.ports.some((p: Any) => p.port === Number(m[3])),
        `${cmd}: Service ${m[1]} has no port ${m[3]}`,
      );
      forwarded.set(Number(m[2]), m[1]);
    }
    for (const m of cmd.matchAll(/-l ([\w./-]+)=([\w-]+)/g)) {
      const pods = /\bget pods?\b/.test(cmd);
      const hits = pods
        ? workloads(objs).filter((w) => podLabels(w)[m[1]] === m[2])
        : objs.filter((o) => o.metadata.labels?.[m[1]] === m[2]);
      t.true(hits.length > 0, `${cmd}: -l ${m[1]}=${m[2]} selects nothing`);
      const v = /^(\w+)=\$\(/.exec(cmd);
      if (v && pods) shellVars.set(v[1], component(hits[0]));
    }
    for (const m of cmd.matchAll(/cp "?\$(\w+):([^"\s]+)/g)) {
      const w = workloads(objs).find((x) => component(x) === shellVars.get(m[1]));
      t.truthy(
        w && mountFor(w, podSpec(w).containers[0], m[2]),
        `${cmd}: ${m[2]} is on no volume of ${shellVars.get(m[1])}`,
      );
    }
    for (const m of cmd.matchAll(/cp \S+ ([a-z0-9-]+):(\S+)/g)) {
      const pod = find(objs, 'Pod', m[1]);
      t.truthy(
        pod && mountFor(pod, pod.spec.containers[0], m[2]),
        `${cmd}: ${m[2]} is on no volume of pod ${m[1]}`,
      );
    }
    for (const m of cmd.matchAll(/create secret \w+ ([a-z0-9-]+)/g)) {
      const used = workloads(objs).some((w) =>
        (podSpec(w).volumes ?? []).some((v: Any) => v.secret?.secretName === m[1]),
      );
      t.true(used, `${cmd}: no pod mounts Secret ${m[1]}`);
    }
    for (const m of cmd.matchAll(/set image (\w+)=/g)) {
      t.true(
        render('base').some((o) => podSpec(o)?.containers.some((c: Any) => c.image === m[1])),
        `${cmd}: no image ${m[1]} in the base`,
      );
    }
    for (const m of cmd.matchAll(/grpcurl .*localhost:(\d+) ([\w.]+)\/(\w+)/g)) {
      t.is(
        forwarded.get(Number(m[1])),
        'rmt-coordinator',
        `${cmd}: localhost:${m[1]} is not the forwarded coordinator`,
      );
      const paths: string[] = Object.values(CoordinatorServiceService).map((x) => x.path);
      t.true(paths.includes(`/${m[2]}/${m[3]}`), `${cmd}: no method ${m[2]}/${m[3]}`);
    }
  }
  t.true(checked > 15, `only ${checked} commands checked`);
  // The Secrets the guide creates hold the keys the pods read (files named by flags; volume items
  // are checked with the volumes), in every overlay and component.
  const secrets = guideSecrets();
  for (const target of TARGETS) {
    const tobjs = render(target);
    const readers: { w: Any; c: Any; flags: Record<string, Any> }[] = effective(t, target, tobjs);
    const job = find(tobjs, 'CronJob', 'rmt-start-run');
    const jc = podSpec(job).containers[0];
    readers.push({
      w: job,
      c: jc,
      flags: parseServiceFlags(SUBMIT_FLAGS, jc.args, containerEnv(tobjs, jc).env),
    });
    if (busTls(t, target, tobjs)) {
      // NATS reads the certificate of auth.conf's tls block (nats-auth.ts --tls).
      const { sts, c } = natsConfig(tobjs);
      const f = ['tls.crt', 'tls.key', 'ca.crt'].map((n) => posix.join(NATS_TLS_DIR, n));
      readers.push({ w: sts, c, flags: { tlsCert: f[0], tlsKey: f[1], tlsCa: f[2] } });
    }
    for (const { w, c, flags } of readers) {
      for (const ff of FILE_FLAGS) {
        const src = flags[ff] === undefined ? undefined : fileSource(w, c, flags[ff]);
        if (src?.secret && secrets.has(src.secret))
          t.true(
            secrets.get(src.secret)!.has(src.key),
            `${target}: ${w.metadata.name} reads key ${src.key} of Secret ${src.secret}, which the guide creates without it`,
          );
      }
    }
  }
  // The metrics the guide names exist: gauges and counters of the services, or the external metrics
  // of k8s/monitoring/prometheus-adapter.yaml.
  const sources = SERVICES.map((s) => read(`services/${s}/main.ts`)).join('\n');
  const external = adapterExternalMetrics();
  let named = 0;
  for (const m of doc.matchAll(/`(?:rate\()?rmt_([a-z_]+?)(?:_total)?(?:\[5m\]\))?`/g)) {
    named++;
    if (external.has(`rmt_${m[1]}`)) continue;
    const name = m[1].replace(/_total$/, '');
    t.regex(sources, new RegExp(`name: '${name}(_total)?'`), `docs/kubernetes.md names metric rmt_${m[1]}`);
  }
  t.true(named > 10, `only ${named} metrics named`);
});
