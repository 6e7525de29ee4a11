// The one way every process and subcommand reaches Redis (broker, worker, BullMQ,
// `audit verify|export`, `principals link`, dev mode): the configured topology
// (a URL, or Sentinel), auth and TLS, read from the config in one place, so a
// subcommand cannot quietly connect to a primary that died an hour ago.
import { readFile } from 'node:fs/promises';
import type { ConnectionOptions } from 'node:tls';
import type { AuditDurability } from '../redis/connection.js';
import { configPath, splitHostPort, type BrokerConfig } from './config.js';
import { CountersignError } from '../errors.js';
import { connectRedis, nodeServing, type Redis, type RedisConnectOptions } from '../redis/connection.js';

/** Everything needed to open a connection like the broker's own: what connectRedis takes. */
export interface RedisTarget {
  url: string;
  options: Omit<RedisConnectOptions, 'connectionName' | 'forBullmq' | 'connectTimeoutMs'>;
}

async function readSecret(config: BrokerConfig, field: string, file: string): Promise<string> {
  try {
    return (await readFile(configPath(config, file), 'utf8')).trim();
  } catch (e) {
    throw new CountersignError(
      'failed_precondition',
      'ERR_CONFIG_INVALID',
      `${field}: cannot read ${configPath(config, file)}: ${(e as Error).message}`,
      { field, file },
      { cause: e },
    );
  }
}

/** The configured Redis: URL, password (password_file), Sentinel (with its own password and TLS), TLS files. */
export async function redisTarget(config: BrokerConfig): Promise<RedisTarget> {
  const { redis } = config;
  const password =
    redis.password_file === undefined
      ? undefined
      : await readSecret(config, 'redis.password_file', redis.password_file);
  let tls: ConnectionOptions | undefined;
  if (redis.tls !== undefined) {
    const t = redis.tls;
    tls = {
      ...(t.ca_file === undefined ? {} : { ca: await readSecret(config, 'redis.tls.ca_file', t.ca_file) }),
      ...(t.cert_file === undefined ? {} : { cert: await readSecret(config, 'redis.tls.cert_file', t.cert_file) }),
      ...(t.key_file === undefined ? {} : { key: await readSecret(config, 'redis.tls.key_file', t.key_file) }),
      ...(t.servername === undefined ? {} : { servername: t.servername }),
    };
  } else if (redis.url.startsWith('rediss://')) {
    tls = {};
  }
  const sentinel = redis.sentinel && {
    masterName: redis.sentinel.master_name,
    sentinels: redis.sentinel.sentinels.map((s) => splitHostPort(s)),
    ...(redis.sentinel.password_file === undefined
      ? {}
      : { password: await readSecret(config, 'redis.sentinel.password_file', redis.sentinel.password_file) }),
    ...(redis.sentinel.tls ? { tls: tls ?? {} } : {}),
  };
  const cluster = redis.cluster && { nodes: redis.cluster.nodes.map((n) => splitHostPort(n)) };
  return { url: redis.url, options: { password, sentinel, cluster, tls } };
}

/** Connects to the configured Redis and waits until it answers, or throws UNAVAILABLE. */
export async function connectConfiguredRedis(config: BrokerConfig, connectionName: string): Promise<Redis> {
  const target = await redisTarget(config);
  return connectRedis(target.url, { ...target.options, connectionName });
}

/**
 * How many replicas must acknowledge a write before the broker answers (WAIT), and
 * for how long to wait: redis.durability, or the older audit.durability.wait_replicas
 * (the larger wins). Every answer that must survive a failover follows an audit
 * append, and WAIT after that append covers the writes made before it.
 */
export function durabilityOf(config: BrokerConfig): AuditDurability {
  const replicas = Math.max(config.redis.durability.replicas, config.audit.durability.wait_replicas);
  const timeoutMs =
    config.redis.durability.replicas > 0 ? config.redis.durability.timeout : config.audit.durability.timeout;
  return { waitReplicas: replicas, waitLocalFsync: config.audit.durability.wait_local_fsync, timeoutMs };
}

/**
 * Replicas of the primary this connection is on that are online and caught up
 * (INFO replication: state=online, lag in seconds at most maxLagSeconds).
 */
export async function onlineReplicas(redis: Redis, maxLagSeconds: number): Promise<number> {
  const info = await redis.info('replication');
  let online = 0;
  for (const line of info.split(/\r?\n/)) {
    if (!/^slave\d+:/.test(line)) continue;
    const fields = Object.fromEntries(
      line
        .slice(line.indexOf(':') + 1)
        .split(',')
        .map((kv) => kv.split('=') as [string, string]),
    );
    if (fields.state === 'online' && Number(fields.lag ?? Infinity) <= maxLagSeconds) online++;
  }
  return online;
}

/**
 * The readiness check for redis.durability: fails (throws) while fewer replicas are
 * online than each write must reach, because every such write would fail anyway. On a
 * Cluster, the replicas of the node that serves `key` (all keys share its slot).
 */
export async function checkDurability(redis: Redis, durability: AuditDurability, key: string): Promise<void> {
  if (durability.waitReplicas === 0) return;
  const online = await onlineReplicas(
    await nodeServing(redis, key),
    Math.max(1, Math.ceil(durability.timeoutMs / 1000)),
  );
  if (online < durability.waitReplicas) {
    throw new CountersignError(
      'unavailable',
      'ERR_REDIS_NOT_DURABLE',
      `redis.durability.replicas is ${durability.waitReplicas} but the Redis primary has ${online} replica(s) online and in sync: writes cannot be confirmed`,
    );
  }
}
