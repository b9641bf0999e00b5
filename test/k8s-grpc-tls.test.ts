// Mutual TLS for gRPC in the Kubernetes manifests (k8s/components/grpc-mtls, in every overlay) and the
// certificates of k8s/tools/grpc-tls.ts: every service serves and calls over mutual TLS with the files
// of its own Secret, and those files, as the tool makes them, let a peer call through at an address
// no certificate names while a caller without a client certificate is refused.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import test from 'ava';
import { parseAllDocuments } from 'yaml';
import { SUBMIT_FLAGS } from '../cli/submit.js';
import {
  DEFAULT_PEER_NAME,
  GRPC_ROLES,
  GRPC_SECRET_KEYS,
  type GrpcRole,
  type GrpcTls,
  grpcCertNames,
  grpcSecretName,
  grpcSecretsYaml,
  grpcTls,
  main,
  SECRETS_FILE,
} from '../k8s/tools/grpc-tls.js';
import { type CommonSettings, peerClientOptions } from '../services/process.js';
import { parseServiceFlags } from '../shared/config/service-flags.js';
import { healthCheck } from '../shared/rpc/client.js';
import { startServer } from '../shared/rpc/server.js';
import {
  type Any,
  containerEnv,
  effective,
  fileSource,
  find,
  OVERLAYS,
  podSpec,
  render,
  SERVICES,
  TARGETS,
  type Target,
  tempDirs,
} from './helpers/k8s.js';

const haveOpenssl = (() => {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
})();
const sslTest = haveOpenssl ? test : test.skip;
const sslSerial = haveOpenssl ? test.serial : test.serial.skip;
if (!haveOpenssl) console.log('k8s-grpc-tls.test: no openssl: the certificate checks are skipped');

const SERVER_FLAGS = ['tlsCert', 'tlsKey', 'tlsCa'] as const;
const PEER_FLAGS = ['peerTlsCa', 'peerTlsCert', 'peerTlsKey'] as const;
const KEY_OF: Record<string, string> = {
  tlsCert: 'tls.crt',
  tlsKey: 'tls.key',
  tlsCa: 'ca.crt',
  peerTlsCa: 'ca.crt',
  peerTlsCert: 'tls.crt',
  peerTlsKey: 'tls.key',
};
// The targets with the overlays' own components: the overlays and their variants (not the base).
const WITH_MTLS = TARGETS.filter((t) => t !== 'base') as Exclude<Target, 'base'>[];

test('every service in every overlay serves and calls gRPC over mutual TLS with the files of its own Secret', (t) => {
  for (const target of WITH_MTLS) {
    const objs = render(target);
    const eff = effective(t, target, objs);
    t.deepEqual(
      [...new Set(eff.map((e) => e.service))].sort(),
      [...SERVICES].sort(),
      `${target}: the four services`,
    );
    for (const { w, c, service, flags } of eff) {
      const where = `${target}: ${w.metadata.name}/${c.name}`;
      for (const ff of [...SERVER_FLAGS, ...PEER_FLAGS]) {
        const path = flags[ff];
        if (typeof path !== 'string') {
          t.fail(`${where}: ${ff} is not set`);
          continue;
        }
        const src = fileSource(w, c, path);
        t.is(
          src?.secret,
          grpcSecretName(service),
          `${where}: ${ff} ${path} is not on Secret ${grpcSecretName(service)}`,
        );
        t.is(src?.key, KEY_OF[ff], `${where}: ${ff} reads key ${src?.key}`);
        t.false(src?.optional ?? true, `${where}: ${ff} reads an optional Secret`);
      }
      t.is(flags.peerTlsServerName, DEFAULT_PEER_NAME, `${where}: peers verified against the peer name`);
      for (const kind of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        t.falsy(c[kind]?.grpc, `${where}: ${kind} is a gRPC probe, which speaks plaintext only`);
        t.is(c[kind]?.httpGet?.port, 'metrics', `${where}: ${kind} asks the metrics port`);
      }
      // Each pod holds its own key only.
      const secrets = (podSpec(w).volumes ?? [])
        .map((v: Any) => v.secret?.secretName)
        .filter((n: string | undefined) => n?.startsWith('rmt-grpc-'));
      t.deepEqual(secrets, [grpcSecretName(service)], `${where}: gRPC Secrets mounted`);
    }
    // rmt submit: verifies the coordinator and presents the client certificate.
    const job = find(objs, 'CronJob', 'rmt-start-run');
    const jc = podSpec(job).containers[0];
    const f = parseServiceFlags(SUBMIT_FLAGS, jc.args, containerEnv(objs, jc).env) as Any;
    for (const [ff, key] of [
      ['tlsCa', 'ca.crt'],
      ['tlsCert', 'tls.crt'],
      ['tlsKey', 'tls.key'],
    ] as const) {
      const src = typeof f[ff] === 'string' ? fileSource(job, jc, f[ff]) : undefined;
      t.is(src?.secret, grpcSecretName('client'), `${target}: rmt-start-run ${ff}`);
      t.is(src?.key, key, `${target}: rmt-start-run ${ff} key`);
    }
    // The group of the 0440 Secret files is the pod's.
    t.is(
      podSpec(job).securityContext?.fsGroup,
      podSpec(job).securityContext?.runAsGroup,
      `${target}: fsGroup`,
    );
  }
  for (const o of OVERLAYS) t.true(WITH_MTLS.includes(o), `overlay ${o} checked`);
});

