// NATS in the Kubernetes manifests: its configuration matches the StatefulSet and nats-server accepts
// it; every service reaches it with the credentials its pod mounts (where nats-server is installed).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import test from 'ava';
import { credsAuthenticator, connect as natsConnect } from 'nats';
import { DEFAULT_USERS, NATS_TLS_DIR, natsAuth } from '../k8s/tools/nats-auth.js';
import { createBus } from '../shared/bus/index.js';
import {
  type Any,
  busTls,
  effective,
  fileSource,
  find,
  guideSecrets,
  includesOf,
  mountFor,
  natsConfig,
  natsPodFiles,
  overlayOf,
  podSpec,
  render,
  TARGETS,
  testCerts,
} from './helpers/k8s.js';
import { findNatsServer, startNatsServer } from './helpers/nats-server.js';

// --- NATS ---------------------------------------------------------------------------------------

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
