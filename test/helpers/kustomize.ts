// A small kustomize for the tests: renders a kustomization directory (k8s/base, k8s/overlays/*) with
// the features k8s/ uses, and refuses any other, so that a manifest change that needs more fails
// here with a message instead of rendering differently from `kubectl kustomize`. test/k8s-manifests.test.ts
// compares its output with `kubectl kustomize` wherever kubectl is installed.
//
// Supported: resources (files and directories), components (kind: Component, applied after the
// kustomization's resources and generators, before its transformers, as kustomize 5.1 and later do),
// configMapGenerator (files, literals, envs; behavior create/replace/merge; only with
// disableNameSuffixHash), generatorOptions.disableNameSuffixHash, patches (strategic merge or JSON
// 6902, from path or inline, with an optional target), namespace, labels (metadata only), images,
// replicas.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const FIELDS = new Set([
  'apiVersion',
  'kind',
  'resources',
  'components',
  'configMapGenerator',
  'generatorOptions',
  'patches',
  'namespace',
  'labels',
  'images',
  'replicas',
]);

const CLUSTER_SCOPED = new Set([
  'Namespace',
  'Node',
  'PersistentVolume',
  'StorageClass',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'PriorityClass',
  'RuntimeClass',
  'IngressClass',
  'ValidatingWebhookConfiguration',
  'MutatingWebhookConfiguration',
]);

// Kinds whose references the namespace transformer would have to rewrite; not supported here.
const UNSUPPORTED_KINDS = new Set(['RoleBinding', 'ClusterRoleBinding', 'APIService']);

export class KustomizeError extends Error {}

