// The throwaway certificate authority of a local cluster (`rmt up`): a CA and one certificate per
// process, made with openssl, so that every gRPC call between the processes is mutual TLS. Each
// certificate names its owner (CN) and loopback (localhost, 127.0.0.1: every process of `rmt up`
// listens there) and is good for both sides of a connection (serverAuth, clientAuth): a service
// serves with it and calls the others with it. The CA's key is deleted once the certificates are
// signed, so that nothing can sign another one; the folder goes when the cluster stops.
import { spawnSync } from 'node:child_process';
import { chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export interface CertFiles {
  cert: string;
  key: string;
}

export interface LocalPki {
  /** The CA certificate every process trusts. */
  ca: string;
  /** A certificate and key per name. */
  certs: Record<string, CertFiles>;
}

/** Validity of the throwaway certificates, in days: a cluster that runs longer needs a restart. */
export const LOCAL_CERT_DAYS = 30;

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.error) {
    throw new Error(`cannot run openssl (apt-get install openssl): ${r.error.message}`);
  }
  if (r.status !== 0) {
    throw new Error(`openssl ${args[0]} failed (exit ${r.status}): ${r.stderr.trim().split('\n')[0] ?? ''}`);
  }
}

/** Whether openssl can be run here. */
export function haveOpenssl(): boolean {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
}

/** One certificate to sign: its file stem, subject name, subject alternative names and use. */
export interface CertRequest {
  file: string;
  cn: string;
  /** openssl subjectAltName entries, e.g. `DNS:localhost`, `IP:127.0.0.1`. */
  sans: readonly string[];
  /** A client-only certificate (clientAuth); otherwise it serves and calls (serverAuth, clientAuth). */
  clientOnly?: boolean;
}

/**
 * Makes a CA and signs `requests` in `dir` (which must exist and be private to the caller), then
 * deletes the CA's key so nothing else can be signed. Files: ca.crt and <file>.crt / <file>.key.
 */
export function makePki(
  dir: string,
  opts: { caName: string; days: number; requests: readonly CertRequest[] },
): LocalPki {
  for (const r of opts.requests) {
    if (!/^[a-z][a-z0-9-]*$/.test(r.file))
      throw new Error(`certificate name ${JSON.stringify(r.file)}: use [a-z0-9-]`);
  }
  const days = String(opts.days);
  openssl(dir, [
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-subj',
    `/CN=${opts.caName}`,
    '-days',
    days,
  ]);
  const certs: Record<string, CertFiles> = {};
  try {
    for (const r of opts.requests) {
      openssl(dir, [
        'req',
        '-x509',
        ...EC_KEY,
        ...['-CA', 'ca.crt', '-CAkey', 'ca.key'],
        ...['-keyout', `${r.file}.key`, '-out', `${r.file}.crt`],
        ...['-subj', `/CN=${r.cn}`, '-days', days],
        ...['-addext', `subjectAltName=${r.sans.join(',')}`],
        ...['-addext', `extendedKeyUsage=${r.clientOnly ? 'clientAuth' : 'serverAuth,clientAuth'}`],
        ...['-addext', 'keyUsage=critical,digitalSignature'],
        ...['-addext', 'basicConstraints=critical,CA:FALSE'],
      ]);
      chmodSync(join(dir, `${r.file}.key`), 0o600);
      certs[r.file] = { cert: join(dir, `${r.file}.crt`), key: join(dir, `${r.file}.key`) };
    }
  } finally {
    rmSync(join(dir, 'ca.key'), { force: true });
  }
  return { ca: join(dir, 'ca.crt'), certs };
}

/**
 * A local cluster's CA and a certificate for each of `names`, each naming itself and loopback.
 * Names are [a-z0-9-] (they become file names and CNs).
 */
export function makeLocalPki(
  dir: string,
  names: readonly string[],
  caName = 'rmt local cluster CA',
): LocalPki {
  return makePki(dir, {
    caName,
    days: LOCAL_CERT_DAYS,
    requests: names.map((n) => ({ file: n, cn: n, sans: [`DNS:${n}`, 'DNS:localhost', 'IP:127.0.0.1'] })),
  });
}
