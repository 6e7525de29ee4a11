// context.request_rate's counter against a real Redis: a sliding window per
// caller, under the test's own key prefix.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisRequestRate } from '../src/policy/request-rate.js';
import { Keys } from '../src/redis/keys.js';
import { testRedis, type TestRedis } from './support/redis.js';

describe('RedisRequestRate', () => {
  let r: TestRedis;
  before(async () => {
    r = await testRedis('rate');
  });
  after(async () => r?.cleanup());

  it('counts each caller within the window, this request included, and forgets what is older', async () => {
    const counter = new RedisRequestRate(r.redis, new Keys(r.prefix));
    const t0 = Date.parse('2026-03-02T10:00:00Z');
    const minute = 60_000;
    const seen = [];
    for (const at of [t0, t0 + minute, t0 + 2 * minute])
      seen.push(await counter.record('spiffe://example.org/ci/a', at, 10 * minute));
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal(
      await counter.record('spiffe://example.org/ci/b', t0 + 2 * minute, 10 * minute),
      1,
      'another caller has its own count',
    );
    // Ten minutes after the first request it has left the window; the other two have not.
    assert.equal(await counter.record('spiffe://example.org/ci/a', t0 + 10 * minute, 10 * minute), 3);
    assert.equal(await counter.record('spiffe://example.org/ci/a', t0 + 30 * minute, 10 * minute), 1);
    const keys = await r.redis.keys(`${r.prefix}rate:*`);
    assert.equal(keys.length, 2);
    for (const key of keys) {
      const ttl = await r.redis.pttl(key);
      assert.ok(ttl > 0 && ttl <= 10 * minute, `expires with the window (${ttl} ms)`);
    }
  });
});
