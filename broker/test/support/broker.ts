// A real broker for tests: a fresh trust domain minted in memory, files in a
// temp dir, gRPC over mTLS on 127.0.0.1:0, and a Redis key prefix of its own.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBroker, type BrokerOverrides, type RunningBroker } from '../../src/app.js';
import type { Clock } from '../../src/clock.js';
import { parseConfig } from '../../src/config/config.js';
import { CertificateAuthority, type CertificateOptions, type IssuedSvid } from '../../src/dev/ca.js';
import { devPolicy, devPrincipals } from '../../src/dev/trust-domain.js';
import { silentLogger } from '../../src/observability/logger.js';
import { deleteByPrefix, testRedis } from './redis.js';

export interface TestBrokerOptions {
  trustDomain?: string;
  /** Policy YAML; default the dev example policy. */
  policy?: string;
  /** Principals YAML; default the dev principals (alice, bob). */
  principals?: string;
  /** Extra trust domains the broker trusts (federation). */
  federated?: CertificateAuthority[];
  clock?: Clock;
  /** Extra YAML appended to the generated config (top-level keys). */
  extraConfig?: string;
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
  /** Mints an SVID in the broker's trust domain. */
  svid(path: string, options?: CertificateOptions): IssuedSvid;
  close(): Promise<void>;
}

export interface BrokerFilesOptions {
  trustDomain?: string;
  /** Policy YAML; default the dev example policy. */
  policy?: string;
  /** Principals YAML; default the dev principals (alice, bob). */
  principals?: string;
  /** Extra trust domains the broker trusts (federation). */
  federated?: CertificateAuthority[];
  redisUrl: string;
  prefix: string;
  /** Extra YAML appended to the generated config (top-level keys). */
  extraConfig?: string;
  /** An existing CA (several brokers of one deployment share it); default a new one. */
  ca?: CertificateAuthority;
}

export interface BrokerFiles {
  dir: string;
  configFile: string;
  configText: string;
  ca: CertificateAuthority;
  trustDomain: string;
}

/** A complete broker configuration in a fresh temp dir: CA bundle, broker SVID, signing key, policy, principals. */
export async function writeBrokerFiles(options: BrokerFilesOptions): Promise<BrokerFiles> {
  const trustDomain = options.trustDomain ?? 'example.org';
  const dir = await mkdtemp(join(tmpdir(), 'countersign-test-'));
  const ca = options.ca ?? CertificateAuthority.createRoot(trustDomain);
  const brokerSvid = ca.issueSvid(`spiffe://${trustDomain}/countersign/broker`);
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await Promise.all([
    writeFile(join(dir, 'ca.pem'), ca.pem),
    writeFile(join(dir, 'broker.pem'), brokerSvid.chainPem),
    writeFile(join(dir, 'broker-key.pem'), brokerSvid.keyPem),
    writeFile(join(dir, 'signing-key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' })),
    writeFile(join(dir, 'policy.yaml'), options.policy ?? devPolicy(trustDomain)),
    writeFile(join(dir, 'principals.yaml'), options.principals ?? devPrincipals(trustDomain)),
    ...(options.federated ?? []).map((f) => writeFile(join(dir, `bundle-${f.trustDomain}.pem`), f.pem)),
  ]);
  const federated = (options.federated ?? []).map((f) => `    - trust_domain: ${f.trustDomain}\n      file: bundle-${f.trustDomain}.pem\n`).join('');
  const configText = `trust_domain: ${trustDomain}
grpc:
  listen: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
identity:
  svid:
    cert_file: broker.pem
    key_file: broker-key.pem
  bundles:
    - trust_domain: ${trustDomain}
      file: ca.pem
${federated}redis:
  url: ${options.redisUrl}
  prefix: "${options.prefix}"
policy:
  file: policy.yaml
principals:
  file: principals.yaml
credentials:
  default_audience: https://deploy.${trustDomain}
  signing_keys:
    - file: signing-key.pem
${options.extraConfig ?? ''}`;
  const configFile = join(dir, 'config.yaml');
  await writeFile(configFile, configText);
  return { dir, configFile, configText, ca, trustDomain };
}

export async function startTestBroker(options: TestBrokerOptions = {}): Promise<TestBroker> {
  const redis = await testRedis('broker', options.redisUrl);
  const files = await writeBrokerFiles({ ...options, redisUrl: redis.url, prefix: redis.prefix });
  const { dir, ca, trustDomain } = files;
  const config = parseConfig(files.configText, files.configFile);
  const broker = await startBroker(config, {
    logger: silentLogger(),
    redis: redis.redis,
    ...(options.clock ? { clock: options.clock } : {}),
    ...options.overrides,
  });
  return {
    broker,
    ca,
    dir,
    trustDomain,
    address: `127.0.0.1:${broker.grpcPort}`,
    jwksUrl: `http://127.0.0.1:${broker.httpPort}/.well-known/jwks.json`,
    prefix: redis.prefix,
    svid: (path, svidOptions) => ca.issueSvid(`spiffe://${trustDomain}/${path}`, svidOptions),
    async close() {
      await broker.close();
      await deleteByPrefix(redis.redis, redis.prefix);
      redis.redis.disconnect();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
