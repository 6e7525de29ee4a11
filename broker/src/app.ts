// Composition root: reads what the config names, connects Redis, and starts the
// gRPC and HTTP listeners. Everything with state is created here and injected.
import { ApprovalsService, BrokerService } from '@countersign/proto';
import { RedisAuditLog } from './audit/audit-log.js';
import { systemClock, type Clock } from './clock.js';
import { configPath, splitHostPort, type BrokerConfig } from './config/config.js';
import { CredentialMinter } from './credentials/mint.js';
import { Keyring, loadSigningKey } from './credentials/keys.js';
import { BrokerIdentity, type IdentitySettings } from './identity/broker-identity.js';
import { PeerAuthenticator } from './identity/peer-authenticator.js';
import { createLogger, type Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { Policy } from './policy/policy.js';
import { Principals } from './policy/principals.js';
import { connectRedis, type Redis } from './redis/connection.js';
import { Keys } from './redis/keys.js';
import { RequestService } from './requests/request-service.js';
import { registerScripts } from './requests/scripts.js';
import { RequestStore } from './requests/store.js';
import { createApprovalsService } from './api/approvals-service.js';
import { createBrokerService } from './api/broker-service.js';
import { startGrpcServer, type RunningGrpcServer } from './api/grpc-server.js';
import { startHttpServer, type RunningHttpServer } from './api/http-server.js';

export interface BrokerOverrides {
  clock?: Clock;
  logger?: Logger;
  /** An existing connection (tests); the broker will not close it. */
  redis?: Redis;
  metrics?: Metrics;
  /** Environment for SPIFFE_ENDPOINT_SOCKET; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Workload API reconnect backoff (tests shorten it). */
  workloadApiBackoff?: IdentitySettings['workloadApiBackoff'];
}

/** The identity section of the config, with paths resolved. */
export function identitySettings(config: BrokerConfig, overrides: Pick<BrokerOverrides, 'env' | 'workloadApiBackoff'> = {}): IdentitySettings {
  const path = (p: string) => configPath(config, p);
  const { svid } = config.identity;
  return {
    svid: svid.workload_api
      ? {
          source: 'workload_api',
          address: svid.workload_api.socket,
          spiffeId: svid.workload_api.spiffe_id,
          timeoutMs: svid.workload_api.timeout,
          trustBundles: svid.workload_api.trust_bundles,
        }
      : { source: 'files', certFile: path(svid.cert_file as string), keyFile: path(svid.key_file as string) },
    bundles: config.identity.bundles.map((b) => ({ trustDomain: b.trust_domain, file: path(b.file), format: b.format })),
    reloadIntervalMs: config.identity.reload_interval,
    ...(overrides.workloadApiBackoff ? { workloadApiBackoff: overrides.workloadApiBackoff } : {}),
    ...(overrides.env ? { env: overrides.env } : {}),
  };
}

export interface RunningBroker {
  config: BrokerConfig;
  spiffeId: string;
  grpcPort: number;
  httpPort: number;
  grpc: RunningGrpcServer;
  http: RunningHttpServer;
  redis: Redis;
  logger: Logger;
  metrics: Metrics;
  principals: Principals;
  /** The broker's SVID and trust bundles as they rotate. */
  identity: BrokerIdentity;
  close(): Promise<void>;
}

export async function startBroker(config: BrokerConfig, overrides: BrokerOverrides = {}): Promise<RunningBroker> {
  const clock = overrides.clock ?? systemClock;
  const logger = overrides.logger ?? createLogger({ level: config.log_level });
  const metrics = overrides.metrics ?? new Metrics();
  // The identity watches files and may hold a Workload API stream: stop it if anything after it fails.
  const identity = await BrokerIdentity.start(identitySettings(config, overrides), { clock, logger, metrics });
  try {
    return await startServices(config, overrides, { clock, logger, metrics, identity });
  } catch (e) {
    identity.close();
    throw e;
  }
}

async function startServices(
  config: BrokerConfig,
  overrides: BrokerOverrides,
  { clock, logger, metrics, identity }: { clock: Clock; logger: Logger; metrics: Metrics; identity: BrokerIdentity },
): Promise<RunningBroker> {
  const path = (p: string) => configPath(config, p);
  const svid = identity.svid;
  const bundles = identity.bundles;
  const policy = await Policy.load(path(config.policy.file));
  const principals = config.principals ? await Principals.load(path(config.principals.file)) : Principals.empty();
  const keyring = new Keyring(await Promise.all(config.credentials.signing_keys.map((k) => loadSigningKey(path(k.file)))));

  const ownsRedis = overrides.redis === undefined;
  const redis = overrides.redis ?? (await connectRedis(config.redis.url, { connectionName: 'countersign-broker' }));
  const keys = new Keys(config.redis.prefix);
  const scripts = registerScripts(redis);
  const audit = new RedisAuditLog(redis, keys, clock);
  const store = new RequestStore(redis, keys, scripts, clock);
  const minter = new CredentialMinter(keyring, { issuer: config.credentials.issuer ?? svid.spiffeId, maxTtlMs: config.credentials.max_ttl, clock });
  const requests = new RequestService(
    { policy: () => policy, minter, audit, store, clock, metrics },
    {
      defaultAudience: config.credentials.default_audience,
      defaultTtlMs: config.credentials.default_ttl,
      pollIntervalMs: config.requests.poll_interval,
    },
  );
  const peers = new PeerAuthenticator(
    bundles,
    clock,
    (error, peer, context) => {
      metrics.identityRefusals.inc({ code: error.code });
      logger.info({ peer, code: error.code, ...context }, `refused identity: ${error.message}`);
      audit.append({ type: 'identity_refused', peer, code: error.code, message: error.message, ...context }).catch((err: unknown) => {
        logger.warn({ err }, 'could not audit a refused identity');
      });
    },
    config.identity.xfcc.enabled ? { proxyIds: config.identity.xfcc.proxy_ids } : undefined,
  );

  const grpcListen = splitHostPort(config.grpc.listen);
  const grpc = await startGrpcServer({
    host: grpcListen.host,
    port: grpcListen.port,
    maxMessageBytes: config.grpc.max_message_bytes,
    peers,
    logger,
    tls: identity.tls(),
    services: [
      {
        definition: BrokerService,
        implementation: createBrokerService({ peers, requests, store, logger, pollIntervalMs: config.requests.poll_interval }),
      },
      { definition: ApprovalsService, implementation: createApprovalsService({ peers, logger }) },
    ],
  });
  const httpListen = splitHostPort(config.http.listen);
  const http = await startHttpServer({
    host: httpListen.host,
    port: httpListen.port,
    logger,
    jwks: () => keyring.jwks(),
    readiness: [{ name: 'redis', check: async () => void (await redis.ping()) }],
    routes: {
      '/metrics': async (_req, res) => {
        const { contentType, body } = await metrics.render();
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
      },
    },
  });
  // A rotated SVID or a reloaded bundle goes into the TLS context; open connections stay up.
  identity.onChange(() => grpc.updateTls(identity.tls()));
  logger.info({ spiffeId: svid.spiffeId, grpcPort: grpc.port, httpPort: http.port, policyDigest: policy.digest }, 'broker started');

  return {
    config,
    spiffeId: svid.spiffeId,
    grpcPort: grpc.port,
    httpPort: http.port,
    grpc,
    http,
    redis,
    logger,
    metrics,
    principals,
    identity,
    async close() {
      identity.close();
      await Promise.all([grpc.close(2000), http.close()]);
      if (ownsRedis) redis.disconnect();
    },
  };
}
