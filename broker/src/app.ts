// Composition root: reads what the config names, connects Redis, and starts the
// gRPC and HTTP listeners. Everything with state is created here and injected.
// startBroker (roles all, api) and startWorker (role worker) build their common
// parts with the same functions, in this order: readFiles (principals, keyring),
// connectCore (Redis, keys, scripts, the audit chain and its checkpoints),
// openApprovers (Slack user groups and the directory resolving through them, console,
// approval machinery, Slack, queue workers),
// startStatusHttp/startHealthListener; what differs between them is a RoleWiring.
import type { ApproverChannel } from '@countersign/approvers';
import { ApprovalsService, BrokerService, IdentityService } from '@countersign/proto';
import { RedisAuditLog } from './audit/audit-log.js';
import { Checkpointer } from './audit/checkpoints.js';
import { createLocalJWKSet } from 'jose';
import { KeyringHeadSigner } from './audit/head.js';
import { lastCheckpointedHead, lastHeadInFile } from './audit/last-known.js';
import { FanoutSink, FileSink, StreamSink, type AuditSink } from './audit/sinks.js';
import { systemClock, type Clock } from './clock.js';
import { configPath, splitHostPort, type BrokerConfig } from './config/config.js';
import { CredentialMinter } from './credentials/mint.js';
import type { Keyring } from './credentials/keys.js';
import { loadKeyring } from './credentials/load.js';
import { Redeemers } from './credentials/redeemers.js';
import { RedemptionService } from './credentials/redemption.js';
import { KeyRotationRecorder } from './credentials/rotation.js';
import { BrokerIdentity, type IdentitySettings } from './identity/broker-identity.js';
import { RefusalAggregator, sourceOf } from './identity/refusal-recorder.js';
import { PeerAuthenticator } from './identity/peer-authenticator.js';
import { createLogger, type Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { Tracing } from './observability/tracing.js';
import { Principals } from './policy/principals.js';
import {
  createSlack,
  loadSlackSettings,
  openSlackUsergroups,
  SLACK_CHANNEL_NAME,
  SLACK_EVENTS_PATH,
  type BrokerSlack,
} from './channels/slack.js';
import { checkEvictionPolicy, type Redis } from './redis/connection.js';
import { checkDurability, connectConfiguredRedis, durabilityOf } from './config/redis.js';
import { startHealthServer, type RunningHealthServer } from './api/health-server.js';
import { loadPolicyFile, PolicyReloader } from './policy/reloader.js';
import { RedisRequestRate } from './policy/request-rate.js';
import { Keys } from './redis/keys.js';
import { WatchStreamSlots } from './requests/limits.js';
import { REQUESTS_PER_TURN, TurnSlots } from './requests/turns.js';
import { RequestService } from './requests/request-service.js';
import { approvalSettings, openApprovals, type Approvals, type BrokerRole } from './requests/runtime.js';
import { registerScripts, type ScriptRunner } from './requests/scripts.js';
import { createApprovalsService } from './api/approvals-service.js';
import { createBrokerService } from './api/broker-service.js';
import { createIdentityService } from './api/identity-service.js';
import { OidcExchange } from './exchange/oidc-exchange.js';
import { startGrpcServer, type RunningGrpcServer } from './api/grpc-server.js';
import { startHttpServer, type HttpHandler, type RunningHttpServer } from './api/http-server.js';
import { HealthImplementation } from 'grpc-health-check';
import type { OpenConsole } from './console/index.js';

export interface BrokerOverrides {
  clock?: Clock;
  logger?: Logger;
  /** An existing connection (tests); the broker will not close it. */
  redis?: Redis;
  metrics?: Metrics;
  /** Where audit JSON lines go when audit.stdout is on (default process.stdout); null drops them (tests). */
  auditStdout?: NodeJS.WritableStream | null;
  /** Environment for SPIFFE_ENDPOINT_SOCKET; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Workload API reconnect backoff (tests shorten it). */
  workloadApiBackoff?: IdentitySettings['workloadApiBackoff'];
  /** "all" (default): API and queue workers; "api": no workers; see startWorker for "worker". */
  role?: Exclude<BrokerRole, 'worker'>;
  /** Approver channels the notification jobs call (Slack registers one). */
  channels?: ApproverChannel[];
}

/** The identity section of the config, with paths resolved. */
export function identitySettings(
  config: BrokerConfig,
  overrides: Pick<BrokerOverrides, 'env' | 'workloadApiBackoff'> = {},
): IdentitySettings {
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
    bundles: config.identity.bundles.map((b) => ({
      trustDomain: b.trust_domain,
      file: path(b.file),
      format: b.format,
    })),
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
  /** Plaintext health port, when health.grpc_listen is set. */
  healthPort: number | undefined;
  grpc: RunningGrpcServer;
  http: RunningHttpServer;
  redis: Redis;
  logger: Logger;
  metrics: Metrics;
  /** The principals file, with slack_usergroup groups resolved through Slack when Slack is on. */
  principals: Principals;
  /** Takes audit checkpoints (also on demand, for tests and operators). */
  checkpointer: Checkpointer;
  /** The policy in force (`policies.current`) and its hot reload (`policies.reload('manual')`). */
  policies: PolicyReloader;
  /** The broker's SVID and trust bundles as they rotate. */
  identity: BrokerIdentity;
  approvals: Approvals;
  /** How Slack approvals reach this broker, or undefined when Slack is off. */
  slackMode: 'http' | 'socket' | undefined;
  /** The approver console (sign-in links, its address), when console.enabled. */
  console: OpenConsole | undefined;
  /** Writes the refused-identity summaries of the interval so far now (also done every identity.refusals.interval); returns how many. */
  flushRefusals(): Promise<number>;
  close(): Promise<void>;
}

/** The audit chain with its sinks, durability waits and checkpoints: the same in every role. */
async function openAudit(
  config: BrokerConfig,
  deps: {
    redis: Redis;
    keys: Keys;
    keyring: Keyring;
    clock: Clock;
    logger: Logger;
    issuer: string;
    overrides: BrokerOverrides;
  },
): Promise<{ audit: RedisAuditLog; auditRedis: Redis; auditSink: FanoutSink; checkpointer: Checkpointer }> {
  const { redis, keys, keyring, clock, logger, issuer, overrides } = deps;
  const sinks: AuditSink[] = [];
  const auditStdout = overrides.auditStdout === undefined ? process.stdout : overrides.auditStdout;
  if (config.audit.stdout && auditStdout !== null) sinks.push(new StreamSink(auditStdout));
  if (config.audit.file !== undefined) sinks.push(await FileSink.open(configPath(config, config.audit.file), logger));
  const auditSink = new FanoutSink(sinks);
  const durability = durabilityOf(config);
  // WAIT/WAITAOF block the connection they run on: give the audit its own then.
  const waits = durability.waitReplicas > 0 || durability.waitLocalFsync;
  const auditRedis = waits ? await connectConfiguredRedis(config, 'countersign-audit') : redis;
  const getKey = createLocalJWKSet(keyring.allPublicJwks());
  const heads = new KeyringHeadSigner(keyring, issuer, getKey);
  const checkpointer = new Checkpointer(
    { redis, keys, keyring, heads, clock, logger, sink: auditSink },
    { issuer, everyEvents: config.audit.checkpoint.every_events, intervalMs: config.audit.checkpoint.interval },
  );
  const audit = new RedisAuditLog(auditRedis, keys, clock, {
    heads,
    durability,
    sink: auditSink,
    logger,
    onAppended: (head) => checkpointer.noteAppended(head),
    refuseFork: durability.waitReplicas > 0,
  });
  for (const warning of await audit.preflight()) logger.warn(warning);
  // Before anything is appended: a Redis that lost the chain (or had it cut) gets a restart record, not a silent new chain.
  const known = [await lastCheckpointedHead(redis, keys, getKey)];
  if (config.audit.file !== undefined) {
    known.push(
      await lastHeadInFile(configPath(config, config.audit.file)).catch((err: unknown) => {
        logger.warn({ err }, 'could not read the audit file sink back to compare it with the chain in Redis');
        return undefined;
      }),
    );
  }
  await audit.recover(known.filter((k) => k !== undefined));
  return { audit, auditRedis, auditSink, checkpointer };
}

/** GET /metrics, Prometheus text format. */
const metricsRoute =
  (metrics: Metrics): HttpHandler =>
  async (_req, res) => {
    const { contentType, body } = await metrics.render();
    res.writeHead(200, { 'content-type': contentType });
    res.end(body);
  };

/** What differs between the processes one config starts; every other part is built the same way for both. */
interface RoleWiring {
  role: BrokerRole;
  /** The client name of the main Redis connection, so CLIENT LIST tells API replicas from workers. */
  connectionName: 'countersign-broker' | 'countersign-worker';
  /**
   * The `iss` of the signed chain heads and checkpoints. Deliberately not the same in both roles:
   * the broker names itself as it names itself on credentials (credentials.issuer, else its own
   * SPIFFE ID); a worker has no SVID (it takes no mTLS calls), so it uses credentials.issuer, else
   * the trust domain's ID, spiffe://<trust_domain>. Verification (`countersign-broker audit verify`,
   * recovery at start-up) checks a head's signature against the keyring, never its `iss`, so one
   * chain written by brokers and workers verifies as one; the `iss` says which kind of process signed.
   */
  issuer: string;
}

/** Injected or default clock, logger and metrics. */
interface Base {
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
}

function baseOf(config: BrokerConfig, overrides: BrokerOverrides): Base {
  return {
    clock: overrides.clock ?? systemClock,
    logger: overrides.logger ?? createLogger({ level: config.log_level }),
    metrics: overrides.metrics ?? new Metrics(),
  };
}

/** The files the config names that every role needs, read before any connection is made. */
interface Files {
  /** The principals file, with slack_usergroup groups resolved through Slack when Slack is on. */
  principals: Principals;
  /** Signs credentials (broker) and the chain's heads and checkpoints (both roles). */
  keyring: Keyring;
}

async function readFiles(config: BrokerConfig): Promise<Files> {
  const principals = config.principals
    ? await Principals.load(configPath(config, config.principals.file))
    : Principals.empty();
  const keyring = await loadKeyring(config);
  return { principals, keyring };
}

/** Redis and the audit chain: the state every role shares. */
interface Core extends Base, Files {
  redis: Redis;
  keys: Keys;
  scripts: ScriptRunner;
  audit: RedisAuditLog;
  auditSink: FanoutSink;
  checkpointer: Checkpointer;
  /** Stops the checkpoints, flushes the sinks and drops the connections this process opened. */
  close(): Promise<void>;
}

async function connectCore(
  config: BrokerConfig,
  overrides: BrokerOverrides,
  base: Base & Files,
  wiring: RoleWiring,
): Promise<Core> {
  const { logger } = base;
  const ownsRedis = overrides.redis === undefined;
  const redis = overrides.redis ?? (await connectConfiguredRedis(config, wiring.connectionName));
  const evictionWarning = await checkEvictionPolicy(redis);
  if (evictionWarning) logger.warn(evictionWarning);
  const keys = new Keys(config.redis.prefix);
  const scripts = registerScripts(redis);
  const { audit, auditRedis, auditSink, checkpointer } = await openAudit(config, {
    ...base,
    redis,
    keys,
    issuer: wiring.issuer,
    overrides,
  });
  return {
    ...base,
    redis,
    keys,
    scripts,
    audit,
    auditSink,
    checkpointer,
    async close() {
      checkpointer.stop();
      await auditSink.close();
      if (auditRedis !== redis) auditRedis.disconnect();
      if (ownsRedis) redis.disconnect();
    },
  };
}

/** The approver side: the console, the approval machinery, Slack, and the queue workers (where the role runs them). */
interface Approvers {
  approvals: Approvals;
  console: OpenConsole | undefined;
  slack: BrokerSlack | undefined;
  slackMode: 'http' | 'socket' | undefined;
  /** The principals with slack_usergroup groups resolved through Slack (when on): what every approver-side part looks people up in. */
  directory: Principals;
}

/**
 * Built in dependency order, with no late binding: Slack's user groups first (the directory
 * resolves slack_usergroup groups through them), then the console's parts (the workflow checks
 * passkeys with them and links to its pages), then the approval machinery (announcing the
 * channel names), then Slack (it takes clicks through the workflow), then the queue workers
 * with the channels their notification jobs call.
 */
async function openApprovers(
  config: BrokerConfig,
  overrides: BrokerOverrides,
  core: Core,
  wiring: RoleWiring,
  options: { minter?: CredentialMinter; onFailure: (() => Promise<void>)[] },
): Promise<Approvers> {
  const { redis, keys, scripts, audit, clock, logger, metrics, principals } = core;
  const { role } = wiring;
  const env = overrides.env ?? process.env;
  // Slack's settings before anything is built: a bad one stops start-up first (docs/slack.md).
  const slackSettings = await loadSlackSettings(config, env);
  const usergroups =
    slackSettings === undefined ? undefined : await openSlackUsergroups(slackSettings, { redis, keys, logger });
  const directory =
    usergroups === undefined ? principals : principals.withSlackUsergroups((id) => usergroups.members(id));
  // Workers bind no console listener; Slack cards they render still link to it.
  // The console (and with it WebAuthn and the OIDC client) is loaded only when it is on.
  const approverConsole = config.console.enabled
    ? await (
        await import('./console/index.js')
      ).openConsole(config, { redis, keys, audit, clock, logger, directory, env }, { listen: role !== 'worker' })
    : undefined;
  if (approverConsole !== undefined) options.onFailure.push(() => approverConsole.close());
  const extraChannels = overrides.channels ?? [];
  const approvals = await openApprovals(
    {
      redis,
      keys,
      scripts,
      audit,
      directory,
      channelNames: [...extraChannels.map((c) => c.name), ...(slackSettings !== undefined ? [SLACK_CHANNEL_NAME] : [])],
      clock,
      logger,
      metrics,
      // Votes (and so passkey proofs) reach only the roles that serve; a worker's workflow expires and sweeps.
      console: approverConsole && {
        passkeys: role === 'worker' ? undefined : approverConsole.passkeys,
        requestUrl: approverConsole.requestUrl,
      },
    },
    approvalSettings(config),
    { role, ...(options.minter !== undefined ? { minter: options.minter } : {}) },
  );
  options.onFailure.push(() => approvals.close());
  const slack =
    slackSettings === undefined || usergroups === undefined
      ? undefined
      : await createSlack(slackSettings, {
          workflow: approvals.workflow,
          directory,
          usergroups,
          redis,
          keys,
          audit,
          clock,
          logger,
          metrics,
          role,
          console: approverConsole?.port_,
        });
  if (slack !== undefined) options.onFailure.push(() => slack.close());
  await approvals.startWorkers([...extraChannels, ...(slack !== undefined ? [slack.channel] : [])]);
  metrics.sources.queueDepth = async () => [...(await approvals.jobs.depth()), ...((await slack?.depth()) ?? [])];
  return { approvals, console: approverConsole, slack, slackMode: slackSettings?.mode, directory };
}

/** The HTTP listener every role has: readiness (Redis and its durability), metrics, the JWKS, and what the role adds. */
async function startStatusHttp(
  config: BrokerConfig,
  core: Core,
  options: { jwks: () => unknown; routes?: Record<string, HttpHandler> },
): Promise<RunningHttpServer> {
  const { redis, keys, metrics, logger } = core;
  const listen = splitHostPort(config.http.listen);
  const durability = durabilityOf(config);
  return startHttpServer({
    host: listen.host,
    port: listen.port,
    logger,
    jwks: options.jwks,
    readiness: [
      { name: 'redis', check: async () => void (await redis.ping()) },
      { name: 'redis_durability', check: () => checkDurability(redis, durability, keys.auditChain()) },
    ],
    routes: { '/metrics': metricsRoute(metrics), ...options.routes },
  });
}

/** The plaintext gRPC health listener, when health.grpc_listen is set. */
async function startHealthListener(
  config: BrokerConfig,
  health: HealthImplementation,
): Promise<RunningHealthServer | undefined> {
  if (!config.health.grpc_listen) return undefined;
  const listen = splitHostPort(config.health.grpc_listen);
  return startHealthServer({ host: listen.host, port: listen.port, health });
}

export async function startBroker(config: BrokerConfig, overrides: BrokerOverrides = {}): Promise<RunningBroker> {
  const base = baseOf(config, overrides);
  // The identity watches files and may hold a Workload API stream: stop it if anything after it fails.
  const identity = await BrokerIdentity.start(identitySettings(config, overrides), base);
  // What was opened before a later step fails is closed again (an open listener or connection would keep the process alive).
  const onFailure: (() => Promise<void>)[] = [];
  try {
    return await startServices(config, overrides, { ...base, identity, onFailure });
  } catch (e) {
    identity.close();
    for (const undo of onFailure.reverse()) await undo().catch(() => undefined);
    throw e;
  }
}

async function startServices(
  config: BrokerConfig,
  overrides: BrokerOverrides,
  { identity, onFailure, ...base }: Base & { identity: BrokerIdentity; onFailure: (() => Promise<void>)[] },
): Promise<RunningBroker> {
  const { clock, logger, metrics } = base;
  const svid = identity.svid;
  const bundles = identity.bundles;
  const files = await readFiles(config);
  const { principals, keyring } = files;
  keyring.signingKey(clock.now()); // fails start-up when no key is active yet
  const issuer = config.credentials.issuer ?? svid.spiffeId;
  const policyFile = configPath(config, config.policy.file);
  const policy = await loadPolicyFile({ file: policyFile, principals, clock });

  const wiring: RoleWiring = { role: overrides.role ?? 'all', connectionName: 'countersign-broker', issuer };
  const core = await connectCore(config, overrides, { ...base, ...files }, wiring);
  onFailure.push(() => core.close());
  const { redis, keys, audit, checkpointer } = core;
  const rotation = new KeyRotationRecorder({ redis, keys, keyring, audit, clock, logger });
  // Not fatal: until it is recorded, every credential's own record names its kid, and the next mint retries.
  await rotation
    .check()
    .catch((err: unknown) => logger.warn({ err }, 'could not audit the signing key at start-up; will retry'));
  checkpointer.start();
  metrics.sources.now = () => clock.now();
  metrics.sources.signingKey = () => rotation.signingSince();
  const minter = new CredentialMinter(keyring, {
    issuer,
    maxTtlMs: config.credentials.max_ttl,
    clock,
    onKeyUsed: (kid) => rotation.noteKeyUsed(kid),
  });
  const redeemers = new Redeemers(config.credentials.redeemers);
  if (!redeemers.configured) {
    logger.warn(
      'credentials.redeemers is not set: RedeemCredential refuses every caller (PERMISSION_DENIED) until it lists who may redeem, per audience; see docs/credentials.md',
    );
  }
  const redemptions = new RedemptionService({ redis, keys, keyring, audit, clock, issuer, redeemers, metrics });
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
  warnWithoutConsole(config, policy, logger);
  const {
    approvals,
    console: approverConsole,
    slack,
    slackMode,
    directory,
  } = await openApprovers(config, overrides, core, wiring, { minter, onFailure });
  await approverConsole?.serve({
    workflow: approvals.workflow,
    store: approvals.store,
    policy: () => policies.current,
  });
  const settings = approvalSettings(config);
  const requests = new RequestService(
    {
      policy: () => policies.current,
      minter,
      audit,
      store: approvals.store,
      outbox: approvals.outbox,
      limiter: approvals.limiter,
      clock,
      metrics,
      turns: new TurnSlots(REQUESTS_PER_TURN),
      announceBreakGlass: async (notice) => {
        const queued = await approvals.jobs.notifyBreakGlass(notice);
        logger[queued > 0 ? 'info' : 'warn'](
          {
            requestId: notice.requestId,
            rule: notice.rule,
            requester: notice.requester,
            operation: notice.operation,
            resource: notice.resource,
          },
          queued > 0
            ? 'break-glass used; announcing it to the approvers'
            : 'break-glass used, and no approver channel (Slack) is configured to announce it: only the audit log records it',
        );
      },
    },
    {
      defaultAudience: config.credentials.default_audience,
      defaultTtlMs: config.credentials.default_ttl,
      pollIntervalMs: config.requests.poll_interval,
      sizeLimits: settings.sizeLimits,
    },
  );
  const refusals = new RefusalAggregator(clock, {
    intervalMs: config.identity.refusals.interval,
    maxSources: config.identity.refusals.max_sources,
  });
  const peers = new PeerAuthenticator(
    bundles,
    clock,
    (error, peer, context) => {
      metrics.identityRefusals.inc({ code: error.code });
      if (refusals.note(error, peer, context)) {
        logger.info(
          { peer, code: error.code, ...context },
          `refused identity: ${error.message} (more like it from ${sourceOf(peer)} are summed in the audit trail)`,
        );
      }
    },
    config.identity.xfcc.enabled ? { proxyIds: config.identity.xfcc.proxy_ids } : undefined,
  );
  /** One identity_refused record per (code, source) of the interval that ends now. */
  const flushRefusals = async (): Promise<number> => {
    const summaries = refusals.drain();
    for (const r of summaries) {
      await audit
        .append({
          type: 'identity_refused',
          peer: r.source,
          code: r.code,
          message: r.message,
          count: r.count,
          first_at: r.firstAt,
          last_at: r.lastAt,
          ...(r.proxy ? { proxy: r.proxy } : {}),
          ...(r.sources !== undefined ? { sources: r.sources } : {}),
        })
        .catch((err: unknown) =>
          logger.warn({ err, code: r.code, source: r.source, count: r.count }, 'could not audit refused identities'),
        );
    }
    return summaries.length;
  };
  // Refused exchanges are summed with refused certificates: one identity_refused record per code and source per interval.
  const exchange = await OidcExchange.open({
    config,
    redis,
    keys,
    audit,
    clock,
    logger,
    bundles,
    directory,
    limiter: approvals.limiter,
    onRefused: (error, peer) => {
      metrics.identityRefusals.inc({ code: error.code });
      if (refusals.note(error, peer, {}))
        logger.info(
          { peer, code: error.code },
          `refused token exchange: ${error.message} (more like it from ${sourceOf(peer)} are summed in the audit trail)`,
        );
    },
  });
  const refusalTimer = setInterval(() => void flushRefusals(), refusals.intervalMs);
  refusalTimer.unref();

  const stopping = new AbortController();
  const tracing = await startTracing(config, overrides.env ?? process.env, logger);
  const grpcListen = splitHostPort(config.grpc.listen);
  const grpc = await startGrpcServer({
    host: grpcListen.host,
    port: grpcListen.port,
    maxMessageBytes: config.grpc.max_message_bytes,
    maxConcurrentStreams: config.grpc.max_concurrent_streams,
    peers,
    logger,
    tls: identity.tls(),
    services: [
      {
        definition: BrokerService,
        implementation: createBrokerService({
          peers,
          exchange,
          requests,
          redemptions,
          delivery: approvals.delivery as NonNullable<Approvals['delivery']>,
          workflow: approvals.workflow,
          logger,
          metrics,
          pollIntervalMs: config.requests.poll_interval,
          watchSlots: new WatchStreamSlots(config.requests.limits.max_watch_streams_per_workload),
          shutdown: stopping.signal,
          tracing,
        }),
      },
      {
        definition: IdentityService,
        implementation: createIdentityService({ exchange, logger, metrics, tracing }),
      },
      {
        definition: ApprovalsService,
        implementation: createApprovalsService({
          peers,
          workflow: approvals.workflow,
          directory,
          logger,
          metrics,
          tracing,
        }),
      },
    ],
  });
  const http = await startStatusHttp(config, core, {
    jwks: () => keyring.jwks(clock.now()),
    routes: slack?.httpHandler ? { [SLACK_EVENTS_PATH]: slack.httpHandler } : {},
  });
  const durability = durabilityOf(config);
  await slack?.start();
  // Readiness follows Redis: without it the broker can only answer UNAVAILABLE.
  grpc.health.setStatus('liveness', 'SERVING');
  const servingNames = ['', 'countersign.v1.Broker', 'countersign.v1.Approvals', 'countersign.v1.Identity'];
  let ready = true;
  const readinessTimer = setInterval(() => {
    Promise.all([redis.ping(), checkDurability(redis, durability, keys.auditChain())])
      .then(
        () => (ready = true),
        () => (ready = false),
      )
      .finally(() => {
        for (const name of servingNames) grpc.health.setStatus(name, ready ? 'SERVING' : 'NOT_SERVING');
      });
  }, 5000);
  readinessTimer.unref();
  const healthServer = await startHealthListener(config, grpc.health);
  // A rotated SVID or a reloaded bundle goes into the TLS context; open connections stay up.
  identity.onChange(() => grpc.updateTls(identity.tls()));
  policies.start();
  logger.info(
    {
      spiffeId: svid.spiffeId,
      grpcPort: grpc.port,
      httpPort: http.port,
      healthPort: healthServer?.port,
      policyDigest: policy.digest,
    },
    'broker started',
  );

  return {
    config,
    spiffeId: svid.spiffeId,
    grpcPort: grpc.port,
    httpPort: http.port,
    healthPort: healthServer?.port,
    grpc,
    http,
    redis,
    logger,
    metrics,
    principals: directory,
    checkpointer,
    policies,
    identity,
    approvals,
    slackMode,
    console: approverConsole,
    flushRefusals,
    async close() {
      policies.close();
      identity.close();
      clearInterval(readinessTimer);
      clearInterval(refusalTimer);
      // Probes see NOT_SERVING first, so load balancers stop sending new calls while in-flight ones finish;
      // watchers are told to reconnect (to another replica) at once rather than cut at the end of the grace.
      for (const name of servingNames) grpc.health.setStatus(name, 'NOT_SERVING');
      stopping.abort();
      await Promise.all([
        grpc.close(config.shutdown_grace),
        http.close(),
        healthServer?.close(),
        approverConsole?.close(),
      ]);
      await flushRefusals();
      // Jobs in flight finish (or go back to the queue) before the connections go.
      await approvals.close();
      // After the approval workers: a notification job in flight still enqueues its Slack jobs.
      await slack?.close();
      await tracing.shutdown().catch((err: unknown) => logger.warn({ err }, 'could not flush traces'));
      await core.close();
    },
  };
}

/** Rules that need passkeys cannot be approved without the console: say so at start-up (policy check says it too). */
function warnWithoutConsole(
  config: BrokerConfig,
  policy: { document: { rules: { name: string; approval?: { step_up: string } | undefined }[] } },
  logger: Logger,
): void {
  if (config.console.enabled) return;
  const rules = policy.document.rules.filter((r) => r.approval?.step_up === 'webauthn').map((r) => r.name);
  if (rules.length > 0) {
    logger.warn(
      { rules },
      `rules ${rules.join(', ')} require step-up webauthn, but the approver console is off (console.enabled): their requests cannot be approved, only denied or left to expire`,
    );
  }
}

/** Tracing from the config, or from the standard OTEL_* environment variables; off when neither names an endpoint. */
async function startTracing(config: BrokerConfig, env: NodeJS.ProcessEnv, logger: Logger): Promise<Tracing> {
  const endpoint =
    config.tracing.otlp_endpoint ?? env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint) return Tracing.disabled();
  const serviceName = config.tracing.service_name ?? env.OTEL_SERVICE_NAME ?? 'countersign-broker';
  return Tracing.start({ endpoint, serviceName, sampleRatio: config.tracing.sample_ratio }, logger);
}