let made: GrpcTls | undefined;
const certs = () => {
  made ??= grpcTls();
  return made;
};

sslTest(
  'grpc-tls.ts: each certificate names its Service and the peer name, is signed by the CA and is no CA itself',
  (t) => {
    const tls = certs();
    const dir = mkdtempSync(join(tmpdir(), 'rmt-grpc-tls-test-'));
    tempDirs.push(dir);
    writeFileSync(join(dir, 'ca.crt'), tls.ca);
    for (const role of GRPC_ROLES) {
      const crt = join(dir, `${role}.crt`);
      writeFileSync(crt, tls.certs[role].cert);
      const verify = spawnSync('openssl', ['verify', '-CAfile', join(dir, 'ca.crt'), crt], {
        encoding: 'utf8',
      });
      t.is(verify.status, 0, `${role}: ${verify.stdout}${verify.stderr}`);
      const text = spawnSync('openssl', ['x509', '-in', crt, '-noout', '-text'], { encoding: 'utf8' }).stdout;
      for (const n of grpcCertNames(role, 'rmt', DEFAULT_PEER_NAME)) {
        const [kind, value] = n.split(':');
        t.true(text.includes(`${kind === 'IP' ? 'IP Address' : 'DNS'}:${value}`), `${role}: names ${n}`);
      }
      if (role !== 'client') {
        t.true(text.includes(`DNS:rmt-${role}.rmt.svc.cluster.local`), `${role}: its Service`);
        t.true(text.includes(`DNS:${DEFAULT_PEER_NAME}`), `${role}: the peer name`);
      } else t.false(text.includes('TLS Web Server Authentication'), 'the client certificate serves nothing');
      t.true(text.includes('CA:FALSE'), `${role}: not a CA`);
    }
    const yaml = grpcSecretsYaml(tls);
    for (const role of GRPC_ROLES) t.true(yaml.includes(`name: ${grpcSecretName(role)}`));
    t.false(yaml.includes('PRIVATE KEY-----\n---'), 'keys are block scalars');
    // The command: writes secrets.yaml (private), and refuses to overwrite it.
    const out = join(dir, 'out');
    const env = { GRPC_TLS_OUT: out };
    t.is(main([], env), 0);
    const written = parseAllDocuments(readFileSync(join(out, SECRETS_FILE), 'utf8')).map((d) => d.toJS());
    t.deepEqual(
      written.map((o) => o.metadata.name),
      GRPC_ROLES.map(grpcSecretName),
    );
    for (const o of written) t.deepEqual(Object.keys(o.stringData).sort(), [...GRPC_SECRET_KEYS].sort());
    t.is(statSync(join(out, SECRETS_FILE)).mode & 0o077, 0, 'secrets.yaml is private');
    t.is(main([], env), 1, 'an existing secrets.yaml is not overwritten');
    t.throws(() => grpcTls({ namespace: 'Not A Label' }), { message: /--namespace/ });
    t.throws(() => grpcTls({ days: 0 }), { message: /--days/ });
  },
);

