// The Helm chart, checked offline: `helm lint --strict`, `helm template` over
// every value set in deploy/helm/countersign/ci/, strict decoding of every
// rendered object into the Kubernetes API types (countersign-validate-manifests,
// built from deploy/helm/tools/validate-manifests by .ci/run), and assertions on
// what an operator relies on: hardened pods, gRPC probes, secrets by reference,
// and a config.yaml the broker itself accepts: `countersign-broker config check` runs on
// every rendered ConfigMap, and on the edges of every value the chart checks, the chart
// refuses exactly what the broker refuses.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parseDocument } from 'yaml';
import { parseConfig } from '@countersign/broker';

const root = fileURLToPath(new URL('../..', import.meta.url));
const chart = join(root, 'deploy/helm/countersign');
const KUBE_VERSION = '1.31.0';
const BROKER_BIN = join(root, 'broker/bin/countersign-broker.js');

// Looked up once per tool (the lookup is a shell process, and the tests run helm about 100 times).
const tools = new Map<string, string>();
function tool(name: string): string {
  const found = tools.get(name) ?? spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  if (!found) {
    assert.fail(
      `${name} is not on PATH: run .ci/run, or see docs/kubernetes.md ("Chart tests") to install it with go install`,
    );
  }
  tools.set(name, found);
  return found;
}

// Rendered objects are checked field by field below; `any` keeps those checks readable.
type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; annotations?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
};

// `helm template` is deterministic (the chart has no rand or now), and several tests look at the
// same rendering: each distinct rendering is made and parsed once, and every caller gets its own copy.
const renderings = new Map<string, { text: string; docs: Manifest[] }>();
function render(valuesFile?: string, set: string[] = []): { text: string; docs: Manifest[] } {
  const args = ['template', 'cs', chart, '--namespace', 'countersign', '--kube-version', KUBE_VERSION];
  if (valuesFile) args.push('-f', valuesFile);
  for (const s of set) args.push('--set', s);
  const key = JSON.stringify(args);
  let rendered = renderings.get(key);
  if (rendered === undefined) {
    const text = execFileSync(tool('helm'), args, { encoding: 'utf8' });
    const docs = parseAllDocuments(text)
      .map((d) => d.toJS() as Manifest | null)
      .filter((d): d is Manifest => d !== null);
    rendered = { text, docs };
    renderings.set(key, rendered);
  }
  return { text: rendered.text, docs: structuredClone(rendered.docs) };
}

/**
 * `countersign-broker config check` over several config.yaml texts in one run: the broker's
 * own validation, as `serve` runs it at start-up. Returns each text's verdict (true: valid).
 */
