// What the Kubernetes tests share: the render of k8s/base, every overlay and every variant with the
// optional components (cached per target), queries over the rendered objects, the services' flag
// schemas the manifests are checked against, the NATS configuration and test certificates, and the
// commands and Secrets of docs/kubernetes.md. Temporary folders are removed when a test file ends.
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { GRPC_ROLES, GRPC_SECRET_KEYS, grpcSecretName } from '../../k8s/tools/grpc-tls.js';
import { NATS_TLS_DIR } from '../../k8s/tools/nats-auth.js';
import { FLAGS as COORDINATOR_FLAGS } from '../../services/coordinator/main.js';
import { FLAGS as LEARNER_FLAGS } from '../../services/learner/main.js';
import { FLAGS as ROLLOUT_FLAGS } from '../../services/rollout/main.js';
import { FLAGS as SCORER_FLAGS } from '../../services/scorer/main.js';
import { envName, type FlagSchema, parseServiceFlags } from '../../shared/config/service-flags.js';
import { type K8sObject, kustomize } from './kustomize.js';

export const root = fileURLToPath(new URL('../..', import.meta.url));
export const at = (p: string) => join(root, p);
export const read = (p: string) => readFileSync(at(p), 'utf8');

export const SERVICES = ['scorer', 'rollout', 'learner', 'coordinator'] as const;
export type Service = (typeof SERVICES)[number];
export const OVERLAYS = ['cpu', 'gpu', 'dev'] as const;
export type Overlay = (typeof OVERLAYS)[number];
// The optional components (k8s/components), each rendered on an overlay the way a user adds it: in
// `components:` of the overlay's kustomization.yaml (a copy of the overlay in a temporary folder).
export const VARIANTS = {
  'cpu+tls': { overlay: 'cpu', components: ['tls'] },
  'gpu+queue-autoscaling': { overlay: 'gpu', components: ['queue-autoscaling'] },
  'dev+tls+queue-autoscaling': { overlay: 'dev', components: ['tls', 'queue-autoscaling'] },
  'cpu+data-parallel-learners': { overlay: 'cpu', components: ['data-parallel-learners'] },
} as const satisfies Record<string, { overlay: Overlay; components: readonly string[] }>;
export type Variant = keyof typeof VARIANTS;
export const TARGETS = ['base', ...OVERLAYS, ...(Object.keys(VARIANTS) as Variant[])] as const;
export type Target = (typeof TARGETS)[number];
export const DIRS: Record<'base' | Overlay, string> = {
  base: 'k8s/base',
  cpu: 'k8s/overlays/cpu',
  gpu: 'k8s/overlays/gpu',
  dev: 'k8s/overlays/dev',
};
export const isVariant = (t: Target): t is Variant => t in VARIANTS;
/** The overlay a target is (or is built on). */
export const overlayOf = (t: Target): 'base' | Overlay => (isVariant(t) ? VARIANTS[t].overlay : t);
export const componentsOf = (t: Target): readonly string[] => (isVariant(t) ? VARIANTS[t].components : []);
export const EXTRA_FILES = ['k8s/tools/models-loader.yaml', 'k8s/monitoring/podmonitor.yaml'];
export const NAMESPACE = 'rmt';
export const POD = { name: 'pod-name-0', ip: '10.1.2.3' };

// --- shared helpers ---------------------------------------------------------------------------

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML; the API types check them.
export type Any = any;

