// A real broker for tests: a fresh trust domain minted in memory, files in a
// temp dir, gRPC over mTLS on 127.0.0.1:0, and a Redis key prefix of its own.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// The broker itself (app.ts: gRPC, BullMQ, the console...) is imported by startTestBroker when it
// runs: test files that use only this package's helpers (eventually, startRedisServer, the CA)
// do not load it, about 1.5 s of CPU per test file.
import type { BrokerOverrides, RunningBroker } from '../../src/app.js';
import type { Clock } from '../../src/clock.js';
import { parseConfig } from '../../src/config/config.js';
import { CertificateAuthority, type CertificateOptions, type IssuedSvid } from '../../src/dev/ca.js';
import { devPolicy, devPrincipals } from '../../src/dev/trust-domain.js';
import { silentLogger } from '../../src/observability/logger.js';
import { parseRecord, type AuditRecord } from '../../src/audit/chain.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { Keys } from '../../src/redis/keys.js';
import { deleteByPrefix, testRedis } from './redis.js';

export interface BrokerFilesOptions {
  trustDomain?: string;
  /** Policy YAML; default the dev example policy. */
  policy?: string;
  /** Principals YAML; default the dev principals (alice, bob). */
  principals?: string;
  /** Extra trust domains the broker trusts (federation). */
  federated?: CertificateAuthority[];
  /** Extra YAML appended to the generated config (top-level keys). */
  extraConfig?: string;
  /**
   * The whole `identity:` section, replacing the default (SVID and bundle files
   * written in dir: broker.pem, broker-key.pem, ca.pem, bundle-<td>.pem).
   */
  identity?: string;
  /** More files to write in the broker's directory before it starts (name -> content). */
  files?: Record<string, string>;
  /** An existing CA (several brokers of one deployment share it); default a new one. */
  ca?: CertificateAuthority;
  /** shutdown_grace; default 1s so tests do not wait on connections they forgot. */
  shutdownGrace?: string;
  /** Extra fields of the broker's own SVID, e.g. IP SANs for clients that check the address (grpcurl). */
  brokerSvidOptions?: CertificateOptions;
  /** More keys of the redis section (YAML lines indented by two spaces), e.g. "  durability: { replicas: 1 }\n". */
  redisExtra?: string;
  /** More keys of the grpc section (YAML lines indented by two spaces), e.g. "  max_concurrent_streams: 4\n". */
  grpcExtra?: string;
  /** credentials.redeemers (who may redeem, per audience); default none: nobody may, as in a config that sets none. */
  redeemers?: { audience: string; workloads: string[] }[];
}

export interface BrokerFiles {
  dir: string;
  configFile: string;
  configText: string;
  ca: CertificateAuthority;
  trustDomain: string;
  /** The SVID the broker's files hold. */
  brokerSvid: IssuedSvid;
}

/** A complete broker configuration in a fresh temp dir: CA bundle, broker SVID, signing key, policy, principals. */
export async function writeBrokerFiles(
  options: BrokerFilesOptions & { redisUrl: string; prefix: string },
): Promise<BrokerFiles> {
  const trustDomain = options.trustDomain ?? 'example.org';
  const dir = await mkdtemp(join(tmpdir(), 'countersign-test-'));
  const ca = options.ca ?? CertificateAuthority.createRoot(trustDomain);
  const brokerSvid = ca.issueSvid(`spiffe://${trustDomain}/countersign/broker`, options.brokerSvidOptions);
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await Promise.all([
    writeFile(join(dir, 'ca.pem'), ca.pem),
    writeFile(join(dir, 'broker.pem'), brokerSvid.chainPem),
    writeFile(join(dir, 'broker-key.pem'), brokerSvid.keyPem),
    writeFile(join(dir, 'signing-key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' })),
    writeFile(join(dir, 'policy.yaml'), options.policy ?? devPolicy(trustDomain)),
    writeFile(join(dir, 'principals.yaml'), options.principals ?? devPrincipals(trustDomain)),
    ...(options.federated ?? []).map((f) => writeFile(join(dir, `bundle-${f.trustDomain}.pem`), f.pem)),
    ...Object.entries(options.files ?? {}).map(([name, content]) => writeFile(join(dir, name), content)),
  ]);
  const federated = (options.federated ?? [])
    .map((f) => `    - trust_domain: ${f.trustDomain}\n      file: bundle-${f.trustDomain}.pem\n`)
    .join('');
  const identity =
    options.identity ??
    `identity:
  svid:
    cert_file: broker.pem
    key_file: broker-key.pem
  bundles:
    - trust_domain: ${trustDomain}
      file: ca.pem
${federated}`;
  const configText = `trust_domain: ${trustDomain}
shutdown_grace: ${options.shutdownGrace ?? '1s'}
grpc:
  listen: 127.0.0.1:0
${options.grpcExtra ?? ''}http:
  listen: 127.0.0.1:0
${identity.endsWith('\n') ? identity : `${identity}\n`}redis:
  url: ${options.redisUrl}
  prefix: "${options.prefix}"
${options.redisExtra ?? ''}policy:
  file: policy.yaml
principals:
  file: principals.yaml
credentials:
  default_audience: https://deploy.${trustDomain}
  signing_keys:
    - file: signing-key.pem
${(options.redeemers ?? []).length > 0 ? `  redeemers:\n${(options.redeemers ?? []).map((r) => `    - audience: ${JSON.stringify(r.audience)}\n      workloads: ${JSON.stringify(r.workloads)}\n`).join('')}` : ''}${options.extraConfig ?? ''}`;
  const configFile = join(dir, 'config.yaml');
  await writeFile(configFile, configText);
  return { dir, configFile, configText, ca, trustDomain, brokerSvid };
}