function brokerConfigCheck(configs: string[]): { valid: boolean[]; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-chart-'));
  try {
    const files = configs.map((text, i) => {
      const file = join(dir, `config-${i}.yaml`);
      writeFileSync(file, text);
      return file;
    });
    const out = spawnSync(process.execPath, [BROKER_BIN, 'config', 'check', ...files], {
      encoding: 'utf8',
      env: { ...process.env, REDIS_URL: '' },
    });
    const output = out.stdout + out.stderr;
    const valid = files.map((f) => new RegExp(`^${f}: valid$`, 'm').test(out.stdout));
    assert.equal(out.status === 0, valid.every(Boolean), output);
    return { valid, output };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const configOf = (docs: Manifest[]) => find(docs, 'ConfigMap', 'cs-countersign-config').data?.['config.yaml'] as string;

const valueSets = [
  undefined,
  ...readdirSync(join(chart, 'ci'))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => join(chart, 'ci', f)),
];
const label = (f: string | undefined) => (f === undefined ? 'defaults' : f.slice(chart.length + 1));

function podSpecs(docs: Manifest[]): { owner: string; spec: any }[] {
  const out: { owner: string; spec: any }[] = [];
  for (const d of docs) {
    if (d.kind === 'Deployment' || d.kind === 'StatefulSet')
      out.push({ owner: `${d.kind}/${d.metadata.name}`, spec: d.spec.template.spec });
    if (d.kind === 'Pod') out.push({ owner: `Pod/${d.metadata.name}`, spec: d.spec });
  }
  return out;
}

const find = (docs: Manifest[], kind: string, name: string) => {
  const d = docs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(d, `${kind}/${name} is rendered`);
  return d;
};

describe('Helm chart', () => {
  for (const valuesFile of valueSets) {
    describe(label(valuesFile), () => {
      it('passes helm lint --strict', () => {
        const args = ['lint', '--strict', chart, '--kube-version', KUBE_VERSION];
        if (valuesFile) args.push('-f', valuesFile);
        const out = spawnSync(tool('helm'), args, { encoding: 'utf8' });
        assert.equal(out.status, 0, out.stdout + out.stderr);
      });

      it('renders objects that decode strictly into the Kubernetes API types', () => {
        const { text } = render(valuesFile);
        const out = spawnSync(tool('countersign-validate-manifests'), [], { input: text, encoding: 'utf8' });
        assert.equal(out.status, 0, out.stdout + out.stderr);
      });

      it('hardens every pod: non-root, read-only root, no capabilities, RuntimeDefault seccomp', () => {
        const pods = podSpecs(render(valuesFile).docs);
        assert.ok(pods.length >= 2);
        for (const { owner, spec } of pods) {
          assert.equal(spec.securityContext?.runAsNonRoot, true, `${owner} runAsNonRoot`);
          assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault', `${owner} seccomp`);
          assert.equal(spec.automountServiceAccountToken, false, `${owner} does not mount an API token`);
          for (const c of spec.containers) {
            assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${owner}/${c.name} readOnlyRootFilesystem`);
            assert.equal(
              c.securityContext?.allowPrivilegeEscalation,
              false,
              `${owner}/${c.name} allowPrivilegeEscalation`,
            );
            assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${owner}/${c.name} drops ALL`);
            // The broker and worker run compiled JS, with no transpile cache, and write nothing to disk:
            // no writable mount either, not even /tmp (Redis keeps its data volume).
            if (c.name === 'broker' || c.name === 'worker') {
              const writable = (c.volumeMounts ?? []).filter((m: { readOnly?: boolean }) => m.readOnly !== true);
              assert.deepEqual(writable, [], `${owner}/${c.name} mounts nothing writable`);
            }
          }
        }
      });

      it('passes secrets by reference only and renders no Secret', () => {
        const { docs, text } = render(valuesFile);
        assert.equal(docs.filter((d) => d.kind === 'Secret').length, 0);
        for (const { spec } of podSpecs(docs)) {
          for (const c of spec.containers) {
            for (const e of c.env ?? []) {
              if (/TOKEN|SECRET|PASSWORD/.test(e.name))
                assert.ok(e.valueFrom?.secretKeyRef, `${e.name} comes from a Secret`);
            }
          }
        }
        assert.doesNotMatch(text, /xox[bap]-/);
      });

      it('gives every container resource requests and a memory limit (ResourceQuota namespaces admit only those)', () => {
        for (const { owner, spec } of podSpecs(render(valuesFile).docs)) {
          for (const c of spec.containers) {
            assert.ok(
              c.resources?.requests?.cpu && c.resources?.requests?.memory,
              `${owner}/${c.name} requests cpu and memory`,
            );
            assert.ok(c.resources?.limits?.memory, `${owner}/${c.name} has a memory limit`);
          }
        }
      });

      it('writes a config.yaml the broker accepts', () => {
        const { docs } = render(valuesFile);
        const configMap = find(docs, 'ConfigMap', 'cs-countersign-config');
        const config = parseConfig(configMap.data?.['config.yaml'] as string, 'config.yaml');
        assert.equal(config.trust_domain, 'example.org');
        assert.equal(config.health.grpc_listen, '0.0.0.0:8081');
      });
    });
  }

  describe('defaults', () => {
    const { docs } = render();
    const deployment = find(docs, 'Deployment', 'cs-countersign');
    const pod = deployment.spec.template.spec;
    const broker = pod.containers[0];

    it('runs 2 replicas spread across nodes, with a PodDisruptionBudget', () => {
      assert.equal(deployment.spec.replicas, 2);
      assert.equal(
        pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey,
        'kubernetes.io/hostname',
      );
      const pdb = find(docs, 'PodDisruptionBudget', 'cs-countersign');
      assert.equal(pdb.spec.minAvailable, 1);
      assert.deepEqual(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
      assert.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
    });

    it('probes over native gRPC health on the plaintext health port', () => {
      assert.deepEqual(broker.readinessProbe.grpc, { port: 8081 });
      assert.deepEqual(broker.livenessProbe.grpc, { port: 8081, service: 'liveness' });
      assert.ok(broker.startupProbe.grpc);
      assert.deepEqual(
        broker.ports.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]),
        [
          ['grpc', 8443],
          ['http', 8080],
          ['health', 8081],
        ],
      );
    });

    it('gets its SVID from the Workload API socket of the SPIFFE CSI driver', () => {
      const volume = pod.volumes.find((v: { name: string }) => v.name === 'spiffe-workload-api');
      assert.equal(volume.csi.driver, 'csi.spiffe.io');
      const config = parseConfig(
        find(docs, 'ConfigMap', 'cs-countersign-config').data?.['config.yaml'] as string,
        'config.yaml',
      );
      assert.equal(config.identity.svid.workload_api?.socket, 'unix:///spiffe-workload-api/spire-agent.sock');
      assert.equal(config.identity.svid.workload_api?.trust_bundles, true, 'bundles come from the Workload API too');
      assert.equal(config.identity.svid.cert_file, undefined);
    });

    it('exposes gRPC, HTTP and a headless Service for client-side balancing', () => {
      assert.equal(find(docs, 'Service', 'cs-countersign-grpc').spec.ports[0].appProtocol, 'grpc');
      assert.equal(find(docs, 'Service', 'cs-countersign-http').spec.ports[0].port, 8080);
      assert.equal(find(docs, 'Service', 'cs-countersign-grpc-headless').spec.clusterIP, 'None');
    });

    it('restricts ingress with a NetworkPolicy', () => {
      const np = find(docs, 'NetworkPolicy', 'cs-countersign');
      assert.deepEqual(np.spec.policyTypes, ['Ingress']);
      assert.deepEqual(
        np.spec.ingress.flatMap((r: { ports: { port: string }[] }) => r.ports.map((p) => p.port)),
        ['grpc', 'http', 'health'],
      );
    });

    it('has a helm test hook that checks readiness and the JWKS', () => {
      const test = find(docs, 'Pod', 'cs-countersign-test-health');
      assert.equal(test.metadata.annotations?.['helm.sh/hook'], 'test');
      assert.match(test.spec.containers[0].command.join(' '), /\/readyz/);
    });
  });

  it('builtin Redis: AOF on, noeviction, a persistent volume, reachable only from the broker', () => {
    const { docs } = render(join(chart, 'ci/builtin-redis.yaml'));
    const conf = find(docs, 'ConfigMap', 'cs-countersign-redis').data?.['redis.conf'] as string;
    assert.match(conf, /^appendonly yes$/m);
    assert.match(conf, /^maxmemory-policy noeviction$/m);
    const sts = find(docs, 'StatefulSet', 'cs-countersign-redis');
    assert.equal(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage, '2Gi');
    const config = parseConfig(
      find(docs, 'ConfigMap', 'cs-countersign-config').data?.['config.yaml'] as string,
      'config.yaml',
    );
    assert.equal(config.redis.url, 'redis://cs-countersign-redis:6379');
    assert.ok(find(docs, 'NetworkPolicy', 'cs-countersign-redis'));
  });

  it('builtin Sentinel: a primary, replicas and three sentinels, spread over nodes, a PDB each, the broker following them with WAIT', () => {
    const { docs } = render(join(chart, 'ci/builtin-sentinel.yaml'));
    const conf = find(docs, 'ConfigMap', 'cs-countersign-redis').data as Record<string, string>;
    assert.match(conf['redis.conf'] as string, /^appendonly yes$/m);
    assert.match(conf['redis.conf'] as string, /^maxmemory-policy noeviction$/m);
    assert.match(conf['redis.conf'] as string, /^min-replicas-to-write 1$/m);
    // The start scripts are valid sh (they run in the redis image, not here).
    for (const script of ['start-redis.sh', 'start-sentinel.sh']) {
      const out = spawnSync('sh', ['-n'], { input: conf[script], encoding: 'utf8' });
      assert.equal(out.status, 0, `${script}: ${out.stderr}`);
    }
    assert.match(conf['start-sentinel.sh'] as string, /sentinel monitor countersign \$primary 6379 2$/m);
    for (const [name, replicas] of [
      ['cs-countersign-redis', 3],
      ['cs-countersign-sentinel', 3],
    ] as const) {
      const sts = find(docs, 'StatefulSet', name);
      assert.equal(sts.spec.replicas, replicas);
      const anti =
        sts.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]
          .podAffinityTerm;
      assert.equal(anti.topologyKey, 'kubernetes.io/hostname');
      assert.equal(
        anti.labelSelector.matchLabels['app.kubernetes.io/component'],
        name.endsWith('redis') ? 'redis' : 'sentinel',
      );
      assert.equal(find(docs, 'PodDisruptionBudget', name).spec.maxUnavailable, 1);
      assert.equal(find(docs, 'Service', name).spec.clusterIP, 'None');
      assert.ok(find(docs, 'NetworkPolicy', name));
    }
    const config = parseConfig(
      find(docs, 'ConfigMap', 'cs-countersign-config').data?.['config.yaml'] as string,
      'config.yaml',
    );
    assert.equal(config.redis.sentinel?.master_name, 'countersign');
    assert.deepEqual(
      config.redis.sentinel?.sentinels,
      [0, 1, 2].map((i) => `cs-countersign-sentinel-${i}.cs-countersign-sentinel.countersign.svc.cluster.local:26379`),
    );
    assert.deepEqual(config.redis.durability, { replicas: 1, timeout: 1000 });
    // Without durability the broker does not WAIT: nothing in the config.
    const external = parseConfig(
      find(render(join(chart, 'ci/external-redis-sentinel.yaml')).docs, 'ConfigMap', 'cs-countersign-config').data?.[
        'config.yaml'
      ] as string,
      'config.yaml',
    );
    assert.deepEqual(external.redis.durability, { replicas: 0, timeout: 1000 });
  });

  it('external Redis Cluster: the seed nodes, a hash-tagged prefix, TLS and the password from a Secret', () => {
    const { docs } = render(join(chart, 'ci/external-redis-cluster.yaml'));
    const config = parseConfig(
      find(docs, 'ConfigMap', 'cs-countersign-config').data?.['config.yaml'] as string,
      'config.yaml',
    );
    assert.deepEqual(config.redis.cluster?.nodes, ['redis-0.redis:6379', 'redis-1.redis:6379', 'redis-2.redis:6379']);
    assert.equal(config.redis.prefix, '{countersign}:');
    assert.equal(config.redis.url, 'rediss://unused:6379');
    assert.equal(config.redis.sentinel, undefined);
    assert.equal(config.redis.password_file, '/var/run/countersign/redis/password');
    assert.equal(docs.filter((d) => d.kind === 'StatefulSet').length, 0, "no Redis of the chart's own");
  });

  it('lists who may redeem credentials (broker.credentials.redeemers); nobody by default', () => {
    const configOf = (valuesFile?: string) =>
      parseConfig(
        find(render(valuesFile).docs, 'ConfigMap', 'cs-countersign-config').data?.['config.yaml'] as string,
        'config.yaml',
      );
    assert.equal(configOf().credentials.redeemers, undefined);
    assert.deepEqual(configOf(join(chart, 'ci/spiffe-secret.yaml')).credentials.redeemers, [
      {
        audience: 'https://deploy.example.org',
        workloads: ['spiffe://example.org/ns/deploy/sa/deploy-api', 'spiffe://example.org/ns/edge/sa/*'],
      },
    ]);
  });

  it('external Redis through Sentinel reads its password from a mounted Secret', () => {
    const { docs } = render(join(chart, 'ci/external-redis-sentinel.yaml'));
    const config = parseConfig(
      find(docs, 'ConfigMap', 'cs-countersign-config').data?.['config.yaml'] as string,
      'config.yaml',
    );
    assert.equal(config.redis.sentinel?.master_name, 'countersign');
    assert.equal(config.redis.sentinel?.sentinels.length, 3);
    assert.equal(config.redis.password_file, '/var/run/countersign/redis/password');
    const pod = find(docs, 'Deployment', 'cs-countersign').spec.template.spec;
    assert.equal(
      pod.volumes.find((v: { name: string }) => v.name === 'redis-password').secret.secretName,
      'countersign-redis',
    );
  });

  it('cert-manager csi-driver-spiffe mode reads SVID files and federated SPIFFE bundles', () => {
    const { docs } = render(join(chart, 'ci/spiffe-cert-manager.yaml'));
    const config = parseConfig(
      find(docs, 'ConfigMap', 'cs-countersign-config').data?.['config.yaml'] as string,
      'config.yaml',
    );
    assert.equal(config.identity.svid.cert_file, '/var/run/countersign/svid/tls.crt');
    assert.deepEqual(
      config.identity.bundles.map((b) => [b.trust_domain, b.format]),
      [
        ['example.org', 'pem'],
        ['partner.example', 'spiffe'],
      ],
    );
    const pod = find(docs, 'Deployment', 'cs-countersign').spec.template.spec;
    assert.equal(pod.volumes.find((v: { name: string }) => v.name === 'svid').csi.driver, 'spiffe.csi.cert-manager.io');
  });

  it('mounts the JWKS files of issuers the broker cannot reach (oidcExchange.jwks, ci/oidc-exchange.yaml), read-only', () => {
    const values = join(chart, 'ci/oidc-exchange.yaml');
    const fromConfigMap = render(values).docs;
    const config = parseConfig(configOf(fromConfigMap), 'config.yaml');
    assert.equal(
      config.identity.oidc.find((i) => i.name === 'prod-cluster')?.jwks_file,
      '/etc/countersign/oidc-jwks/prod-cluster-jwks.json',
    );
    const pod = find(fromConfigMap, 'Deployment', 'cs-countersign').spec.template.spec;
    const broker = pod.containers.find((c: { name: string }) => c.name === 'broker');
    assert.deepEqual(
      broker.volumeMounts.find((m: { name: string }) => m.name === 'oidc-jwks'),
      { name: 'oidc-jwks', mountPath: '/etc/countersign/oidc-jwks', readOnly: true },
    );
    assert.deepEqual(
      pod.volumes.find((v: { name: string }) => v.name === 'oidc-jwks'),
      {
        name: 'oidc-jwks',
        configMap: { name: 'countersign-oidc-jwks' },
      },
    );
    const fromSecret = render(values, ['oidcExchange.jwks.configMap=', 'oidcExchange.jwks.secret=cluster-jwks']).docs;
    const secretPod = find(fromSecret, 'Deployment', 'cs-countersign').spec.template.spec;
    assert.deepEqual(
      secretPod.volumes.find((v: { name: string }) => v.name === 'oidc-jwks'),
      {
        name: 'oidc-jwks',
        secret: { secretName: 'cluster-jwks' },
      },
    );
    // Without issuers, nothing is mounted.
    const off = find(render(undefined, ['oidcExchange.jwks.configMap=x']).docs, 'Deployment', 'cs-countersign');
    assert.equal(
      off.spec.template.spec.volumes.some((v: { name: string }) => v.name === 'oidc-jwks'),
      false,
    );
  });

  it('Slack Socket Mode takes all three tokens from the Secret; HTTP mode adds an ingress for /slack/events', () => {
    const socket = render(join(chart, 'ci/slack-socket.yaml')).docs;
    const env = find(socket, 'Deployment', 'cs-countersign').spec.template.spec.containers[0].env;
    assert.deepEqual(
      env.filter((e: { name: string }) => e.name.startsWith('SLACK_')).map((e: { name: string }) => e.name),
      ['SLACK_MODE', 'SLACK_BOT_TOKEN', 'SLACK_SIGNING_SECRET', 'SLACK_APP_TOKEN'],
    );
    assert.equal(socket.filter((d) => d.kind === 'Ingress').length, 0);
    const http = render(join(chart, 'ci/slack-http.yaml')).docs;
    const ingress = find(http, 'Ingress', 'cs-countersign-slack');
    assert.equal(ingress.spec.rules[0].http.paths[0].path, '/slack/events');
  });

  it('a separate worker Deployment runs the jobs; broker replicas then serve the API only', () => {
    const { docs } = render(join(chart, 'ci/worker-and-monitoring.yaml'));
    const broker = find(docs, 'Deployment', 'cs-countersign').spec.template.spec.containers[0];
    const worker = find(docs, 'Deployment', 'cs-countersign-worker');
    assert.deepEqual(broker.args.slice(-2), ['--role', 'api']);
    assert.deepEqual(worker.spec.template.spec.containers[0].args.slice(-2), ['--role', 'worker']);
    assert.equal(worker.spec.replicas, 2);
    assert.ok(find(docs, 'ServiceMonitor', 'cs-countersign'));
    const rule = find(docs, 'PrometheusRule', 'cs-countersign');
    assert.ok(rule.spec.groups[0].rules.length >= 4);
  });

  it('serves the approver console on its own port, Service and Ingress, away from /metrics (ci/console.yaml)', () => {
    const { docs } = render(join(chart, 'ci/console.yaml'));
    const pod = find(docs, 'Deployment', 'cs-countersign').spec.template.spec;
    const broker = pod.containers[0];
    assert.deepEqual(
      broker.ports.find((p: { name: string }) => p.name === 'console'),
      { name: 'console', containerPort: 8090, protocol: 'TCP' },
    );
    const secret = broker.env.find((e: { name: string }) => e.name === 'COUNTERSIGN_CONSOLE_OIDC_CLIENT_SECRET');
    assert.deepEqual(secret.valueFrom.secretKeyRef, { name: 'countersign-console-oidc', key: 'client-secret' });
    const config = parseConfig(
      find(docs, 'ConfigMap', 'cs-countersign-config').data?.['config.yaml'] as string,
      'config.yaml',
    );
    assert.equal(config.console.enabled, true);
    assert.equal(config.console.listen, '0.0.0.0:8090');
    assert.equal(config.console.public_url, 'https://approve.example.org');
    assert.equal(config.console.oidc?.issuer, 'https://login.example.org');
    assert.equal(
      config.console.oidc?.client_secret_file,
      undefined,
      'the secret comes from the environment, by reference',
    );
    const service = find(docs, 'Service', 'cs-countersign-console');
    assert.deepEqual(service.spec.ports, [{ name: 'console', port: 8090, targetPort: 'console', protocol: 'TCP' }]);
    const ingress = find(docs, 'Ingress', 'cs-countersign-console');
    assert.equal(ingress.spec.rules[0].host, 'approve.example.org');
    const backends = ingress.spec.rules.flatMap((r: any) => r.http.paths.map((p: any) => p.backend.service));
    assert.deepEqual(
      backends,
      [{ name: 'cs-countersign-console', port: { name: 'console' } }],
      'only the console is behind its host',
    );
    assert.deepEqual(ingress.spec.tls, [{ hosts: ['approve.example.org'], secretName: 'countersign-console-tls' }]);
    const policy = find(docs, 'NetworkPolicy', 'cs-countersign');
    const rule = policy.spec.ingress.find((r: any) => r.ports.some((p: { port: string }) => p.port === 'console'));
    assert.deepEqual(rule.from, [
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } },
    ]);
    // Off by default: nothing of the console is rendered.
    const defaults = render().docs;
    assert.equal(defaults.filter((d) => d.metadata.name.endsWith('-console')).length, 0);
  });

  it("passes every value set's config.yaml through the broker's own config check", () => {
    const configs = valueSets.map((f) => configOf(render(f).docs));
    const { valid, output } = brokerConfigCheck(configs);
    assert.deepEqual(
      valid,
      configs.map(() => true),
      output,
    );
  });

  describe('bad values that pass the schema are refused at render time, with a message that says what to change', () => {
    const badValues = join(root, 'test/chart/bad-values');
    const expected: Record<string, RegExp> = {
      'max-ttl-48h.yaml': /broker\.credentials\.maxTtl=48h is out of range: the broker accepts 10s to 24h/,
      'default-ttl-above-max.yaml': /broker\.credentials\.defaultTtl=2h exceeds broker\.credentials\.maxTtl=1h/,
      'default-ttl-1s.yaml': /broker\.credentials\.defaultTtl=1s is out of range: the broker accepts 10s to 24h/,
      'poll-interval-0s.yaml': /broker\.requests\.pollInterval=0s is out of range: the broker accepts 200ms to 1m/,
      'pdb-above-replicas.yaml':
        /podDisruptionBudget\.minAvailable=3 with broker\.replicaCount=2 would never let a node drain evict a broker pod; use at most 1/,
      'grpc-port-is-http-port.yaml':
        /broker\.ports\.grpc and broker\.ports\.http are both 8080; each listener needs its own port/,
      'secret-mode-without-bundle.yaml':
        /spiffe\.mode=secret needs spiffe\.trustBundle\.configMap: the ConfigMap holding the CA bundle of trustDomain example\.org/,
      'extra-config-trust-domain.yaml':
        /broker\.extraConfig\.trust_domain would override what the chart writes from trustDomain; set that value instead/,
      'console-port-is-http-port.yaml':
        /broker\.ports\.http and broker\.ports\.console are both 8080; each listener needs its own port/,
      'console-link-ttl-2d.yaml': /console\.signInLinkTtl=2d is out of range: the broker accepts 1m to 24h/,
      'sentinel-too-few-replicas.yaml':
        /redis\.sentinel\.replicas=2 with redis\.durability\.replicas=1: after a failover the new primary has 0 replica\(s\) and every write would fail .*use redis\.sentinel\.replicas of at least 3/,
      'cluster-prefix-without-hash-tag.yaml':
        /redis\.prefix="countersign:": on Redis Cluster \(redis\.external\.cluster\.enabled\) the prefix must start with a hash tag, e\.g\. \{countersign\}:/,
      'oidc-jwks-file-without-mount.yaml':
        /oidcExchange\.issuers\[prod-cluster\]\.jwks_file=\/etc\/countersign\/oidc-jwks\/prod-cluster-jwks\.json needs oidcExchange\.jwks\.configMap or oidcExchange\.jwks\.secret/,
      'extra-config-console-public-url.yaml':
        /broker\.extraConfig\.console\.public_url would override what the chart writes from console\.publicUrl; set that value instead/,
    };

    it('has an expected message for every file in test/chart/bad-values', () => {
      assert.deepEqual(readdirSync(badValues).sort(), Object.keys(expected).sort());
    });

    for (const [file, message] of Object.entries(expected)) {
      it(file, () => {
        const out = spawnSync(
          tool('helm'),
          ['template', 'cs', chart, '--kube-version', KUBE_VERSION, '-f', join(badValues, file)],
          { encoding: 'utf8' },
        );
        assert.notEqual(out.status, 0, `helm rendered ${file}`);
        assert.match(out.stderr, message);
      });
    }

    it('with one replica, leaves the PodDisruptionBudget out instead of blocking every node drain', () => {
      const { docs } = render(undefined, ['broker.replicaCount=1']);
      assert.equal(docs.filter((d) => d.kind === 'PodDisruptionBudget').length, 0);
    });
  });

  describe("the chart refuses exactly what the broker's config check refuses", () => {
    // Each sample is rendered by the chart (--set-string) and, independently, written into the
    // default config.yaml at the key the chart maps it to and checked by the broker.
    const base = configOf(render().docs);
    const edges: { value: string; key: string[]; toConfig?: (v: string) => string; samples: string[] }[] = [
      {
        value: 'broker.credentials.maxTtl',
        key: ['credentials', 'max_ttl'],
        samples: ['9s', '9999ms', '10s', '1h30m', '0.5h', '24h', '1d', '24h1ms', '25h', '48h', '2d'],
      },
      {
        value: 'broker.credentials.defaultTtl',
        key: ['credentials', 'default_ttl'],
        samples: ['1s', '9.9s', '10s', '5m', '1h', '60m', '61m', '3600001ms'],
      },
      {
        value: 'broker.requests.pollInterval',
        key: ['requests', 'poll_interval'],
        samples: ['0s', '0ms', '199ms', '200ms', '0.2s', '2s', '1m', '60s', '60001ms', '61s', '2m'],
      },
      {
        value: 'redis.durability.timeout',
        key: ['redis', 'durability', 'timeout'],
        samples: ['9ms', '10ms', '1s', '1m', '60001ms', '2m'],
      },
      {
        value: 'broker.ports.http',
        key: ['http', 'listen'],
        toConfig: (p) => `0.0.0.0:${p}`,
        samples: ['8080', '8443', '8081', '9000'],
      },
      {
        value: 'broker.ports.health',
        key: ['health', 'grpc_listen'],
        toConfig: (p) => `0.0.0.0:${p}`,
        samples: ['8081', '8443', '8080', '9001'],
      },
    ];
    for (const edge of edges) {
      it(edge.value, () => {
        const chartAccepts = edge.samples.map((sample) => {
          const args = [
            'template',
            'cs',
            chart,
            '--kube-version',
            KUBE_VERSION,
            '--show-only',
            'templates/configmap.yaml',
          ];
          const out = spawnSync(
            tool('helm'),
            [...args, edge.value.startsWith('broker.ports') ? '--set' : '--set-string', `${edge.value}=${sample}`],
            { encoding: 'utf8' },
          );
          if (out.status !== 0)
            assert.match(out.stderr, new RegExp(edge.value.replace(/\./g, '\\.')), `the refusal names ${edge.value}`);
          return out.status === 0;
        });
        const configs = edge.samples.map((sample) => {
          const doc = parseDocument(base);
          doc.setIn(edge.key, edge.toConfig ? edge.toConfig(sample) : sample);
          return doc.toString();
        });
        const { valid, output } = brokerConfigCheck(configs);
        assert.deepEqual(
          Object.fromEntries(edge.samples.map((s, i) => [s, chartAccepts[i]])),
          Object.fromEntries(edge.samples.map((s, i) => [s, valid[i]])),
          `chart (actual) vs broker (expected)\n${output}`,
        );
        assert.ok(valid.includes(true) && valid.includes(false), 'the samples straddle the edge');
      });
    }
  });

  describe('values.schema.json (or the chart, where a schema cannot say why) refuses bad values before anything is rendered', () => {
    const cases: [string, string[], RegExp][] = [
      ['an unknown key', ['brokr.replicaCount=3'], /brokr/],
      ['a string replica count', ['broker.replicaCount=two'], /replicaCount.*want integer/],
      [
        'secret mode without a Secret name',
        ['spiffe.mode=secret', 'spiffe.trustBundle.configMap=b'],
        /spiffe\.mode=secret needs spiffe\.secret\.name/,
      ],
      ['Slack without its Secret', ['slack.enabled=true'], /slack\/existingSecret/],
      ['an unknown SPIFFE mode', ['spiffe.mode=magic'], /spiffe\/mode/],
      ['a malformed duration', ['broker.credentials.maxTtl=forever'], /maxTtl/],
      ['an unknown Redis mode', ['redis.mode=cluster'], /redis\/mode/],
      ['a Redis Cluster without nodes', ['redis.external.cluster.enabled=true'], /redis\/external\/cluster\/nodes/],
      [
        'both Cluster and Sentinel',
        [
          'redis.external.cluster.enabled=true',
          'redis.external.cluster.nodes={r0:6379}',
          'redis.external.sentinel.enabled=true',
          'redis.external.sentinel.sentinels={s0:26379}',
        ],
        /exclude each other/,
      ],
      [
        'an even number of sentinels',
        ['redis.mode=sentinel', 'redis.sentinel.sentinels=4'],
        /redis\/sentinel\/sentinels/,
      ],
      ['the console without its public URL', ['console.enabled=true'], /console\/publicUrl/],
      [
        'a console public URL that is not https',
        ['console.enabled=true', 'console.publicUrl=http://approve.example.org'],
        /console\/publicUrl/,
      ],
      [
        'OIDC without an issuer',
        [
          'console.enabled=true',
          'console.publicUrl=https://a.example.org',
          'console.oidc.enabled=true',
          'console.oidc.clientId=c',
        ],
        /console\/oidc\/issuer/,
      ],
    ];
    for (const [name, set, message] of cases) {
      it(name, () => {
        const args = ['template', 'cs', chart, '--kube-version', KUBE_VERSION, ...set.flatMap((s) => ['--set', s])];
        const out = spawnSync(tool('helm'), args, { encoding: 'utf8' });
        assert.notEqual(out.status, 0);
        assert.match(out.stderr, message);
      });
    }
  });
});