export interface RunningWorker {
  config: BrokerConfig;
  httpPort: number;
  healthPort: number | undefined;
  http: RunningHttpServer;
  redis: Redis;
  logger: Logger;
  metrics: Metrics;
  approvals: Approvals;
  /** Takes audit checkpoints (also on demand, for tests and operators), signed as RoleWiring.issuer says. */
  checkpointer: Checkpointer;
  close(): Promise<void>;
}

/**
 * `countersign-broker serve --role worker`: only the queue workers (notifications,
 * expiry, sweeper), plus the HTTP listener for health, readiness and metrics.
 */
export async function startWorker(
  config: BrokerConfig,
  overrides: Omit<BrokerOverrides, 'role'> = {},
): Promise<RunningWorker> {
  const base = baseOf(config, overrides);
  const files = await readFiles(config);
  // No SVID here to name the signer by: see RoleWiring.issuer.
  const wiring: RoleWiring = {
    role: 'worker',
    connectionName: 'countersign-worker',
    issuer: config.credentials.issuer ?? `spiffe://${config.trust_domain}`,
  };
  const onFailure: (() => Promise<void>)[] = [];
  try {
    const core = await connectCore(config, overrides, { ...base, ...files }, wiring);
    onFailure.push(() => core.close());
    core.checkpointer.start();
    const { approvals, slack } = await openApprovers(config, overrides, core, wiring, { onFailure });
    await slack?.start();
    // No JWKS: workers issue no credentials.
    const http = await startStatusHttp(config, core, { jwks: () => ({ keys: [] }) });
    onFailure.push(() => http.close());
    return await runWorker(config, core, { approvals, slack, http });
  } catch (e) {
    for (const undo of onFailure.reverse()) await undo().catch(() => undefined);
    throw e;
  }
}

