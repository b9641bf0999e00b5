// The NATS authentication of the rmt deployment (docs/kubernetes.md, NATS authentication), without
// nsc: an operator, a system account and the account RMT (JetStream on), one user per rmt service,
// all as NATS JWTs (decentralized auth, the "operator mode" of nats-server 2.2 and later). The user of
// each service may publish and subscribe to that service's subjects only (shared/bus/permissions.ts);
// `cli` and other users are unrestricted within the account. Writes to
// --out:
//
//   auth.conf          the server side (operator JWT, system account, MEMORY resolver with the two
//                      account JWTs; with --tls also the client TLS block): Secret rmt-nats-auth
//   <user>.creds       one credentials file (user JWT + nkey seed) per user: Secret rmt-bus-creds
//
//   node --import tsx k8s/tools/nats-auth.ts --out ../rmt-nats-auth
//
// The operator's and the accounts' private keys are never written: to add a user or rotate the keys,
// generate everything again and replace both Secrets. Keep --out outside the repository (the files
// are credentials).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { nkeys } from 'nats';
import { BUS_ROLES, type BusRole, busPermissions } from '../../shared/bus/permissions.js';
import { defineFlags, parseServiceFlagsOrExit } from '../../shared/config/service-flags.js';

type KeyPair = ReturnType<typeof nkeys.createUser>;

/** The users the manifests mount (one per service) and `cli`, for the `nats` CLI from your machine. */
export const DEFAULT_USERS = ['scorer', 'learner', 'rollout', 'coordinator', 'cli'] as const;
/** Where the StatefulSet mounts Secret rmt-tls (the server's certificate, key and CA). */
export const NATS_TLS_DIR = '/etc/nats/tls';

export const NATS_AUTH_FLAGS = defineFlags({
  out: {
    type: 'string',
    required: true,
    env: 'NATS_AUTH_OUT',
    doc: 'folder to write auth.conf and the creds to',
  },
  users: {
    type: 'string',
    default: DEFAULT_USERS.join(','),
    env: 'NATS_AUTH_USERS',
    doc: 'users of account RMT, comma-separated (one creds file each)',
  },
  tls: {
    type: 'bool',
    env: 'NATS_AUTH_TLS',
    doc: `also require TLS from clients, with the certificate in Secret rmt-tls (${NATS_TLS_DIR})`,
  },
});

const b64url = (b: Uint8Array | string) => Buffer.from(b).toString('base64url');

/** A NATS JWT (v2): ed25519-nkey signed by `issuer`, claims `nats` about `subject`. */
function jwt(issuer: KeyPair, subject: string, name: string, nats: Record<string, unknown>): string {
  const claims: Record<string, unknown> = {
    jti: '',
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name,
    sub: subject,
    nats: { ...nats, version: 2 },
  };
  // The id nsc gives a JWT: a hash of the claims without it.
  claims.jti = createHash('sha256').update(JSON.stringify(claims)).digest('base64url').slice(0, 43);
  const head = `${b64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }))}.${b64url(JSON.stringify(claims))}`;
  return `${head}.${b64url(issuer.sign(new TextEncoder().encode(head)))}`;
}

const UNLIMITED = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
};

function credsFile(userJwt: string, seed: Uint8Array): string {
  return `-----BEGIN NATS USER JWT-----
${userJwt}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
${new TextDecoder().decode(seed)}
------END USER NKEY SEED------

*************************************************************
`;
}

export interface NatsAuth {
  /** The server side: include it from nats.conf. */
  authConf: string;
  /** Credentials file of each user. */
  creds: Record<string, string>;
  /** Public keys, for tests and logs. */
  operator: string;
  systemAccount: string;
  account: string;
}

/**
 * Generates a fresh operator, accounts SYS and RMT, and users of RMT. `tls` adds the servers' TLS
 * block, with tls.crt, tls.key and ca.crt in `tlsDir` (default: where the StatefulSet mounts them).
 */
