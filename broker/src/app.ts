// Composition root: reads what the config names, connects Redis, and starts the
// gRPC and HTTP listeners. Everything with state is created here and injected.
import type { ApproverChannel } from '@countersign/approvers';
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
import { Policy } from './policy/policy.js';
import { Principals } from './policy/principals.js';
import { connectRedis, type Redis } from './redis/connection.js';
import { Keys } from './redis/keys.js';
import { RequestService } from './requests/request-service.js';
import { approvalSettings, startApprovals, type Approvals, type BrokerRole } from './requests/runtime.js';
import { registerScripts } from './requests/scripts.js';
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
  /** "all" (default): API and queue workers; "api": no workers; see startWorker for "worker". */
  role?: Exclude<BrokerRole, 'worker'>;
  /** Approver channels the notification jobs call (Slack registers one). */
  channels?: ApproverChannel[];
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
  approvals: Approvals;
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
  const policy = await Policy.load(path(config.policy.file));
  const principals = config.principals ? await Principals.load(path(config.principals.file)) : Principals.empty();
  const keyring = new Keyring(await Promise.all(config.credentials.signing_keys.map((k) => loadSigningKey(path(k.file)))));

  const metrics = overrides.metrics ?? new Metrics();
  const ownsRedis = overrides.redis === undefined;
  const redis = overrides.redis ?? (await connectRedis(config.redis.url, { connectionName: 'countersign-broker' }));
  const keys = new Keys(config.redis.prefix);
  const scripts = registerScripts(redis);
  const audit = new RedisAuditLog(redis, keys, clock);
  const minter = new CredentialMinter(keyring, { issuer: config.credentials.issuer ?? svid.spiffeId, maxTtlMs: config.credentials.max_ttl, clock });
  const settings = approvalSettings(config);
  const approvals = await startApprovals(
    { redis, keys, scripts, audit, directory: principals, channels: overrides.channels ?? [], clock, logger, metrics },
    settings,
    { role: overrides.role ?? 'all', minter },
  );
  const requests = new RequestService(
    { policy: () => policy, minter, audit, store: approvals.store, outbox: approvals.outbox, limiter: approvals.limiter, clock, metrics },
    {
      defaultAudience: config.credentials.default_audience,
      defaultTtlMs: config.credentials.default_ttl,
      pollIntervalMs: config.requests.poll_interval,
      sizeLimits: settings.sizeLimits,
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
        implementation: createBrokerService({
          peers,
          requests,
          delivery: approvals.delivery as NonNullable<Approvals['delivery']>,
          workflow: approvals.workflow,
          logger,
          metrics,
          pollIntervalMs: config.requests.poll_interval,
        }),
      },
      {
        definition: ApprovalsService,
        implementation: createApprovalsService({ peers, workflow: approvals.workflow, directory: principals, logger }),
      },
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
    approvals,
    async close() {
      await Promise.all([grpc.close(2000), http.close()]);
      await approvals.close();
      if (ownsRedis) redis.disconnect();
    },
  };
}

export interface RunningWorker {
  config: BrokerConfig;
  httpPort: number;
  http: RunningHttpServer;
  redis: Redis;
  logger: Logger;
  metrics: Metrics;
  approvals: Approvals;
  close(): Promise<void>;
}

/**
 * `countersign-broker serve --role worker`: only the queue workers (notifications,
 * expiry, sweeper), plus the HTTP listener for health, readiness and metrics.
 */
export async function startWorker(config: BrokerConfig, overrides: Omit<BrokerOverrides, 'role'> = {}): Promise<RunningWorker> {
  const clock = overrides.clock ?? systemClock;
  const logger = overrides.logger ?? createLogger({ level: config.log_level });
  const principals = config.principals ? await Principals.load(configPath(config, config.principals.file)) : Principals.empty();
  const metrics = overrides.metrics ?? new Metrics();
  const ownsRedis = overrides.redis === undefined;
  const redis = overrides.redis ?? (await connectRedis(config.redis.url, { connectionName: 'countersign-worker' }));
  const keys = new Keys(config.redis.prefix);
  const scripts = registerScripts(redis);
  const audit = new RedisAuditLog(redis, keys, clock);
  const approvals = await startApprovals(
    { redis, keys, scripts, audit, directory: principals, channels: overrides.channels ?? [], clock, logger, metrics },
    approvalSettings(config),
    { role: 'worker' },
  );
  const httpListen = splitHostPort(config.http.listen);
  const http = await startHttpServer({
    host: httpListen.host,
    port: httpListen.port,
    logger,
    jwks: () => ({ keys: [] }),
    readiness: [{ name: 'redis', check: async () => void (await redis.ping()) }],
    routes: {
      '/metrics': async (_req, res) => {
        const { contentType, body } = await metrics.render();
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
      },
    },
  });
  logger.info({ httpPort: http.port, role: 'worker' }, 'worker started');
  return {
    config,
    httpPort: http.port,
    http,
    redis,
    logger,
    metrics,
    approvals,
    async close() {
      await http.close();
      await approvals.close();
      if (ownsRedis) redis.disconnect();
    },
  };
}
