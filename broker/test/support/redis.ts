// A real Redis for tests: REDIS_URL or 127.0.0.1:6379, with a key prefix of its
// own per test, and cleanup that deletes only that prefix (never FLUSHALL).
import { randomBytes } from 'node:crypto';
import { connectRedis, type Redis } from '../../src/redis/connection.js';

export const TEST_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface TestRedis {
  redis: Redis;
  prefix: string;
  url: string;
  /** Deletes every key under the prefix and disconnects. */
  cleanup(): Promise<void>;
}

export const uniquePrefix = (label = 't'): string => `cs-test:${label}:${randomBytes(6).toString('hex')}:`;

export async function deleteByPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

export async function testRedis(label?: string, url: string = TEST_REDIS_URL): Promise<TestRedis> {
  const redis = await connectRedis(url, { connectionName: 'countersign-test' });
  const prefix = uniquePrefix(label);
  return {
    redis,
    prefix,
    url,
    async cleanup() {
      await deleteByPrefix(redis, prefix);
      redis.disconnect();
    },
  };
}
