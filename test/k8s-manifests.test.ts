// The Kubernetes manifests (docs/kubernetes.md): k8s/base, every overlay and every overlay with the
// optional components render (with kustomize itself) and validate against the Kubernetes API types
// offline, and agree with the services (flags, env vars, ports, addresses, paths, resources, network
// policies) and with the tools and monitoring files. No cluster, no network.
import { createRequire } from 'node:module';
import { relative, resolve } from 'node:path';
import test from 'ava';
import ts from 'typescript';
import { parse } from 'yaml';
import { SUBMIT_FLAGS } from '../cli/submit.js';
import { DEFAULT_USERS } from '../k8s/tools/nats-auth.js';
import { parseServiceFlags } from '../shared/config/service-flags.js';
import { parseTrainConfig } from '../shared/config/train-config.js';
import {
  type Any,
  adapterExternalMetrics,
  at,
  byKind,
  bytesOf,
  checkFiles,
  component,
  componentsOf,
  containerEnv,
  cpuOf,
  effective,
  envNamesOf,
  extras,
  fileSource,
  find,
  guideSecrets,
  leadsTo,
  mountFor,
  NAMESPACE,
  overlayOf,
  POD,
  podLabels,
  podSpec,
  read,
  render,
  resolveAddress,
  rmtContainers,
  SERVICES,
  type Service,
  selects,
  TARGETS,
  workloads,
} from './helpers/k8s.js';
import { type K8sObject, KUBECTL_PACKAGE, keyOf, kubectlVersions } from './helpers/kustomize.js';

// --- rendering and API validation ---------------------------------------------------------------

test(`the renderer is kustomize 5.5 of kubectl 1.32 (the dev dependency ${KUBECTL_PACKAGE})`, (t) => {
  const v = kubectlVersions();
  t.regex(v.kubectl, /^v1\.32\./);
  t.regex(v.kustomize, /^v5\.5\./);
});

test('k8s/base and every overlay render', (t) => {
  for (const target of TARGETS) {
    const objs = render(target);
    t.true(objs.length > 20, target);
    for (const kind of ['Deployment', 'Service', 'StatefulSet', 'ConfigMap', 'PersistentVolumeClaim']) {
      t.true(byKind(objs, kind).length > 0, `${target}: no ${kind}`);
    }
    if (target !== 'base') {
      for (const o of objs) t.is(o.metadata.namespace, NAMESPACE, `${target}: ${keyOf(o)}`);
    }
  }
});

const requireCjs = createRequire(import.meta.url);
const isCustom = (o: K8sObject) => o.apiVersion.startsWith('monitoring.coreos.com/');