export function natsAuth(
  users: readonly string[] = DEFAULT_USERS,
  opts: { tls?: boolean; tlsDir?: string } = {},
): NatsAuth {
  for (const u of users) {
    if (!/^[a-z][a-z0-9-]*$/.test(u)) throw new Error(`user name ${JSON.stringify(u)}: use [a-z0-9-]`);
  }
  if (new Set(users).size !== users.length) throw new Error('user names repeat');
  const operator = nkeys.createOperator();
  const sys = nkeys.createAccount();
  const rmt = nkeys.createAccount();
  const operatorJwt = jwt(operator, operator.getPublicKey(), 'rmt', {
    type: 'operator',
    system_account: sys.getPublicKey(),
  });
  // The system account: the servers' own traffic; no user of it is issued.
  const sysJwt = jwt(operator, sys.getPublicKey(), 'SYS', {
    type: 'account',
    limits: { ...UNLIMITED, mem_storage: 0, disk_storage: 0, streams: 0, consumer: 0 },
    default_permissions: { pub: {}, sub: {} },
  });
  // rmt's account: JetStream without limits of its own (the server's jetstream block caps it).
  const rmtJwt = jwt(operator, rmt.getPublicKey(), 'RMT', {
    type: 'account',
    limits: { ...UNLIMITED, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 },
    default_permissions: { pub: {}, sub: {} },
  });
  const creds: Record<string, string> = {};
  for (const name of users) {
    const user = nkeys.createUser();
    // A service's user gets that service's subjects only; any other user (cli) is the operator's.
    const role = (BUS_ROLES as readonly string[]).includes(name) ? busPermissions(name as BusRole) : null;
    const userJwt = jwt(rmt, user.getPublicKey(), name, {
      type: 'user',
      pub: role ? { allow: role.publish } : {},
      sub: role ? { allow: role.subscribe } : {},
      subs: -1,
      data: -1,
      payload: -1,
    });
    creds[name] = credsFile(userJwt, user.getSeed());
  }
  const dir = opts.tlsDir ?? NATS_TLS_DIR;
  const tls = opts.tls
    ? `
# Clients must use TLS (rmt: RMT_BUS_TLS_CA; docs/kubernetes.md, TLS). Secret rmt-tls.
tls {
  cert_file: "${dir}/tls.crt"
  key_file: "${dir}/tls.key"
  ca_file: "${dir}/ca.crt"
  timeout: 5
}
`
    : '';
  const authConf = `# Generated by k8s/tools/nats-auth.ts: the authentication of the rmt-nats servers (Secret
# rmt-nats-auth, included by nats.conf). Operator "rmt", system account SYS, account RMT (JetStream)
# with the users ${users.join(', ')}.
operator: ${operatorJwt}
system_account: ${sys.getPublicKey()}
resolver: MEMORY
resolver_preload: {
  # SYS
  ${sys.getPublicKey()}: ${sysJwt}
  # RMT
  ${rmt.getPublicKey()}: ${rmtJwt}
}
${tls}`;
  return {
    authConf,
    creds,
    operator: operator.getPublicKey(),
    systemAccount: sys.getPublicKey(),
    account: rmt.getPublicKey(),
  };
}

/** The command; returns the exit code. */
export function main(argv: readonly string[], env: Record<string, string | undefined> = process.env): number {
  const f = parseServiceFlagsOrExit(
    NATS_AUTH_FLAGS,
    'node --import tsx k8s/tools/nats-auth.ts --out <dir> [--users a,b,...] [--tls]',
    argv,
    env,
  );
  const users = f.users
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
  const auth = natsAuth(users, { tls: f.tls });
  const files = ['auth.conf', ...users.map((u) => `${u}.creds`)];
  const clash = files.filter((n) => existsSync(join(f.out, n)));
  if (clash.length > 0) {
    process.stderr.write(
      `error: ${f.out} already has ${clash.join(', ')}; remove them or pick another --out\n`,
    );
    return 1;
  }
  mkdirSync(f.out, { recursive: true, mode: 0o700 });
  writeFileSync(join(f.out, 'auth.conf'), auth.authConf, { mode: 0o600 });
  for (const u of users) writeFileSync(join(f.out, `${u}.creds`), auth.creds[u], { mode: 0o600 });
  process.stdout.write(
    `wrote ${files.map((n) => join(f.out, n)).join(', ')}\n` +
      `operator ${auth.operator}, system account ${auth.systemAccount}, account RMT ${auth.account}\n`,
  );
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exit(main(process.argv.slice(2)));
}
