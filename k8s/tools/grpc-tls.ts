// The certificates of mutual TLS between the rmt services on Kubernetes (docs/kubernetes.md, TLS),
// made with openssl: a CA, and one certificate per role (scorer, learner, rollout, coordinator and
// client, for `rmt submit`), written to --out as secrets.yaml, one Secret per role (tls.crt,
// tls.key, ca.crt), which k8s/components/grpc-mtls mounts:
//
//   node --import tsx k8s/tools/grpc-tls.ts --out ../rmt-grpc-tls
//   kubectl apply -n rmt -f ../rmt-grpc-tls/secrets.yaml
//
// Each certificate names its Service (rmt-<role>, with the namespace's DNS names) and one peer name
// shared by all services (--peer-name): the coordinator dials rollout workers at their pod IPs, which
// no certificate names, so every service verifies the one it calls against the peer name
// (--peer-tls-server-name) and the CA. The coordinator's also names localhost and 127.0.0.1, for
// `kubectl port-forward`. The CA's key is deleted once the certificates are signed: to add a role or
// rotate, generate everything again and replace the Secrets. Keep --out outside the repository.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { makePki } from '../../cli/local-pki.js';
import { defineFlags, parseServiceFlagsOrExit } from '../../shared/config/service-flags.js';

/** The roles that get a certificate: the four services and the client that submits runs. */
export const GRPC_ROLES = ['scorer', 'learner', 'rollout', 'coordinator', 'client'] as const;
export type GrpcRole = (typeof GRPC_ROLES)[number];
/** The Secret of each role. */
export const grpcSecretName = (role: GrpcRole) => `rmt-grpc-${role}`;
/** The keys of each Secret. */
export const GRPC_SECRET_KEYS = ['tls.crt', 'tls.key', 'ca.crt'] as const;
/** Where k8s/components/grpc-mtls mounts a pod's Secret. */
export const GRPC_TLS_DIR = '/etc/rmt/grpc';
/** The name every service certificate carries and every caller verifies (--peer-tls-server-name). */
export const DEFAULT_PEER_NAME = 'rmt-peer';
/** The file the tool writes into --out. */
export const SECRETS_FILE = 'secrets.yaml';

export const GRPC_TLS_FLAGS = defineFlags({
  out: { type: 'string', required: true, env: 'GRPC_TLS_OUT', doc: `folder to write ${SECRETS_FILE} to` },
  namespace: {
    type: 'string',
    default: 'rmt',
    env: 'GRPC_TLS_NAMESPACE',
    doc: 'namespace of the Services (their DNS names go into the certificates) and of the Secrets',
  },
  'peer-name': {
    type: 'string',
    default: DEFAULT_PEER_NAME,
    env: 'GRPC_TLS_PEER_NAME',
    doc: 'name every service certificate carries; k8s/components/grpc-mtls verifies it',
  },
  days: { type: 'int', default: 365, env: 'GRPC_TLS_DAYS', doc: 'validity of the certificates, in days' },
});

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export function grpcCertNames(role: GrpcRole, namespace: string, peerName: string): string[] {
  if (role === 'client') return ['DNS:rmt-client'];
  const svc = `rmt-${role}`;
  const names = [
    svc,
    `${svc}.${namespace}`,
    `${svc}.${namespace}.svc`,
    `${svc}.${namespace}.svc.cluster.local`,
  ];
  const out = [...names, peerName].map((n) => `DNS:${n}`);
  if (role === 'coordinator') out.push('DNS:localhost', 'IP:127.0.0.1');
  return out;
}

export interface GrpcTls {
  /** PEM of the CA certificate. */
  ca: string;
  /** PEM certificate and key per role. */
  certs: Record<GrpcRole, { cert: string; key: string }>;
}

/** Makes a fresh CA and the roles' certificates (in a temporary folder, removed afterwards). */
export function grpcTls(opts: { namespace?: string; peerName?: string; days?: number } = {}): GrpcTls {
  const namespace = opts.namespace ?? 'rmt';
  const peerName = opts.peerName ?? DEFAULT_PEER_NAME;
  const days = opts.days ?? 365;
  if (!DNS_LABEL.test(namespace))
    throw new Error(`--namespace ${JSON.stringify(namespace)}: not a DNS label`);
  if (!DNS_LABEL.test(peerName)) throw new Error(`--peer-name ${JSON.stringify(peerName)}: not a DNS label`);
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new Error(`--days ${days}: use 1 to 3650`);
  const dir = mkdtempSync(join(tmpdir(), 'rmt-grpc-tls-'));
  try {
    const pki = makePki(dir, {
      caName: 'rmt gRPC CA',
      days,
      // A service serves with its certificate and calls the others with it; the client only calls.
      requests: GRPC_ROLES.map((role) => ({
        file: role,
        cn: `rmt-${role}`,
        sans: grpcCertNames(role, namespace, peerName),
        clientOnly: role === 'client',
      })),
    });
    const certs = {} as GrpcTls['certs'];
    for (const role of GRPC_ROLES) {
      certs[role] = {
        cert: readFileSync(pki.certs[role].cert, 'utf8'),
        key: readFileSync(pki.certs[role].key, 'utf8'),
      };
    }
    return { ca: readFileSync(join(dir, 'ca.crt'), 'utf8'), certs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The Secrets of `tls` as one YAML stream. */
export function grpcSecretsYaml(tls: GrpcTls, namespace = 'rmt'): string {
  return GRPC_ROLES.map(
    (role) =>
      `---\n${stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: grpcSecretName(role),
          namespace,
          labels: { 'app.kubernetes.io/name': 'rmt', 'app.kubernetes.io/component': role },
        },
        type: 'Opaque',
        stringData: { 'tls.crt': tls.certs[role].cert, 'tls.key': tls.certs[role].key, 'ca.crt': tls.ca },
      })}`,
  ).join('');
}

/** The command; returns the exit code. */
export function main(argv: readonly string[], env: Record<string, string | undefined> = process.env): number {
  const f = parseServiceFlagsOrExit(
    GRPC_TLS_FLAGS,
    'node --import tsx k8s/tools/grpc-tls.ts --out <dir> [--namespace rmt] [--peer-name rmt-peer] [--days 365]',
    argv,
    env,
  );
  const path = join(f.out, SECRETS_FILE);
  if (existsSync(path)) {
    process.stderr.write(`error: ${path} exists; remove it or pick another --out\n`);
    return 1;
  }
  let tls: GrpcTls;
  try {
    tls = grpcTls({ namespace: f.namespace, peerName: f.peerName, days: f.days });
  } catch (e) {
    process.stderr.write(`error: ${(e as Error).message}\n`);
    return 1;
  }
  mkdirSync(f.out, { recursive: true, mode: 0o700 });
  writeFileSync(path, grpcSecretsYaml(tls, f.namespace), { mode: 0o600 });
  process.stdout.write(
    `wrote ${path}: Secrets ${GRPC_ROLES.map(grpcSecretName).join(', ')} (namespace ${f.namespace}, peer name ${f.peerName})\n`,
  );
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exit(main(process.argv.slice(2)));
}
