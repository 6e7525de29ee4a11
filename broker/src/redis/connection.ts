// Redis connections. Commands fail fast while Redis is unreachable (no offline
// queue), so a request never waits on a dead Redis: it gets UNAVAILABLE.
import { Redis, type RedisOptions } from 'ioredis';
import { CountersignError, unavailable } from '../errors.js';

export type { Redis };

export interface RedisConnectOptions {
  /** Name shown in CLIENT LIST. */
  connectionName?: string;
  /** How long to wait for the first connection (ms). */
  connectTimeoutMs?: number;
  /** BullMQ workers need blocking commands with no per-request retry limit. */
  forBullmq?: boolean;
}

export function redisOptions(options: RedisConnectOptions = {}): RedisOptions {
  return {
    connectionName: options.connectionName ?? 'countersign',
    lazyConnect: true,
    enableOfflineQueue: options.forBullmq ?? false,
    maxRetriesPerRequest: options.forBullmq ? null : 1,
    connectTimeout: options.connectTimeoutMs ?? 5000,
    enableAutoPipelining: !options.forBullmq,
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 6), 5000),
  };
}

/** Connects and waits until Redis answers, or throws UNAVAILABLE naming the URL (without password). */
export async function connectRedis(url: string, options: RedisConnectOptions = {}): Promise<Redis> {
  const redis = new Redis(url, redisOptions(options));
  redis.on('error', () => {
    // Connection errors surface on the commands that fail; ioredis keeps reconnecting.
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (e) {
    redis.disconnect();
    throw unavailable('ERR_REDIS_UNAVAILABLE', `cannot reach Redis at ${redactRedisUrl(url)}: ${(e as Error).message}`, e);
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
  if (err?.name === 'ReplyError') {
    return new CountersignError('internal', 'ERR_REDIS_REPLY', `${what}: Redis replied with an error`, { reply: err.message }, { cause: e });
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