export const keyOf = (o: K8sObject): string =>
  `${o.kind}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => structuredClone(v);

function fail(dir: string, what: string): never {
  throw new KustomizeError(`${relative(process.cwd(), dir) || '.'}: ${what}`);
}

function readKustomization(dir: string): JsonObject {
  for (const name of ['kustomization.yaml', 'kustomization.yml', 'Kustomization']) {
    const p = join(dir, name);
    if (existsSync(p)) {
      const k = parse(readFileSync(p, 'utf8')) as unknown;
      if (!isObject(k)) fail(dir, `${name} is not a mapping`);
      return k;
    }
  }
  return fail(dir, 'no kustomization.yaml');
}

/** A path named in a kustomization: relative, and (for files) inside the kustomization's folder. */
function within(dir: string, p: string, file: boolean): string {
  const full = resolve(dir, p);
  if (file && full !== dir && !full.startsWith(dir + sep)) {
    fail(dir, `${p}: files must lie inside the kustomization's folder (kustomize's load restrictor)`);
  }
  if (!existsSync(full)) fail(dir, `${p}: no such file or folder`);
  return full;
}

function parseObjects(path: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(readFileSync(path, 'utf8'))) {
    if (doc.errors.length > 0) throw new KustomizeError(`${path}: ${doc.errors[0].message}`);
    const o = doc.toJS() as unknown;
    if (o === null || o === undefined) continue;
    if (!isObject(o) || typeof o.kind !== 'string' || typeof o.apiVersion !== 'string') {
      throw new KustomizeError(`${path}: a document without apiVersion and kind`);
    }
    const m = o.metadata;
    if (!isObject(m) || typeof m.name !== 'string')
      throw new KustomizeError(`${path}: ${o.kind} without a name`);
    out.push(o as unknown as K8sObject);
  }
  return out;
}

const COMPONENT = 'kustomize.config.k8s.io/v1alpha1';

/** Renders the kustomization in `dir`: the objects `kubectl kustomize dir` prints (order aside). */
export function kustomize(dirIn: string): K8sObject[] {
  const dir = resolve(dirIn);
  const k = readKustomization(dir);
  if (k.kind === 'Component') fail(dir, 'a Component is applied through components:, not built alone');
  return accumulate(dir, k, []);
}

/**
 * One kustomization (or Component) on top of `objects` (empty, or what the kustomization that lists
 * the Component has accumulated): resources, generators, components, then patches and the other
 * transformers, which see everything accumulated so far.
 */
function accumulate(dir: string, k: JsonObject, objectsIn: K8sObject[]): K8sObject[] {
  for (const f of Object.keys(k)) {
    if (!FIELDS.has(f)) fail(dir, `kustomization field "${f}" is not supported by test/helpers/kustomize.ts`);
  }
  let objects = objectsIn;
  for (const r of (k.resources ?? []) as string[]) {
    const p = within(dir, r, false);
    objects.push(...(statSync(p).isDirectory() ? kustomize(p) : parseObjects(p)));
  }
  objects = generateConfigMaps(dir, k, objects);
  for (const c of (k.components ?? []) as string[]) {
    const cdir = within(dir, c, false);
    const ck = readKustomization(cdir);
    if (ck.kind !== 'Component' || ck.apiVersion !== COMPONENT) {
      fail(cdir, `listed in components: of ${dir}, but not a Component (${COMPONENT})`);
    }
    objects = accumulate(cdir, ck, objects);
  }
  for (const o of objects) {
    if (UNSUPPORTED_KINDS.has(o.kind)) fail(dir, `${o.kind} ${o.metadata.name}: kind not supported here`);
  }
  const seen = new Set<string>();
  for (const o of objects) {
    const key = keyOf(o);
    if (seen.has(key)) fail(dir, `${key} is defined twice`);
    seen.add(key);
  }
  // kustomize's order: patches, namespace, labels, replicas, images.
  for (const p of (k.patches ?? []) as JsonObject[]) applyPatch(dir, p, objects);
  if (k.namespace !== undefined) {
    for (const o of objects) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace as string;
  }
  for (const l of (k.labels ?? []) as JsonObject[]) {
    for (const f of Object.keys(l)) if (f !== 'pairs') fail(dir, `labels.${f} is not supported here`);
    for (const o of objects)
      o.metadata.labels = { ...o.metadata.labels, ...(l.pairs as Record<string, string>) };
  }
  for (const r of (k.replicas ?? []) as JsonObject[]) {
    const targets = objects.filter(
      (o) =>
        o.metadata.name === r.name &&
        ['Deployment', 'StatefulSet', 'ReplicaSet', 'ReplicationController'].includes(o.kind),
    );
    if (targets.length === 0) fail(dir, `replicas: no workload named ${String(r.name)}`);
    for (const o of targets) (o.spec as JsonObject).replicas = r.count as number;
  }
  for (const img of (k.images ?? []) as JsonObject[]) setImages(objects, img);
  return objects;
}

function generateConfigMaps(dir: string, k: JsonObject, objects: K8sObject[]): K8sObject[] {
  const gens = (k.configMapGenerator ?? []) as JsonObject[];
  if (gens.length === 0) return objects;
  const noHash = (g: JsonObject) =>
    (isObject(g.options) && g.options.disableNameSuffixHash === true) ||
    (isObject(k.generatorOptions) && k.generatorOptions.disableNameSuffixHash === true);
  for (const g of gens) {
    const name = g.name as string;
    const behavior = (g.behavior as string | undefined) ?? 'create';
    // A replace or merge keeps the name of what it changes (created without a hash, see below).
    if (behavior === 'create' && !noHash(g)) {
      fail(dir, `configMapGenerator ${name}: name suffix hashes are not supported here`);
    }
    const data: Record<string, string> = {};
    for (const f of (g.files ?? []) as string[]) {
      const eq = f.indexOf('=');
      const [key, path] = eq < 0 ? [basename(f), f] : [f.slice(0, eq), f.slice(eq + 1)];
      data[key] = readFileSync(within(dir, path, true), 'utf8');
    }
    for (const l of (g.literals ?? []) as string[]) {
      const eq = l.indexOf('=');
      if (eq < 0) fail(dir, `configMapGenerator ${name}: literal "${l}" is not KEY=VALUE`);
      data[l.slice(0, eq)] = l.slice(eq + 1);
    }
    for (const e of (g.envs ?? []) as string[]) {
      for (const raw of readFileSync(within(dir, e, true), 'utf8').split('\n')) {
        const line = raw.trim();
        if (line === '' || line.startsWith('#')) continue;
        const eq = line.indexOf('=');
        data[line.slice(0, eq)] = line.slice(eq + 1);
      }
    }
    const existing = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name);
    if (behavior === 'create') {
      if (existing) fail(dir, `configMapGenerator ${name}: exists already (use behavior: merge or replace)`);
      objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data });
    } else if (behavior === 'replace' || behavior === 'merge') {
      if (!existing)
        fail(dir, `configMapGenerator ${name}: behavior ${behavior} needs an existing ConfigMap`);
      existing.data =
        behavior === 'replace' ? data : { ...(existing.data as Record<string, string>), ...data };
    } else {
      fail(dir, `configMapGenerator ${name}: behavior ${behavior}`);
    }
  }
  return objects;
}

// --- patches ----------------------------------------------------------------------------------

function matchesTarget(o: K8sObject, t: JsonObject): boolean {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const re = (v: Json | undefined) => (v === undefined ? null : new RegExp(`^(?:${String(v)})$`));
  const checks: [Json | undefined, string][] = [
    [t.kind, o.kind],
    [t.name, o.metadata.name],
    [t.namespace, o.metadata.namespace ?? ''],
    [t.group, group],
    [t.version, version],
  ];
  for (const f of Object.keys(t)) {
    if (!['kind', 'name', 'namespace', 'group', 'version'].includes(f)) {
      throw new KustomizeError(`patch target field "${f}" is not supported here`);
    }
  }
  return checks.every(([want, have]) => re(want)?.test(have) ?? true);
}

function applyPatch(dir: string, p: JsonObject, objects: K8sObject[]): void {
  for (const f of Object.keys(p)) {
    if (!['path', 'patch', 'target'].includes(f)) fail(dir, `patches.${f} is not supported here`);
  }
  const text =
    typeof p.path === 'string' ? readFileSync(within(dir, p.path, true), 'utf8') : (p.patch as string);
  const where = typeof p.path === 'string' ? p.path : 'inline patch';
  const docs = parseAllDocuments(text).map((d) => d.toJS() as Json);
  if (docs.length !== 1) fail(dir, `${where}: one patch per entry here (got ${docs.length})`);
  const patch = docs[0];
  const target = isObject(p.target) ? p.target : undefined;
  if (Array.isArray(patch)) {
    if (!target) fail(dir, `${where}: a JSON 6902 patch needs a target`);
    const hits = objects.filter((o) => matchesTarget(o, target));
    if (hits.length === 0) fail(dir, `${where}: the target matches nothing`);
    for (const o of hits) jsonPatch(o as unknown as JsonObject, patch as JsonObject[], where);
    return;
  }
  if (!isObject(patch)) fail(dir, `${where}: not a patch`);
  const meta = patch.metadata as JsonObject | undefined;
  const hits = target
    ? objects.filter((o) => matchesTarget(o, target))
    : objects.filter(
        (o) => o.kind === patch.kind && o.apiVersion === patch.apiVersion && o.metadata.name === meta?.name,
      );
  if (hits.length === 0) fail(dir, `${where}: patches nothing (${String(patch.kind)} ${String(meta?.name)})`);
  for (const o of hits) {
    const body = clone(patch);
    if (target) {
      // A targeted patch applies whatever its own name says.
      delete body.apiVersion;
      delete body.kind;
      if (isObject(body.metadata)) delete body.metadata.name;
    }
    const merged = mergeObject(o as unknown as JsonObject, body, o.kind);
    for (const key of Object.keys(o)) delete (o as unknown as JsonObject)[key];
    Object.assign(o, merged);
  }
}

/** Merge keys of the lists Kubernetes merges by key (patchMergeKey); other lists are replaced. */
function mergeKeyOf(field: string, items: Json[], kind: string): string | null {
  switch (field) {
    case 'containers':
    case 'initContainers':
    case 'ephemeralContainers':
    case 'env':
    case 'volumes':
    case 'imagePullSecrets':
      return 'name';
    case 'volumeMounts':
      return 'mountPath';
    case 'volumeDevices':
      return 'devicePath';
    case 'ports':
      return kind === 'Service' || items.some((i) => isObject(i) && 'port' in i && !('containerPort' in i))
        ? 'port'
        : 'containerPort';
    default:
      return null;
  }
}

function mergeObject(base: JsonObject, patch: JsonObject, kind: string): JsonObject {
  if (patch.$patch === 'replace') {
    const { $patch: _, ...rest } = patch;
    return clone(rest);
  }
  const out: JsonObject = clone(base);
  for (const [key, value] of Object.entries(patch)) {
    if (key === '$patch') throw new KustomizeError(`$patch: ${String(value)} is not supported here`);
    if (value === null) {
      delete out[key];
    } else if (Array.isArray(value) && Array.isArray(out[key])) {
      out[key] = mergeList(key, out[key] as Json[], value, kind);
    } else if (isObject(value) && isObject(out[key])) {
      out[key] = mergeObject(out[key] as JsonObject, value, kind);
    } else {
      out[key] = stripDirectives(clone(value));
    }
  }
  return out;
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.filter((i) => !(isObject(i) && i.$patch === 'delete')).map(stripDirectives);
  if (isObject(v)) {
    if ('$patch' in v) throw new KustomizeError('$patch directives in new content are not supported here');
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, stripDirectives(x)]));
  }
  return v;
}

// Like kustomize (kyaml): the patch's items first, in the patch's order (merged with the base item
// of the same key), then the base items the patch does not name, in their order.
function mergeList(field: string, base: Json[], patch: Json[], kind: string): Json[] {
  const key = mergeKeyOf(field, [...base, ...patch], kind);
  if (key === null) return stripDirectives(clone(patch)) as Json[];
  const keyOfItem = (i: Json) => (isObject(i) ? JSON.stringify(i[key]) : undefined);
  const named = new Set(patch.map(keyOfItem));
  const out: Json[] = [];
  for (const item of patch) {
    const b = base.find((x) => keyOfItem(x) === keyOfItem(item));
    if (isObject(item) && item.$patch === 'delete') continue;
    out.push(b !== undefined && isObject(b) && isObject(item) ? mergeObject(b, item, kind) : clone(item));
  }
  for (const b of base) if (!named.has(keyOfItem(b))) out.push(clone(b));
  return out;
}

function jsonPatch(doc: JsonObject, ops: JsonObject[], where: string): void {
  for (const op of ops) {
    const path = String(op.path)
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = path.pop();
    if (last === undefined) throw new KustomizeError(`${where}: op on the whole document`);
    let node: Json = doc;
    for (const seg of path) {
      node = Array.isArray(node) ? node[Number(seg)] : isObject(node) ? node[seg] : null;
      if (node === null || node === undefined) throw new KustomizeError(`${where}: no ${String(op.path)}`);
    }
    const parent = node as JsonObject | Json[];
    switch (op.op) {
      case 'add':
        if (Array.isArray(parent))
          parent.splice(last === '-' ? parent.length : Number(last), 0, clone(op.value));
        else parent[last] = clone(op.value);
        break;
      case 'replace':
        if (Array.isArray(parent) ? parent[Number(last)] === undefined : !(last in parent)) {
          throw new KustomizeError(`${where}: replace of missing ${String(op.path)}`);
        }
        if (Array.isArray(parent)) parent[Number(last)] = clone(op.value);
        else parent[last] = clone(op.value);
        break;
      case 'remove':
        if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else delete parent[last];
        break;
      default:
        throw new KustomizeError(`${where}: op "${String(op.op)}" is not supported here`);
    }
  }
}

// --- images -----------------------------------------------------------------------------------

function setImages(objects: K8sObject[], img: JsonObject): void {
  const visit = (v: Json): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (isObject(v)) {
      for (const [k, x] of Object.entries(v)) {
        if ((k === 'containers' || k === 'initContainers') && Array.isArray(x)) {
          for (const c of x) if (isObject(c) && typeof c.image === 'string') c.image = newImage(c.image, img);
        }
        visit(x);
      }
    }
  };
  for (const o of objects) visit(o as unknown as Json);
}

function newImage(image: string, img: JsonObject): string {
  const at = image.indexOf('@');
  const colon = image.lastIndexOf(':');
  const nameEnd = at >= 0 ? at : colon > image.lastIndexOf('/') ? colon : image.length;
  const name = image.slice(0, nameEnd);
  if (name !== img.name) return image;
  let rest = image.slice(nameEnd);
  if (typeof img.digest === 'string') rest = `@${img.digest}`;
  else if (img.newTag !== undefined) rest = `:${String(img.newTag)}`;
  return `${typeof img.newName === 'string' ? img.newName : name}${rest}`;
}
