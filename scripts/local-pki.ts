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

/**
 * Makes a CA named `caName` and a certificate for each of `names` in `dir` (which must exist and be
 * private to the caller). Names are [a-z0-9-] (they become file names and CNs).
 */
export function makeLocalPki(
  dir: string,
  names: readonly string[],
  caName = 'rmt local cluster CA',
): LocalPki {
  for (const n of names) {
    if (!/^[a-z][a-z0-9-]*$/.test(n)) throw new Error(`certificate name ${JSON.stringify(n)}: use [a-z0-9-]`);
  }
  const days = String(LOCAL_CERT_DAYS);
  openssl(dir, [
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-subj',
    `/CN=${caName}`,
    '-days',
    days,
  ]);
  const certs: Record<string, CertFiles> = {};
  try {
    for (const name of names) {
      openssl(dir, [
        'req',
        '-x509',
        ...EC_KEY,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.crt`,
        '-subj',
        `/CN=${name}`,
        '-days',
        days,
        '-addext',
        `subjectAltName=DNS:${name},DNS:localhost,IP:127.0.0.1`,
        '-addext',
        'extendedKeyUsage=serverAuth,clientAuth',
        '-addext',
        'keyUsage=critical,digitalSignature',
        '-addext',
        'basicConstraints=critical,CA:FALSE',
      ]);
      chmodSync(join(dir, `${name}.key`), 0o600);
      certs[name] = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
    }
  } finally {
    rmSync(join(dir, 'ca.key'), { force: true });
  }
  return { ca: join(dir, 'ca.crt'), certs };
}
