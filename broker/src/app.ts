// Composition root: reads what the config names, connects Redis, and starts the
// gRPC and HTTP listeners. Everything with state is created here and injected.
import { ApprovalsService, BrokerService } from '@countersign/proto';
import { RedisAuditLog } from './audit/audit-log.js';
import { systemClock, type Clock } from './clock.js';
import { configPath, splitHostPort, type BrokerConfig } from './config/config.js';
import { CredentialMinter } from './credentials/mint.js';
import { Keyring, loadSigningKey } from './credentials/keys.js';
import { BundleStore } from './identity/bundle-store.js';
import { loadBundleFiles, loadSvidFiles } from './identity/files.js';
import { PeerAuthenticator } from './identity/peer-authenticator.js';
import { createLogger, type Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { Principals } from './policy/principals.js';
import { loadPolicyFile, PolicyReloader } from './policy/reloader.js';
import { RedisRequestRate } from './policy/request-rate.js';
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
  /** The policy in force (`policies.current`) and its hot reload (`policies.reload('manual')`). */
  policies: PolicyReloader;
  close(): Promise<void>;
}

export async function startBroker(config: BrokerConfig, overrides: BrokerOverrides = {}): Promise<RunningBroker> {
  const clock = overrides.clock ?? systemClock;
  const logger = overrides.logger ?? createLogger({ level: config.log_level });
  const path = (p: string) => configPath(config, p);

  const svid = await loadSvidFiles(path(config.identity.svid.cert_file), path(config.identity.svid.key_file));
  const bundles = new BundleStore(
    await loadBundleFiles(config.identity.bundles.map((b) => ({ trustDomain: b.trust_domain, file: path(b.file) }))),
  );
  const principals = config.principals ? await Principals.load(path(config.principals.file)) : Principals.empty();
  const policyFile = path(config.policy.file);
  const policy = await loadPolicyFile({ file: policyFile, principals, clock });
  const keyring = new Keyring(await Promise.all(config.credentials.signing_keys.map((k) => loadSigningKey(path(k.file)))));

  const metrics = overrides.metrics ?? new Metrics();
  const ownsRedis = overrides.redis === undefined;
  const redis = overrides.redis ?? (await connectRedis(config.redis.url, { connectionName: 'countersign-broker' }));
  const keys = new Keys(config.redis.prefix);
  const scripts = registerScripts(redis);
  const audit = new RedisAuditLog(redis, keys, clock);
  const store = new RequestStore(redis, keys, scripts, clock);
  const minter = new CredentialMinter(keyring, { issuer: config.credentials.issuer ?? svid.spiffeId, maxTtlMs: config.credentials.max_ttl, clock });
  const policies = new PolicyReloader(
    {
      file: policyFile,
      principals,
      clock,
      requestRate: new RedisRequestRate(redis, keys),
      audit,
      logger,
      metrics,
      pollIntervalMs: config.policy.reload_interval,
      watch: config.policy.watch,
    },
    policy,
  );
  const requests = new RequestService(
    { policy: () => policies.current, minter, audit, store, clock, metrics },
    {
      defaultAudience: config.credentials.default_audience,
      defaultTtlMs: config.credentials.default_ttl,
      pollIntervalMs: config.requests.poll_interval,
    },
  );
  const peers = new PeerAuthenticator(bundles, clock, (error, peer) => {
    metrics.identityRefusals.inc({ code: error.code });
    logger.info({ peer, code: error.code }, `refused identity: ${error.message}`);
    audit.append({ type: 'identity_refused', peer, code: error.code, message: error.message }).catch((err: unknown) => {
      logger.warn({ err }, 'could not audit a refused identity');
    });
  });

  const grpcListen = splitHostPort(config.grpc.listen);
  const grpc = await startGrpcServer({
    host: grpcListen.host,
    port: grpcListen.port,
    maxMessageBytes: config.grpc.max_message_bytes,
    peers,
    logger,
    tls: { certChainPem: svid.certChainPem, keyPem: svid.keyPem, authoritiesPem: bundles.current.allAuthoritiesPem() },
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
  policies.start();
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
    policies,
    async close() {
      policies.close();
      await Promise.all([grpc.close(2000), http.close()]);
      if (ownsRedis) redis.disconnect();
    },
  };
}