async function runWorker(
  config: BrokerConfig,
  core: Core,
  { approvals, slack, http }: { approvals: Approvals; slack: BrokerSlack | undefined; http: RunningHttpServer },
): Promise<RunningWorker> {
  const { redis, logger, metrics } = core;
  // The same probes as the API replicas: "" follows Redis, "liveness" the process.
  const health = new HealthImplementation({ '': 'SERVING', liveness: 'SERVING' });
  const readinessTimer = setInterval(() => {
    redis.ping().then(
      () => health.setStatus('', 'SERVING'),
      () => health.setStatus('', 'NOT_SERVING'),
    );
  }, 5000);
  readinessTimer.unref();
  const healthServer = await startHealthListener(config, health).catch((e: unknown) => {
    clearInterval(readinessTimer);
    throw e;
  });
  logger.info({ httpPort: http.port, healthPort: healthServer?.port, role: 'worker' }, 'worker started');
  return {
    config,
    httpPort: http.port,
    healthPort: healthServer?.port,
    http,
    redis,
    logger,
    metrics,
    approvals,
    checkpointer: core.checkpointer,
    async close() {
      clearInterval(readinessTimer);
      health.setStatus('', 'NOT_SERVING');
      await Promise.all([http.close(), healthServer?.close()]);
      await approvals.close();
      // After the approval workers: a notification job in flight still enqueues its Slack jobs.
      await slack?.close();
      await core.close();
    },
  };
}
