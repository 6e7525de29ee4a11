// How Redis's replies become Countersign errors (redis/connection.ts, fromRedisError): what a
// retry can cure is UNAVAILABLE, a reply that says our own code is wrong is internal.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CountersignError } from '../src/errors.js';
import { redisCall } from '../src/redis/connection.js';
import { testRedis, type TestRedis } from './support/redis.js';

describe('Redis reply errors', () => {
  let t: TestRedis;
  before(async () => {
    t = await testRedis('redis-errors');
  });
  after(async () => {
    await t.cleanup();
  });

  // Found by test/e2e/redis-cluster.test.ts: during a slot migration, BullMQ's EVALSHA was
  // redirected (ASK) to the importing node, which did not have the script, and ioredis does
  // not fall back to EVAL after a redirect. NOSCRIPT then reached the caller as an internal
  // error; a script cache miss is cured by retrying (the next EVALSHA goes where the
  // script is, or ioredis's own EVAL fallback runs), so it is UNAVAILABLE.
  it('NOSCRIPT (a script cache miss) is UNAVAILABLE, retryable', async () => {
    const error = await redisCall('enqueue jobs', () => t.redis.evalsha('0'.repeat(40), 0)).then(
      () => assert.fail('EVALSHA of an unknown script succeeded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof CountersignError);
    assert.equal(error.kind, 'unavailable');
    assert.equal(error.code, 'ERR_REDIS_UNAVAILABLE');
    assert.match(error.message, /^enqueue jobs: Redis is unavailable \(NOSCRIPT\)/);
  });

  it('a script error is internal (a bug, not a reason to retry)', async () => {
    const error = await redisCall('bad script', () => t.redis.eval("return redis.call('NOSUCHCOMMAND')", 0)).then(
      () => assert.fail('the script succeeded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof CountersignError);
    assert.equal(error.kind, 'internal');
    assert.equal(error.code, 'ERR_REDIS_REPLY');
  });

  it('a WRONGTYPE reply is internal', async () => {
    await t.redis.set(`${t.prefix}s`, 'x');
    const error = await redisCall('hash read', () => t.redis.hget(`${t.prefix}s`, 'f')).then(
      () => assert.fail('HGET of a string succeeded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof CountersignError);
    assert.equal(error.code, 'ERR_REDIS_REPLY');
  });
});
