// docs/kubernetes.md against the manifests and tools: the commands name files, objects, ports,
// labels, flags and paths that exist.
import { existsSync } from 'node:fs';
import { posix } from 'node:path';
import test from 'ava';
import { SUBMIT_FLAGS } from '../cli/submit.js';
import { NATS_AUTH_FLAGS, NATS_TLS_DIR } from '../k8s/tools/nats-auth.js';
import { parseServiceFlags } from '../shared/config/service-flags.js';
import { CoordinatorServiceService } from '../shared/rpc/gen/rmt/v1/coordinator.js';
import {
  type Any,
  adapterExternalMetrics,
  at,
  busTls,
  component,
  containerEnv,
  DIRS,
  effective,
  extras,
  FILE_FLAGS,
  fileSource,
  find,
  guideCommands,
  guideSecrets,
  mountFor,
  NAMESPACE,
  natsConfig,
  podLabels,
  podSpec,
  read,
  render,
  SERVICES,
  TARGETS,
  workloads,
} from './helpers/k8s.js';

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