// The variants' kustomizations: copies of their overlays with `components:` added and the paths out
// of the overlay made relative to the copy.
export let variantRoot: string | undefined;
// Temporary folders of the file (the variants, the test certificates), removed at its end.
export const tempDirs: string[] = [];
test.after.always(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});
export function dirOf(t: Target): string {
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

export const renders = new Map<Target, K8sObject[]>();
export function render(t: Target): K8sObject[] {
  let r = renders.get(t);
  if (!r) {
    r = kustomize(dirOf(t));
    renders.set(t, r);
  }
  return structuredClone(r);
}

export function extras(): K8sObject[] {
  return EXTRA_FILES.flatMap((f) => parseAllDocuments(read(f)).map((d) => d.toJS() as K8sObject));
}

export const byKind = (objs: K8sObject[], kind: string) => objs.filter((o) => o.kind === kind) as Any[];
export const find = (objs: K8sObject[], kind: string, name: string): Any =>
  objs.find((o) => o.kind === kind && o.metadata.name === name);

export function podSpec(o: Any): Any | undefined {
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
export function podLabels(o: Any): Record<string, string> {
  switch (o.kind) {
    case 'CronJob':
      return o.spec.jobTemplate.spec.template.metadata?.labels ?? {};
    case 'Pod':
      return o.metadata.labels ?? {};
    default:
      return o.spec.template.metadata?.labels ?? {};
  }
}
export const workloads = (objs: K8sObject[]) => objs.filter((o) => podSpec(o) !== undefined) as Any[];
export const selects = (sel: Record<string, string> | undefined, labels: Record<string, string>) =>
  Object.entries(sel ?? {}).every(([k, v]) => labels[k] === v);
export const component = (o: Any): string => podLabels(o)['app.kubernetes.io/component'] ?? o.metadata.name;

/** Containers that run an rmt service: `args: [<service>, ...flags]` on the image's entrypoint. */
export function rmtContainers(objs: K8sObject[]): { w: Any; c: Any; service: Service }[] {
  const out: { w: Any; c: Any; service: Service }[] = [];
  for (const w of workloads(objs)) {
    for (const c of podSpec(w).containers) {
      const first = c.args?.[0];
      if (!c.command && SERVICES.includes(first)) out.push({ w, c, service: first });
    }
  }
  return out;
}

export function cpuOf(q: string | number): number {
  const s = String(q);
  return s.endsWith('m') ? Number(s.slice(0, -1)) / 1000 : Number(s);
}
export function bytesOf(q: string | number): number {
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
export function containerEnv(objs: K8sObject[], c: Any): { env: Record<string, string>; names: string[] } {
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
export const RUNTIME_ENV = (() => {
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

export const SCHEMAS: Record<Service, FlagSchema> = {
  scorer: SCORER_FLAGS,
  rollout: ROLLOUT_FLAGS,
  learner: LEARNER_FLAGS,
  coordinator: COORDINATOR_FLAGS,
};

export const envNamesOf = (schema: FlagSchema) =>
  new Set(Object.entries(schema).map(([n, s]) => envName(n, s)));

// Flags whose value is a file the process reads (camelCase, as parsed).
export const FILE_FLAGS = [
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
export function resolveAddress(objs: K8sObject[], address: string): { svc: Any; pods: Any[]; port: number } {
  const i = address.lastIndexOf(':');
  const labels = address.slice(0, i).split('.');
  const port = Number(address.slice(i + 1));
  // <statefulset>-<ordinal>.<its headless Service>: that one replica.
  const replica = /^(.+)-(\d+)$/.exec(labels[0]);
  const sts =
    !find(objs, 'Service', labels[0]) && replica && labels.length > 1
      ? byKind(objs, 'StatefulSet').find(
          (w) => w.metadata.name === replica[1] && w.spec.serviceName === labels[1],
        )
      : undefined;
  if (sts && !(Number(replica![2]) < (sts.spec.replicas ?? 1)))
    throw new Error(`${address}: StatefulSet ${sts.metadata.name} has ${sts.spec.replicas ?? 1} replicas`);
  if (sts && find(objs, 'Service', labels[1])?.spec.clusterIP !== 'None')
    throw new Error(`${address}: Service ${labels[1]} is not headless: no per-replica names`);
  const host = sts ? labels[1] : labels[0];
  const svc = find(objs, 'Service', host);
  if (!svc) throw new Error(`${address}: no Service ${host}`);
  const sp = svc.spec.ports.find((p: Any) => p.port === port);
  if (!sp) throw new Error(`${address}: Service ${host} has no port ${port}`);
  const pods = sts ? [sts] : workloads(objs).filter((w) => selects(svc.spec.selector, podLabels(w)));
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
export function leadsTo(t: ExecutionContext, objs: K8sObject[], address: string, where: string) {
  try {
    return resolveAddress(objs, address);
  } catch (e) {
    t.fail(`${where}: ${(e as Error).message}`);
    return { svc: undefined, pods: [] as Any[], port: -1 };
  }
}

export interface Effective {
  w: Any;
  c: Any;
  service: Service;
  flags: Record<string, Any>;
}

export function effective(t: ExecutionContext, target: Target, objs: K8sObject[]): Effective[] {
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

export function mountFor(w: Any, c: Any, path: string): { m: Any; v: Any } | undefined {
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
export function fileSource(
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
export function checkFiles(
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

// --- NATS ---

/** The NATS container, its config file path and the configuration text (from its ConfigMap). */
export function natsConfig(objs: K8sObject[]): { sts: Any; c: Any; cfgPath: string; conf: string } {
  const sts = find(objs, 'StatefulSet', 'rmt-nats');
  const c = podSpec(sts).containers[0];
  const cfgPath: string = c.command[c.command.indexOf('--config') + 1];
  const src = fileSource(sts, c, cfgPath);
  const conf: string = find(objs, 'ConfigMap', src?.configMap ?? '')?.data?.[src?.key ?? ''];
  return { sts, c, cfgPath, conf };
}

/** Absolute paths of the files nats.conf includes (include paths are relative to it). */
export const includesOf = (conf: string, cfgPath: string) =>
  [...conf.matchAll(/^\s*include\s+"?([^"\s]+)"?/gm)].map((m) => posix.resolve(posix.dirname(cfgPath), m[1]));

// A throwaway CA and one certificate for rmt-nats, rmt-coordinator, localhost and 127.0.0.1 (what the
// guide's certificate names, plus the loopback the tests connect to); null without openssl.
export let certs: { dir: string; files: Record<'ca.crt' | 'tls.crt' | 'tls.key', string> } | null | undefined;
export function testCerts(): typeof certs {
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
export const busTls = (t: ExecutionContext, target: Target, objs: K8sObject[]) =>
  effective(t, target, objs).some((e) => e.flags.busTlsCa !== undefined);

/**
 * The files of a NATS pod under `root`, at their mount paths: nats.conf from its ConfigMap, and what
 * the guide's Secrets hold (auth.conf of `auth`, the test certificates). JetStream's store and the
 * pid file are left to the command line (temporary folders).
 */
export function natsPodFiles(
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

/**
 * The Secrets the guide creates: name -> key -> the file the key is made from (its basename; for
 * the Secrets of k8s/tools/grpc-tls.ts, which the guide applies as the tool writes them, the key).
 */
export function guideSecrets(): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  const cmds = guideCommands();
  const grpcOut = cmds
    .map((c) => /k8s\/tools\/grpc-tls\.ts\b.*--out[ =](\S+)/.exec(c)?.[1])
    .find((d) => d !== undefined);
  if (grpcOut && cmds.some((c) => c.includes(`apply -n ${NAMESPACE} -f ${grpcOut}/secrets.yaml`))) {
    for (const role of GRPC_ROLES)
      out.set(grpcSecretName(role), new Map(GRPC_SECRET_KEYS.map((k) => [k, k] as [string, string])));
  }
  for (const cmd of cmds) {
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

/** The commands of the guide's sh blocks, one per line, `\\`-continued lines joined. */
export function guideCommands(): string[] {
  const doc = read('docs/kubernetes.md');
  const blocks = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  return blocks
    .join('\n')
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .filter((l) => l.trim() !== '');
}

// --- monitoring ---

/** External metrics that k8s/monitoring/prometheus-adapter.yaml serves -> the series they read. */
export function adapterExternalMetrics(): Map<string, string[]> {
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