/** The environment minus SLACK_* variables. */
export function withoutSlackEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('SLACK_')));
}

export interface TestBrokerOptions extends BrokerFilesOptions {
  clock?: Clock;
  overrides?: BrokerOverrides;
  /** Redis to use instead of REDIS_URL / 127.0.0.1:6379 (e.g. one a test started itself). */
  redisUrl?: string;
}

export interface TestBroker {
  broker: RunningBroker;
  ca: CertificateAuthority;
  dir: string;
  trustDomain: string;
  address: string;
  jwksUrl: string;
  prefix: string;
  configFile: string;
  /** The SVID the broker was started with (when it comes from files). */
  brokerSvid: IssuedSvid;
  /** Every event in the broker's audit chain, oldest first. */
  auditEvents(): Promise<AuditEvent[]>;
  /** Mints an SVID in the broker's trust domain. */
  svid(path: string, options?: CertificateOptions): IssuedSvid;
  close(): Promise<void>;
}

export async function startTestBroker(options: TestBrokerOptions = {}): Promise<TestBroker> {
  const redis = await testRedis('broker', options.redisUrl);
  const cleanup = async (dir?: string) => {
    await deleteByPrefix(redis.redis, redis.prefix);
    redis.redis.disconnect();
    if (dir) await rm(dir, { recursive: true, force: true });
  };
  let files: BrokerFiles;
  let broker: RunningBroker;
  try {
    files = await writeBrokerFiles({ ...options, redisUrl: redis.url, prefix: redis.prefix });
  } catch (e) {
    await cleanup();
    throw e;
  }
  const { dir, ca, trustDomain, configFile, brokerSvid } = files;
  try {
    const { startBroker } = await import('../../src/app.js');
    broker = await startBroker(parseConfig(files.configText, configFile), {
      logger: silentLogger(),
      redis: redis.redis,
      // Audit lines on stdout would mix with the test runner's own output.
      auditStdout: null,
      // A developer's own SLACK_* must not turn Slack on in every test; Slack tests pass theirs.
      env: withoutSlackEnv(process.env),
      ...(options.clock ? { clock: options.clock } : {}),
      ...options.overrides,
    });
  } catch (e) {
    await cleanup(dir);
    throw e;
  }
  return {
    broker,
    ca,
    dir,
    trustDomain,
    address: `127.0.0.1:${broker.grpcPort}`,
    jwksUrl: `http://127.0.0.1:${broker.httpPort}/.well-known/jwks.json`,
    prefix: redis.prefix,
    configFile,
    brokerSvid,
    auditEvents: async () =>
      (await redis.redis.lrange(new Keys(redis.prefix).auditChain(), 0, -1)).map(
        (text) => (parseRecord(text) as AuditRecord).event,
      ),
    svid: (path, svidOptions) => ca.issueSvid(`spiffe://${trustDomain}/${path}`, svidOptions),
    async close() {
      await broker.close();
      await cleanup(dir);
    },
  };
}
