// context.request_rate: how many requests a caller made within the policy's
// rate window, this one included. Counted in Redis so every broker replica sees
// the same figure; only policies whose conditions read it pay the round trip.
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from '../redis/connection.js';
import { fromRedisError, redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';

export interface RequestRateCounter {
  /** Records one request by `caller` at `now` and returns its requests within the last `windowMs`, this one included. */
  record(caller: string, now: number, windowMs: number): Promise<number>;
}

/** Past this many requests in one window the count stops growing (and the key stops growing with it). */
export const MAX_COUNTED_REQUESTS = 100_000;

/** A sliding window per caller: one sorted-set member per request, trimmed on every count. */
export class RedisRequestRate implements RequestRateCounter {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  async record(caller: string, now: number, windowMs: number): Promise<number> {
    const key = this.keys.requestRate(createHash('sha256').update(caller).digest('base64url').slice(0, 32));
    const replies = await redisCall('request rate', () =>
      this.redis
        .multi()
        .zremrangebyscore(key, '-inf', now - windowMs)
        .zadd(key, now, `${now}:${randomBytes(6).toString('base64url')}`)
        .zremrangebyrank(key, 0, -(MAX_COUNTED_REQUESTS + 1))
        .zcard(key)
        .pexpire(key, windowMs)
        .exec(),
    );
    const [error, count] = replies?.[3] ?? [new Error('no reply'), null];
    if (error) throw fromRedisError(error, 'request rate');
    return Number(count);
  }
}