/** The pod's files under `root`: each gRPC flag's path, with its Secret's key from `tls`. */
function podFiles(
  root: string,
  w: Any,
  c: Any,
  flags: Record<string, Any>,
  tls: GrpcTls,
): Record<string, Any> {
  const out: Record<string, Any> = { ...flags };
  for (const ff of [...SERVER_FLAGS, ...PEER_FLAGS]) {
    const src = fileSource(w, c, flags[ff]);
    const role = src?.secret?.replace(/^rmt-grpc-/, '') as GrpcRole;
    const text =
      src?.key === 'ca.crt' ? tls.ca : src?.key === 'tls.crt' ? tls.certs[role].cert : tls.certs[role].key;
    const p = join(root, flags[ff]);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, text);
    out[ff] = p;
  }
  return out;
}

sslSerial(
  "live: with the flags of the dev overlay and the tool's certificates, peer calls at an IP address pass and a call without a client certificate is refused",
  async (t) => {
    const objs = render('dev');
    const tls = certs();
    const root = mkdtempSync(join(tmpdir(), 'rmt-grpc-tls-pods-'));
    tempDirs.push(root);
    const pods = new Map<string, Record<string, Any>>();
    for (const { w, c, service, flags } of effective(t, 'dev', objs)) {
      pods.set(service, podFiles(join(root, service), w, c, flags, tls));
    }
    // The servers: learner (called by the coordinator and workers) and a rollout worker (called by the
    // coordinator at its pod IP), with the TLS of their manifests.
    const servers = [];
    try {
      for (const service of ['learner', 'rollout', 'scorer'] as const) {
        const f = pods.get(service)!;
        servers.push({
          service,
          server: await startServer({
            host: '127.0.0.1',
            port: 0,
            services: [],
            tls: { cert: f.tlsCert, key: f.tlsKey, ca: f.tlsCa },
          }),
        });
      }
      const coordinator = peerClientOptions(pods.get('coordinator') as CommonSettings);
      const worker = peerClientOptions(pods.get('rollout') as CommonSettings);
      for (const { service, server } of servers) {
        // 127.0.0.1 stands in for a pod IP: it is in no service certificate but the coordinator's.
        const address = `127.0.0.1:${server.port}`;
        t.is(
          await healthCheck(address, '', { ...coordinator, deadlineMs: 10_000 }),
          'SERVING',
          `coordinator -> ${service}`,
        );
        if (service === 'learner')
          t.is(
            await healthCheck(address, '', { ...worker, deadlineMs: 10_000 }),
            'SERVING',
            'worker -> learner',
          );
        // The name is what is verified: another one fails the handshake.
        await t.throwsAsync(
          healthCheck(address, '', {
            ...coordinator,
            tls: { ...coordinator.tls!, serverName: 'rmt-nobody' },
            deadlineMs: 3_000,
          }),
          undefined,
          `${service}: a name the certificate does not carry is refused`,
        );
        // TLS that verifies the server, but no client certificate: the handshake fails.
        await t.throwsAsync(
          healthCheck(address, '', {
            tls: { ca: pods.get('coordinator')!.peerTlsCa, serverName: DEFAULT_PEER_NAME },
            deadlineMs: 3_000,
          }),
          undefined,
          `${service}: a caller without a client certificate is refused`,
        );
        // Plaintext: refused too.
        await t.throwsAsync(
          healthCheck(address, '', { deadlineMs: 3_000 }),
          undefined,
          `${service}: plaintext refused`,
        );
      }
      // A certificate from another CA is refused.
      const other = grpcTls();
      const odir = join(root, 'other');
      mkdirSync(odir);
      writeFileSync(join(odir, 'ca.crt'), other.ca);
      writeFileSync(join(odir, 'tls.crt'), other.certs.coordinator.cert);
      writeFileSync(join(odir, 'tls.key'), other.certs.coordinator.key);
      const learner = servers[0].server;
      await t.throwsAsync(
        healthCheck(`127.0.0.1:${learner.port}`, '', {
          tls: {
            ca: pods.get('coordinator')!.peerTlsCa,
            cert: join(odir, 'tls.crt'),
            key: join(odir, 'tls.key'),
            serverName: DEFAULT_PEER_NAME,
          },
          deadlineMs: 3_000,
        }),
        undefined,
        'a certificate of another CA is refused',
      );
    } finally {
      for (const { server } of servers) await server.shutdown(0);
    }
  },
);