test('every object validates against the Kubernetes 1.27 API types (kubernetes-models), unknown fields included', (t) => {
  const all: { where: string; o: K8sObject }[] = [];
  for (const target of TARGETS) for (const o of render(target)) all.push({ where: target, o });
  for (const o of extras()) all.push({ where: 'k8s/tools, k8s/monitoring', o });
  // Required fields, types and formats: the models' validators.
  for (const { where, o } of all) {
    if (isCustom(o)) continue;
    const mod = requireCjs(`kubernetes-models/${o.apiVersion}/${o.kind}`) as Record<
      string,
      new (
        d: unknown,
      ) => { validate(): void }
    >;
    try {
      new mod[o.kind](o).validate();
    } catch (e) {
      t.fail(`${where}: ${keyOf(o)}: ${(e as Error).message}`);
    }
  }
  // Unknown fields: the validators let them through, so type-check the objects as object literals
  // against the models' TypeScript types (excess property checks), in memory.
  const file = at('test/__k8s_objects__.ts');
  const lines: string[] = [];
  const whereAt: string[] = [];
  all.forEach(({ where, o }, i) => {
    if (isCustom(o)) return;
    lines.push(`import type { I${o.kind} as T${i} } from 'kubernetes-models/${o.apiVersion}/${o.kind}';`);
    whereAt.push('');
    lines.push(`export const o${i}: T${i} = ${JSON.stringify(o)};`);
    whereAt.push(`${where}: ${keyOf(o)}`);
  });
  const src = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2022.d.ts'],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (f, lang, ...rest) =>
    resolve(f) === file ? ts.createSourceFile(f, src, lang) : getSourceFile(f, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (f) => resolve(f) === file || fileExists(f);
  const readFile = host.readFile.bind(host);
  host.readFile = (f) => (resolve(f) === file ? src : readFile(f));
  const program = ts.createProgram([file], options, host);
  const diags = ts.getPreEmitDiagnostics(program);
  for (const d of diags) {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    t.fail(`${whereAt[line] ?? '?'}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n').slice(0, 400)}`);
  }
  t.true(all.length > 100);
});

// --- the services' flags, ports and addresses ---------------------------------------------------

test('rmt containers: flags and RMT_* variables the services accept, probes on the ports they listen on, addresses that lead to the right pods', async (t) => {
  for (const target of TARGETS) {
    const objs = render(target);
    const eff = effective(t, target, objs);
    t.deepEqual([...new Set(eff.map((e) => e.service))].sort(), [...SERVICES].sort(), target);
    const grpcPort = (s: Service) => eff.find((e) => e.service === s)!.flags.port as number;
    for (const { w, c, service, flags } of eff) {
      const where = `${target}: ${w.metadata.name}/${c.name}`;
      t.true(
        ['0.0.0.0', '::'].includes(flags.host),
        `${where}: --host ${flags.host}: the services listen on loopback unless the manifest says --host=0.0.0.0 (probes and peers come from outside)`,
      );
      const ports = new Map<string, number>((c.ports ?? []).map((p: Any) => [p.name, p.containerPort]));
      t.is(ports.get('grpc'), flags.port, `${where}: container port "grpc" is not --port`);
      t.is(
        ports.get('metrics'),
        flags.metricsPort,
        `${where}: container port "metrics" is not --metrics-port`,
      );
      for (const kind of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        const p = c[kind];
        if (!p) {
          t.fail(`${where}: no ${kind}`);
          continue;
        }
        if (p.grpc) {
          t.is(
            p.grpc.port,
            flags.port,
            `${where}: ${kind} checks port ${p.grpc.port}, the service listens on ${flags.port}`,
          );
          t.true(!p.grpc.service, `${where}: ${kind}: the health service reports the overall status as ""`);
        } else if (p.httpGet) {
          const port = typeof p.httpGet.port === 'string' ? ports.get(p.httpGet.port) : p.httpGet.port;
          t.is(port, flags.metricsPort, `${where}: ${kind} is not on the metrics port`);
          t.true(
            ['/healthz', '/readyz'].includes(p.httpGet.path),
            `${where}: ${kind} path ${p.httpGet.path}`,
          );
        } else t.fail(`${where}: ${kind} is neither gRPC health nor /healthz`);
        if (flags.tlsCert && p.grpc) t.fail(`${where}: the kubelet's gRPC probe cannot speak TLS`);
      }
      const ann = w.spec.template?.metadata?.annotations;
      if (ann?.['prometheus.io/port']) t.is(Number(ann['prometheus.io/port']), flags.metricsPort, where);
      // The bus: a NATS Service whose pods listen where it leads.
      for (const server of String(flags.bus).split(',')) {
        const m = /^(?:nats|tls):\/\/(.+)$/.exec(server);
        t.truthy(m, `${where}: --bus ${flags.bus}`);
        const r = leadsTo(t, objs, m![1], where);
        t.deepEqual(r.pods.map(component), ['nats'], `${where}: --bus leads to ${r.pods.map(component)}`);
        t.is(r.port, 4222, `${where}: --bus leads to NATS port ${r.port}, not the client port`);
      }
      // Where others reach it.
      if (service === 'rollout') {
        t.is(
          flags.advertise,
          `${POD.ip}:${flags.port}`,
          `${where}: --advertise must be the pod IP and --port`,
        );
        t.is(flags.workerId, POD.name, `${where}: --worker-id should be the pod name`);
      } else {
        const r = leadsTo(t, objs, flags.advertise, where);
        t.deepEqual(
          r.pods.map((p) => p.metadata.name),
          [w.metadata.name],
          `${where}: --advertise`,
        );
        t.is(r.port, flags.port, `${where}: --advertise leads to ${r.port}`);
      }
      const dials: [string, Service][] =
        service === 'coordinator'
          ? [
              [flags.scorer, 'scorer'],
              // Every data-parallel learner, by rank.
              ...(flags.learner as string).split(',').map((a): [string, Service] => [a, 'learner']),
            ]
          : service === 'rollout'
            ? [[flags.learner, 'learner']]
            : [];
      for (const [address, to] of dials) {
        const r = leadsTo(t, objs, address, where);
        t.deepEqual(r.pods.map(component), [to], `${where}: ${address} leads to ${r.pods.map(component)}`);
        t.is(
          r.port,
          grpcPort(to),
          `${where}: ${address} leads to port ${r.port}, ${to} listens on ${grpcPort(to)}`,
        );
      }
    }
    // Files the flags name (credentials, certificates, keys) are keys of the Secrets and ConfigMaps
    // mounted there, and no service reads one from an optional Secret: without it the service would
    // crash at start instead of the pod waiting for the Secret.
    for (const { w, c, flags } of eff) {
      checkFiles(t, objs, w, c, flags, `${target}: ${w.metadata.name}/${c.name}`);
    }
    // The bus: one replica count of the RMT stream for every service, one replica per NATS server.
    const sts = find(objs, 'StatefulSet', 'rmt-nats');
    const replicas = [...new Set(eff.map((e) => e.flags.busReplicas as number))];
    t.is(replicas.length, 1, `${target}: the services disagree on RMT_BUS_REPLICAS: ${replicas.join(', ')}`);
    t.is(
      replicas[0],
      sts.spec.replicas,
      `${target}: RMT_BUS_REPLICAS ${replicas[0]} for ${sts.spec.replicas} NATS servers`,
    );
    // The bus credentials reach every service: its own user's creds file, from Secret rmt-bus-creds
    // as k8s/tools/nats-auth.ts writes it (the live check is in the NATS authentication test).
    for (const { w, c, service, flags } of eff) {
      const where = `${target}: ${w.metadata.name}/${c.name}`;
      if (!/^(nats|tls):\/\//.test(flags.bus)) continue;
      t.truthy(flags.busCreds, `${where}: connects to NATS without credentials (RMT_BUS_CREDS)`);
      const src = fileSource(w, c, flags.busCreds ?? '');
      t.is(
        src?.secret,
        'rmt-bus-creds',
        `${where}: --bus-creds ${flags.busCreds} is not from Secret rmt-bus-creds`,
      );
      t.is(src?.key, `${service}.creds`, `${where}: --bus-creds should be the ${service} user's own`);
      t.true(
        (DEFAULT_USERS as readonly string[]).includes(service),
        `${where}: k8s/tools/nats-auth.ts writes no ${service}.creds`,
      );
    }
    t.is(
      new Set(eff.map((e) => e.flags.busTlsCa !== undefined)).size,
      1,
      `${target}: some services reach NATS over TLS, others do not`,
    );
    // TLS between the services: whoever calls a service that serves TLS verifies it, and whoever
    // verifies calls only services that serve TLS (one --peer-tls-ca per process).
    const flagsOf = (s: Service) => eff.find((e) => e.service === s)!.flags;
    const calls: [Service, Service][] = [
      ['coordinator', 'scorer'],
      ['coordinator', 'learner'],
      ['coordinator', 'rollout'],
      ['rollout', 'learner'],
    ];
    for (const [from, to] of calls) {
      t.is(
        flagsOf(from).peerTlsCa !== undefined,
        flagsOf(to).tlsCert !== undefined,
        `${target}: ${from} -> ${to}: ${flagsOf(to).tlsCert ? 'TLS' : 'plaintext'} server, ${flagsOf(from).peerTlsCa ? 'TLS' : 'plaintext'} client`,
      );
      if (flagsOf(to).tlsCa)
        t.truthy(flagsOf(from).peerTlsCert, `${target}: ${to} wants client certificates from ${from}`);
    }
    // The run starter (`rmt submit`): its flags, its coordinator address, TLS as the coordinator serves it.
    const job = find(objs, 'CronJob', 'rmt-start-run');
    const jc = podSpec(job).containers[0];
    t.deepEqual(jc.command, ['node', 'bin/rmt.js', 'submit'], `${target}: rmt-start-run runs \`rmt submit\``);
    const { env, names } = containerEnv(objs, jc);
    const known = envNamesOf(SUBMIT_FLAGS);
    for (const n of names) if (n.startsWith('RMT_')) t.true(known.has(n), `${target}: rmt-start-run: ${n}`);
    const f = parseServiceFlags(SUBMIT_FLAGS, jc.args, env);
    const r = leadsTo(t, objs, f.coordinator, `${target}: rmt-start-run`);
    t.deepEqual(r.pods.map(component), ['coordinator'], `${target}: rmt-start-run --coordinator`);
    t.is(r.port, grpcPort('coordinator'));
    checkFiles(t, objs, job, jc, f, `${target}: rmt-start-run`);
    const coordinator = flagsOf('coordinator');
    t.is(
      f.tlsCa !== undefined,
      coordinator.tlsCert !== undefined,
      `${target}: rmt-start-run ${f.tlsCa ? 'speaks' : 'does not speak'} TLS, the coordinator ${coordinator.tlsCert ? 'serves TLS' : 'is plaintext'}`,
    );
    if (coordinator.tlsCa) t.truthy(f.tlsCert, `${target}: the coordinator wants a client certificate`);
    // Every Service leads to container ports of the pods it selects.
    for (const svc of byKind(objs, 'Service')) {
      for (const p of svc.spec.ports) {
        try {
          resolveAddress(objs, `${svc.metadata.name}:${p.port}`);
        } catch (e) {
          t.fail(`${target}: ${(e as Error).message}`);
        }
      }
    }
  }
});

test('volumes and paths: init_from on the read-only models volume, out_dir on a claim of each service that writes it', async (t) => {
  for (const target of TARGETS) {
    const objs = render(target);
    const cm = find(objs, 'ConfigMap', 'rmt-run');
    t.truthy(cm?.data?.['run.yaml'], `${target}: ConfigMap rmt-run has no run.yaml`);
    const cfg = parseTrainConfig(parse(cm.data['run.yaml']), `${target}: rmt-run`);
    const eff = effective(t, target, objs);
    const of = (s: Service) => eff.find((e) => e.service === s)!;
    // model.init_from: read by the scorer, the learner and the workers.
    for (const s of ['scorer', 'learner', 'rollout'] as const) {
      const { w, c } = of(s);
      const hit = mountFor(w, c, cfg.model.init_from);
      t.truthy(hit, `${target}: ${s} does not mount model.init_from (${cfg.model.init_from})`);
      t.true(hit?.m.readOnly === true, `${target}: ${s} should mount the models read-only`);
      t.is(hit?.v.persistentVolumeClaim?.claimName, 'rmt-models', `${target}: ${s}`);
    }
    // run.out_dir: written by the scorer (data/), the learner (checkpoints) and the coordinator.
    const claims = new Map<string, string>();
    for (const s of ['scorer', 'learner', 'coordinator'] as const) {
      const { w, c } = of(s);
      const hit = mountFor(w, c, cfg.run.out_dir);
      t.truthy(hit, `${target}: ${s} does not mount run.out_dir (${cfg.run.out_dir})`);
      t.not(hit?.m.readOnly, true, `${target}: ${s} writes under run.out_dir`);
      const claim = hit?.v.persistentVolumeClaim?.claimName;
      t.truthy(claim, `${target}: ${s} keeps run.out_dir on a volume that dies with the pod`);
      t.truthy(find(objs, 'PersistentVolumeClaim', claim), `${target}: no claim ${claim}`);
      t.false(claims.has(claim), `${target}: ${s} and ${claims.get(claim)} share ${claim}`);
      claims.set(claim, s);
    }
    t.is(claims.get('rmt-learner-checkpoints'), 'learner', `${target}: the learner's checkpoint claim`);
    t.is(
      mountFor(of('rollout').w, of('rollout').c, cfg.run.out_dir),
      undefined,
      'workers write nothing there',
    );
    // Every claim, ConfigMap and Secret a pod names exists (or is optional).
    for (const w of workloads(objs)) {
      for (const v of podSpec(w).volumes ?? []) {
        if (v.persistentVolumeClaim)
          t.truthy(
            find(objs, 'PersistentVolumeClaim', v.persistentVolumeClaim.claimName),
            `${target}: ${w.metadata.name}: claim ${v.persistentVolumeClaim.claimName}`,
          );
        if (v.configMap)
          t.truthy(
            find(objs, 'ConfigMap', v.configMap.name),
            `${target}: ${w.metadata.name}: ConfigMap ${v.configMap.name}`,
          );
        // A Secret may come from outside the manifests (credentials never go into the repository):
        // then it is optional, or the guide creates it.
        if (v.secret)
          t.true(
            v.secret.optional === true ||
              !!find(objs, 'Secret', v.secret.secretName) ||
              guideSecrets().has(v.secret.secretName),
            `${target}: ${w.metadata.name}: Secret ${v.secret.secretName} is not optional, not in the manifests and not created by docs/kubernetes.md`,
          );
        // ...with the keys the pod mounts.
        for (const item of v.secret?.items ?? []) {
          const guide = guideSecrets().get(v.secret.secretName);
          if (guide)
            t.true(
              guide.has(item.key),
              `${target}: ${w.metadata.name}: docs/kubernetes.md creates Secret ${v.secret.secretName} without key ${item.key}`,
            );
        }
      }
      for (const c of podSpec(w).containers) {
        for (const m of c.volumeMounts ?? []) {
          t.truthy(
            mountFor(w, c, m.mountPath)?.v,
            `${target}: ${w.metadata.name}/${c.name} mounts unknown volume ${m.name}`,
          );
        }
      }
    }
    // ReadWriteOnce claims: one pod at a time, so Recreate and one replica.
    for (const d of byKind(objs, 'Deployment')) {
      const rwo = (podSpec(d).volumes ?? []).some((v: Any) => {
        if (!v.persistentVolumeClaim || v.persistentVolumeClaim.readOnly) return false;
        return find(
          objs,
          'PersistentVolumeClaim',
          v.persistentVolumeClaim.claimName,
        )?.spec.accessModes.includes('ReadWriteOnce');
      });
      if (rwo) {
        t.is(d.spec.strategy?.type, 'Recreate', `${target}: ${d.metadata.name} has a ReadWriteOnce volume`);
        t.is(d.spec.replicas, 1, `${target}: ${d.metadata.name} has a ReadWriteOnce volume`);
      }
    }
    // The models volume is mounted on many nodes at once (any worker anywhere), except in dev.
    const modes = find(objs, 'PersistentVolumeClaim', 'rmt-models').spec.accessModes;
    if (overlayOf(target) === 'dev') t.deepEqual(modes, ['ReadWriteOnce']);
    else
      t.true(
        modes.includes('ReadWriteMany') || modes.includes('ReadOnlyMany'),
        `${target}: rmt-models ${modes}`,
      );
    // The run starter reads the config where the ConfigMap is mounted.
    const job = find(objs, 'CronJob', 'rmt-start-run');
    const jc = podSpec(job).containers[0];
    const f = parseServiceFlags(SUBMIT_FLAGS, jc.args, containerEnv(objs, jc).env);
    const hit = mountFor(job, jc, f.config);
    t.is(hit?.v.configMap?.name, 'rmt-run', `${target}: --config ${f.config} is not in ConfigMap rmt-run`);
    t.is(relative(hit!.m.mountPath, f.config), 'run.yaml');
  }
});

// --- workloads ----------------------------------------------------------------------------------

test('workloads: requests and limits, non-root read-only containers, grace periods that cover the shutdown', async (t) => {
  const deadline = /timeoutMs:\s*([\d_]+)/.exec(read('services/process.ts'));
  t.truthy(deadline, 'services/process.ts: the shutdown deadline (timeoutMs) not found');
  const deadlineS = Number(deadline![1].replace(/_/g, '')) / 1000;
  for (const target of TARGETS) {
    const objs = render(target);
    const rmt = new Set(rmtContainers(objs).map(({ w }) => w));
    for (const w of workloads(objs)) {
      const spec = podSpec(w);
      const where = `${target}: ${w.metadata.name}`;
      t.is(spec.automountServiceAccountToken, false, `${where}: mounts a service account token`);
      t.true(
        spec.securityContext?.runAsNonRoot === true && spec.securityContext.runAsUser > 0,
        `${where}: runs as root`,
      );
      if (rmt.has(w)) {
        t.true(
          spec.terminationGracePeriodSeconds > deadlineS,
          `${where}: grace period <= the ${deadlineS} s shutdown deadline`,
        );
        t.true(
          spec.terminationGracePeriodSeconds <= deadlineS + 60,
          `${where}: grace period much longer than needed`,
        );
      }
      for (const c of spec.containers) {
        const cw = `${where}/${c.name}`;
        const r = c.resources ?? {};
        for (const res of ['cpu', 'memory']) {
          t.truthy(r.requests?.[res], `${cw}: no ${res} request`);
          t.truthy(r.limits?.[res], `${cw}: no ${res} limit`);
        }
        t.true(cpuOf(r.requests.cpu) <= cpuOf(r.limits.cpu), `${cw}: cpu request > limit`);
        t.true(bytesOf(r.requests.memory) <= bytesOf(r.limits.memory), `${cw}: memory request > limit`);
        const sc = c.securityContext ?? {};
        t.is(sc.allowPrivilegeEscalation, false, cw);
        t.is(sc.readOnlyRootFilesystem, true, cw);
        t.deepEqual(sc.capabilities?.drop, ['ALL'], cw);
        if (c.image.startsWith('rmt') || c.image.includes('/rmt')) {
          const tmp = mountFor(w, c, '/tmp/x');
          t.truthy(tmp?.v.emptyDir, `${cw}: /tmp must be writable (tsx's cache)`);
          const threads = (c.env ?? []).find((e: Any) => e.name === 'RMT_WASM_THREADS')?.value;
          if (threads)
            t.true(Number(threads) <= cpuOf(r.limits.cpu), `${cw}: RMT_WASM_THREADS ${threads} > cpu limit`);
        }
      }
    }
    // The learner replicas are the coordinator's learners, rank by rank (one but with the
    // data-parallel component), never autoscaled.
    const learners = find(objs, 'StatefulSet', 'rmt-learner');
    t.is(learners.spec.replicas, target.includes('data-parallel') ? 2 : 1, target);
    const coordinatorLearners = (
      (podSpec(find(objs, 'Deployment', 'rmt-coordinator')).containers[0].env ?? []) as Any[]
    ).find((e) => e.name === 'RMT_LEARNER').value;
    t.deepEqual(
      coordinatorLearners.split(','),
      Array.from({ length: learners.spec.replicas }, (_, i) => `rmt-learner-${i}.rmt-learner:50053`),
      `${target}: the coordinator lists every learner replica, rank 0 first`,
    );
    for (const h of byKind(objs, 'HorizontalPodAutoscaler')) t.not(h.spec.scaleTargetRef.name, 'rmt-learner');
  }
});

test('rollout workers: an autoscaler that owns their count, disruption budgets that select pods', (t) => {
  for (const target of TARGETS) {
    const objs = render(target);
    const hpas = byKind(objs, 'HorizontalPodAutoscaler');
    t.is(hpas.length, 1, target);
    const h = hpas[0];
    const d = find(objs, h.spec.scaleTargetRef.kind, h.spec.scaleTargetRef.name);
    t.truthy(d, `${target}: the autoscaler targets nothing`);
    t.is(component(d), 'rollout', target);
    t.is(d.spec.replicas, undefined, `${target}: rmt-rollout sets replicas, which every apply would reset`);
    t.true(h.spec.minReplicas >= 1 && h.spec.minReplicas <= h.spec.maxReplicas, target);
    // CPU by default; the queue (an external metric of k8s/monitoring/prometheus-adapter.yaml) only
    // with k8s/components/queue-autoscaling.
    const external = adapterExternalMetrics();
    t.deepEqual(
      h.spec.metrics.map((m: Any) => m.type),
      componentsOf(target).includes('queue-autoscaling') ? ['External'] : ['Resource'],
      target,
    );
    for (const m of h.spec.metrics) {
      if (m.type === 'Resource') {
        for (const c of podSpec(d).containers)
          t.truthy(c.resources?.requests?.[m.resource.name], `${target}: utilization needs requests`);
      } else if (m.type === 'External') {
        t.true(
          external.has(m.external.metric.name),
          `${target}: prometheus-adapter.yaml serves no external metric ${m.external.metric.name}`,
        );
        t.is(m.external.target.type, 'AverageValue', `${target}: a queue length is shared by the workers`);
      } else t.fail(`${target}: metric type ${m.type}`);
    }
    const pdbs = byKind(objs, 'PodDisruptionBudget');
    t.deepEqual(pdbs.map((p) => p.metadata.name).sort(), ['rmt-nats', 'rmt-rollout'], target);
    for (const p of pdbs) {
      const sel = workloads(objs).filter((w) => selects(p.spec.selector.matchLabels, podLabels(w)));
      t.is(sel.length, 1, `${target}: PDB ${p.metadata.name} selects ${sel.length} workloads`);
      t.true(p.spec.maxUnavailable !== undefined || p.spec.minAvailable !== undefined);
    }
    t.is(
      component(
        workloads(objs).find((w) =>
          selects(find(objs, 'PodDisruptionBudget', 'rmt-rollout').spec.selector.matchLabels, podLabels(w)),
        ),
      ),
      'rollout',
    );
  }
});

// --- network policies ---------------------------------------------------------------------------

test('network policies: only the services that must talk can', async (t) => {
  for (const target of TARGETS) {
    const objs = render(target);
    const pods = workloads(objs);
    const policies = byKind(objs, 'NetworkPolicy');
    const deny = policies.find(
      (p) =>
        Object.keys(p.spec.podSelector).length === 0 &&
        p.spec.policyTypes.includes('Ingress') &&
        !p.spec.ingress,
    );
    t.truthy(deny, `${target}: no default-deny ingress policy`);
    // What the policies allow, as "from -> to:port" ("*" = anyone in the cluster).
    const allowed = new Set<string>();
    for (const p of policies) {
      t.deepEqual(p.spec.policyTypes, ['Ingress'], `${target}: ${p.metadata.name}`);
      const targets = pods.filter((w) => selects(p.spec.podSelector.matchLabels, podLabels(w)));
      for (const rule of p.spec.ingress ?? []) {
        const froms: string[] = [];
        for (const peer of rule.from ?? [{ namespaceSelector: {} }]) {
          if (peer.namespaceSelector && !peer.podSelector) froms.push('*');
          else if (peer.podSelector && !peer.namespaceSelector) {
            const src = pods.filter((w) => selects(peer.podSelector.matchLabels, podLabels(w)));
            t.true(src.length > 0, `${target}: ${p.metadata.name}: a peer selects no pods`);
            froms.push(...src.map(component));
          } else t.fail(`${target}: ${p.metadata.name}: peer ${JSON.stringify(peer)}`);
        }
        for (const to of targets) {
          const cps = podSpec(to).containers.flatMap((c: Any) => c.ports ?? []);
          for (const port of rule.ports ?? []) {
            const cp = cps.find((x: Any) => x.containerPort === port.port || x.name === port.port);
            t.truthy(
              cp,
              `${target}: ${p.metadata.name}: port ${port.port} is no container port of ${to.metadata.name}`,
            );
            for (const f of froms) allowed.add(`${f} -> ${component(to)}:${cp?.containerPort}`);
          }
        }
      }
    }
    // What must be allowed: every connection the manifests configure, derived from them.
    const eff = effective(t, target, objs);
    const port = (s: Service) => eff.find((e) => e.service === s)!.flags.port as number;
    const needed = new Set<string>([
      `coordinator -> scorer:${port('scorer')}`,
      `coordinator -> learner:${port('learner')}`,
      `rollout -> learner:${port('learner')}`,
      // The coordinator dials the address in each worker's heartbeat.
      `coordinator -> rollout:${port('rollout')}`,
      `client -> coordinator:${port('coordinator')}`,
      ...SERVICES.map((s) => `${s} -> nats:4222`),
    ]);
    // Data-parallel learners reach one another (gradients to the leader, weights to followers).
    if ((find(objs, 'StatefulSet', 'rmt-learner').spec.replicas ?? 1) > 1)
      needed.add(`learner -> learner:${port('learner')}`);
    if (find(objs, 'ConfigMap', 'rmt-nats-config').data['nats.conf'].includes('cluster {'))
      needed.add('nats -> nats:6222');
    for (const { service, flags } of eff) needed.add(`* -> ${service}:${flags.metricsPort}`);
    needed.add('* -> nats:8222');
    const missing = [...needed].filter((e) => !allowed.has(e));
    const extra = [...allowed].filter((e) => !needed.has(e) && e !== 'nats -> nats:6222');
    t.deepEqual(missing, [], `${target}: connections the services need but the policies block`);
    t.deepEqual(extra, [], `${target}: connections the policies allow but nothing needs`);
  }
});

// --- overlays -----------------------------------------------------------------------------------

test('overlays: GPUs only for the learner and workers on gpu, none on cpu, one replica of everything on dev', (t) => {
  for (const target of TARGETS.filter((x) => x !== 'base')) {
    const overlay = overlayOf(target);
    const objs = render(target);
    const images = new Set<string>();
    for (const w of workloads(objs)) {
      for (const c of podSpec(w).containers) {
        t.regex(
          c.image,
          /:[A-Za-z0-9_.-]+$|@sha256:/,
          `${target}: ${w.metadata.name}: image ${c.image} has no tag`,
        );
        t.false(c.image.endsWith(':latest'), `${target}: ${c.image}`);
        const gpus = c.resources?.limits?.['nvidia.com/gpu'];
        const onGpu = overlay === 'gpu' && ['learner', 'rollout'].includes(component(w));
        t.is(
          gpus !== undefined,
          onGpu,
          `${target}: ${w.metadata.name} ${onGpu ? 'needs' : 'must not take'} a GPU`,
        );
      }
    }
    for (const { c } of rmtContainers(objs)) images.add(c.image);
    images.add(podSpec(find(objs, 'CronJob', 'rmt-start-run')).containers[0].image);
    t.is(images.size, 1, `${target}: the services and rmt-start-run run one image: ${[...images]}`);
    for (const { w, service, flags } of effective(t, target, objs)) {
      if (!('backend' in flags)) continue;
      const onGpu = overlay === 'gpu' && service !== 'scorer';
      t.is(flags.backend === 'webgpu', onGpu, `${target}: ${service} --backend ${flags.backend}`);
      if (onGpu) {
        const spec = podSpec(w);
        t.true(Object.keys(spec.nodeSelector ?? {}).length > 0, `${target}: ${service}: no nodeSelector`);
        t.true(
          (spec.tolerations ?? []).some((x: Any) => x.key === 'nvidia.com/gpu'),
          `${target}: ${service}: no GPU toleration`,
        );
        const caps =
          spec.containers[0].env.find((e: Any) => e.name === 'NVIDIA_DRIVER_CAPABILITIES')?.value ?? '';
        t.true(
          caps.split(',').includes('graphics'),
          `${target}: ${service}: Vulkan needs the graphics capability`,
        );
      }
    }
    if (overlay === 'dev') {
      for (const w of byKind(objs, 'Deployment').concat(byKind(objs, 'StatefulSet'))) {
        if (w.metadata.name === 'rmt-rollout') continue;
        t.is(w.spec.replicas, 1, `dev: ${w.metadata.name}`);
      }
      const h = find(objs, 'HorizontalPodAutoscaler', 'rmt-rollout');
      t.deepEqual([h.spec.minReplicas, h.spec.maxReplicas], [1, 1], 'dev: one rollout worker');
    }
  }
});

// --- extras -------------------------------------------------------------------------------------

test('k8s/tools and k8s/monitoring fit the base: the models claim, the pods and their metrics ports', (t) => {
  const base = render('base');
  const [loader, monitor] = extras() as Any[];
  t.is(loader.spec.volumes[0].persistentVolumeClaim.claimName, 'rmt-models');
  t.truthy(find(base, 'PersistentVolumeClaim', 'rmt-models'));
  const cfg = parseTrainConfig(parse(find(base, 'ConfigMap', 'rmt-run').data['run.yaml']), 'rmt-run');
  t.true(cfg.model.init_from.startsWith(`${loader.spec.containers[0].volumeMounts[0].mountPath}/`));
  const scraped = workloads(base).filter(
    (w) =>
      selects(monitor.spec.selector.matchLabels, podLabels(w)) &&
      monitor.spec.selector.matchExpressions.every((e: Any) => e.values.includes(podLabels(w)[e.key])),
  );
  t.deepEqual(scraped.map(component).sort(), [...SERVICES].sort());
  for (const w of scraped) {
    const names = podSpec(w).containers.flatMap((c: Any) => (c.ports ?? []).map((p: Any) => p.name));
    t.true(names.includes(monitor.spec.podMetricsEndpoints[0].port), w.metadata.name);
  }
});

test('k8s/monitoring/prometheus-adapter.yaml: the external metrics read gauges the coordinator exports, per namespace', (t) => {
  const values = parse(read('k8s/monitoring/prometheus-adapter.yaml')) as Any;
  const metrics = adapterExternalMetrics();
  t.true(metrics.size > 0);
  const coordinator = read('services/coordinator/main.ts');
  for (const [name, series] of metrics) {
    for (const s of series) {
      t.true(s.startsWith('rmt_'), `${name}: ${s}`);
      t.regex(
        coordinator,
        new RegExp(`gauge\\(\\{\\s*name: '${s.slice('rmt_'.length)}'`),
        `${name} reads ${s}, which is no gauge of the coordinator`,
      );
    }
  }
  for (const r of values.rules.external) {
    t.is(r.resources?.overrides?.namespace?.resource, 'namespace', 'the HPA asks for its own namespace');
    t.true(String(r.metricsQuery).includes('<<.LabelMatchers>>'), 'metricsQuery must keep the namespace');
  }
  // What the queue-autoscaling component asks for is served.
  const hpa = find(render('gpu+queue-autoscaling'), 'HorizontalPodAutoscaler', 'rmt-rollout');
  for (const m of hpa.spec.metrics) t.true(metrics.has(m.external?.metric.name), JSON.stringify(m));
});
