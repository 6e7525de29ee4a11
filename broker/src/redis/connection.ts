// Redis connections. Commands fail fast while Redis is unreachable (no offline
// queue), so a request never waits on a dead Redis: it gets UNAVAILABLE.
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { CountersignError, unavailable } from '../errors.js';

export type { Redis };

export interface RedisConnectOptions {
  /** Name shown in CLIENT LIST. */
  connectionName?: string;
  /** Overrides any password in the URL (e.g. read from a mounted Secret). */
  password?: string | undefined;
  /** Connect through Redis Sentinel: the URL's host is ignored, its db/TLS/user still apply. */
  sentinel?:
    | {
        masterName: string;
        sentinels: { host: string; port: number }[];
        /** The sentinels' own password (requirepass on the sentinels). */
        password?: string | undefined;
        /** TLS to the sentinels (these options), when set. */
        tls?: ConnectionOptions | undefined;
      }
    | undefined;
  /** Connect to a Redis Cluster through these seed nodes (the URL's host is ignored; its password and TLS apply). */
  cluster?: { nodes: { host: string; port: number }[] } | undefined;
  /** TLS options for the primary (rediss:// URLs, or the master Sentinel names); overrides the URL's plain "use TLS". */
  tls?: ConnectionOptions | undefined;
  /** How long to wait for the first connection (ms). */
  connectTimeoutMs?: number;
  /** BullMQ workers need blocking commands with no per-request retry limit. */
  forBullmq?: boolean;
}

export function redisOptions(options: RedisConnectOptions = {}): RedisOptions {
  return {
    ...(options.password === undefined ? {} : { password: options.password }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.sentinel === undefined
      ? {}
      : {
          name: options.sentinel.masterName,
          sentinels: options.sentinel.sentinels,
          ...(options.sentinel.password === undefined ? {} : { sentinelPassword: options.sentinel.password }),
          ...(options.sentinel.tls === undefined
            ? {}
            : { enableTLSForSentinelMode: true, sentinelTLS: options.sentinel.tls }),
          // Not failoverDetector: its +switch-master handler can close a connection that is already
          // reconnecting, and ioredis then ends it for good ("Connection is closed"), seen in the failover test.
          // A lost primary closes its connections; a reconnect asks the sentinels again.
          sentinelRetryStrategy: (attempt: number) => Math.min(100 * 2 ** Math.min(attempt, 4), 1000),
        }),
    connectionName: options.connectionName ?? 'countersign',
    lazyConnect: true,
    enableOfflineQueue: options.forBullmq ?? false,
    maxRetriesPerRequest: options.forBullmq ? null : 1,
    connectTimeout: options.connectTimeoutMs ?? 5000,
    // Off: the broker batches its own hot commands (one rate-limit script call per workload's
    // concurrent requests, one audit append per batch), so ioredis's auto-pipelining had little
    // left to merge (about 0.23 commands per allowed request) and cost a Pipeline object, extra
    // promises and a setImmediate per command, and held each command back while the previous
    // pipeline's replies were outstanding (docs/performance.md, third round).
    enableAutoPipelining: false,
    // Behind Sentinel the new primary is there within seconds: look again often, not every 5 s.
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 6), options.sentinel === undefined ? 5000 : 500),
  };
}

/**
 * A Redis Cluster client. It is typed as Redis: the commands the broker sends are the
 * same, and every key shares the prefix's hash tag, so each script (and each WAIT after
 * it, see nodeServing) goes to the one node that serves that slot.
 */
function clusterClient(url: string, options: RedisConnectOptions, nodes: { host: string; port: number }[]): Redis {
  const { password, username, tls } = new Redis(url, { lazyConnect: true }).options;
  const base = redisOptions(options);
  const clusterOptions: ClusterOptions = {
    redisOptions: {
      ...(password === undefined || password === null ? {} : { password }),
      ...(username === undefined || username === null ? {} : { username }),
      ...(tls === undefined ? {} : { tls }),
      ...(options.password === undefined ? {} : { password: options.password }),
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      connectionName: base.connectionName as string,
      connectTimeout: base.connectTimeout as number,
      maxRetriesPerRequest: base.maxRetriesPerRequest ?? null,
    },
    lazyConnect: true,
    enableOfflineQueue: base.enableOfflineQueue,
    enableAutoPipelining: base.enableAutoPipelining,
    scaleReads: 'master',
    // A moved slot or a failed-over node: look again soon, as the Sentinel client does.
    clusterRetryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 4), 1000),
    retryDelayOnFailover: 100,
    retryDelayOnTryAgain: 50,
    maxRedirections: 32,
    retryDelayOnClusterDown: 100,
  };
  return new Cluster(nodes, clusterOptions) as unknown as Redis;
}

export function isCluster(redis: Redis): boolean {
  return (redis as unknown) instanceof Cluster;
}

/** A connection like this one (same topology, auth and TLS), with these options changed. */
export function duplicateConnection(redis: Redis, overrides: Partial<RedisOptions> = {}): Redis {
  if (!isCluster(redis)) return redis.duplicate(overrides);
  const cluster = redis as unknown as Cluster;
  const { enableOfflineQueue, enableAutoPipelining, ...rest } = overrides;
  return cluster.duplicate([], {
    ...cluster.options,
    redisOptions: { ...cluster.options.redisOptions, ...rest },
    ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }),
    ...(enableAutoPipelining === undefined ? {} : { enableAutoPipelining }),
  }) as unknown as Redis;
}

const keySlots = new Map<string, number>();

/**
 * The connection that serves this key: the Redis itself, or on a Cluster the connection
 * to the node that holds the key's slot, which is the one the cluster client sent the
 * key's last write on. WAIT counts the replicas that have the writes of the connection it
 * runs on, so after a write it must run there.
 */
export async function nodeServing(redis: Redis, key: string): Promise<Redis> {
  if (!isCluster(redis)) return redis;
  const cluster = redis as unknown as Cluster;
  let slot = keySlots.get(key);
  if (slot === undefined) {
    slot = Number(await cluster.call('CLUSTER', 'KEYSLOT', key));
    keySlots.set(key, slot);
  }
  const nodeKey = cluster.slots[slot]?.[0];
  const node = cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === nodeKey);
  if (node === undefined)
    throw unavailable('ERR_REDIS_UNAVAILABLE', `no Redis Cluster node serves slot ${slot} (of ${key}) yet`);
  return node;
}

/** Connects and waits until Redis answers, or throws UNAVAILABLE naming the URL (without password). */
export async function connectRedis(url: string, options: RedisConnectOptions = {}): Promise<Redis> {
  const redis =
    options.cluster === undefined
      ? new Redis(url, redisOptions(options))
      : clusterClient(url, options, options.cluster.nodes);
  const where = options.cluster
    ? `cluster nodes ${options.cluster.nodes.map((n) => `${n.host}:${n.port}`).join(', ')}`
    : options.sentinel
      ? `sentinel master ${options.sentinel.masterName}`
      : redactRedisUrl(url);
  redis.on('error', () => {
    // Connection errors surface on the commands that fail; ioredis keeps reconnecting.
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (e) {
    redis.disconnect();
    throw unavailable('ERR_REDIS_UNAVAILABLE', `cannot reach Redis at ${where}: ${(e as Error).message}`, e);
  }
  return redis;
}

export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

/** Script errors are bugs (internal); anything else from ioredis means Redis is unreachable. */
export function fromRedisError(e: unknown, what: string): CountersignError {
  if (e instanceof CountersignError) return e;
  const err = e as Error;
  // A cluster slot being resharded or failing over: transient, the caller retries (UNAVAILABLE).
  // NOSCRIPT too: a script cache miss that the client did not cure with EVAL, as ioredis does
  // not after an ASK redirect during a slot migration (BullMQ's scripts); the retry cures it.
  if (
    err?.name === 'ReplyError' &&
    /^(TRYAGAIN|CLUSTERDOWN|MOVED|ASK|LOADING|MASTERDOWN|READONLY|NOREPLICAS|NOSCRIPT)\b/.test(err.message)
  ) {
    return unavailable('ERR_REDIS_UNAVAILABLE', `${what}: Redis is unavailable (${err.message.split(' ')[0]})`, e);
  }
  if (err?.name === 'ReplyError') {
    return new CountersignError(
      'internal',
      'ERR_REDIS_REPLY',
      `${what}: Redis replied with an error`,
      { reply: err.message },
      { cause: e },
    );
  }
  return unavailable('ERR_REDIS_UNAVAILABLE', `${what}: Redis is unavailable`, e);
}

/** Runs a Redis operation, turning connection failures into UNAVAILABLE. */
export async function redisCall<T>(what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    throw fromRedisError(e, what);
  }
}

/**
 * BullMQ loses jobs when Redis evicts keys, so anything but noeviction is worth a
 * warning at start-up. Managed Redis services may refuse CONFIG; that is reported too.
 */
export async function checkEvictionPolicy(redis: Redis): Promise<string | undefined> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    const policy = reply[1];
    return policy === 'noeviction'
      ? undefined
      : `Redis maxmemory-policy is ${policy ?? 'unknown'}; set it to noeviction, or pending requests and queued jobs can be evicted under memory pressure`;
  } catch (e) {
    return `could not read Redis maxmemory-policy (${(e as Error).message}); make sure it is noeviction`;
  }
}

/** What a write must reach before it is acknowledged (redis.durability; the audit log waits for it). */
export interface AuditDurability {
  /** Replicas that must have the write (Redis WAIT / WAITAOF); 0 = do not wait. */
  waitReplicas: number;
  /** Wait until the primary has fsynced its AOF (WAITAOF, Redis 7.2+). */
  waitLocalFsync: boolean;
  timeoutMs: number;
}
