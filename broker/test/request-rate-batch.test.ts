// The per-workload rate limit under concurrency (issue 20): requests of one workload that
// arrive while its previous Redis call is in flight share the next script call, and the
// bucket still grants exactly what it holds, first come first served.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../src/clock.js';
import { Keys } from '../src/redis/keys.js';
import { RequestRateLimiter } from '../src/requests/limits.js';
import { registerScripts, type ScriptRunner } from '../src/requests/scripts.js';
import { testRedis, type TestRedis } from './support/index.js';

describe('rate limit batching', () => {
  let r: TestRedis;
  let calls: number;
  let runner: ScriptRunner;
  before(async () => {
    r = await testRedis('ratelimit');
    const scripts = registerScripts(r.redis);
    runner = (name, keys, args) => {
      if (name === 'ratelimit') calls++;
      return scripts(name, keys, args);
    };
  });
  after(async () => r?.cleanup());

  const outcomes = (results: PromiseSettledResult<void>[]) =>
    results.map((x) => (x.status === 'fulfilled' ? 'ok' : (x.reason as { code: string }).code));

  it('takes tokens for concurrent requests in fewer script calls, granting exactly the burst in order', async () => {
    calls = 0;
    const limiter = new RequestRateLimiter(new Keys(r.prefix), runner, new ManualClock(1_700_000_000_000), {
      perSecond: 0.01,
      burst: 40,
    });
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () => limiter.take('spiffe://example.org/ci/a')),
    );
    assert.deepEqual(outcomes(results), [...Array(40).fill('ok'), ...Array(10).fill('ERR_RATE_LIMITED')]);
    assert.ok(calls <= 3, `${calls} script calls for 50 concurrent requests of one workload`);
    const refused = (results[49] as PromiseRejectedResult).reason as { details: { retryAfterMs: number } };
    assert.ok(
      refused.details.retryAfterMs > 0 && refused.details.retryAfterMs <= 100_000,
      `retry after ${refused.details.retryAfterMs} ms`,
    );
    // Later, one at a time: still refused until the bucket refills.
    await assert.rejects(limiter.take('spiffe://example.org/ci/a'), { code: 'ERR_RATE_LIMITED' });
  });

  it('takes one script call for a burst made in one turn of the event loop, the first request included', async () => {
    calls = 0;
    const limiter = new RequestRateLimiter(new Keys(r.prefix), runner, new ManualClock(1_700_000_000_000), {
      perSecond: 1000,
      burst: 1000,
    });
    await Promise.all(Array.from({ length: 20 }, () => limiter.take('spiffe://example.org/ci/burst')));
    assert.equal(calls, 1);
  });

  it('keeps workloads apart, and a refused batch leaves no one waiting', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const limiter = new RequestRateLimiter(new Keys(r.prefix), runner, clock, { perSecond: 1, burst: 3 });
    const [a, b] = await Promise.all([
      Promise.allSettled(Array.from({ length: 5 }, () => limiter.take('spiffe://example.org/ci/b'))),
      Promise.allSettled(Array.from({ length: 2 }, () => limiter.take('spiffe://example.org/ci/c'))),
    ]);
    assert.deepEqual(outcomes(a), ['ok', 'ok', 'ok', 'ERR_RATE_LIMITED', 'ERR_RATE_LIMITED']);
    assert.deepEqual(outcomes(b), ['ok', 'ok']);
    clock.advance(1000);
    await limiter.take('spiffe://example.org/ci/b');
    await assert.rejects(limiter.take('spiffe://example.org/ci/b'), { code: 'ERR_RATE_LIMITED' });
  });
});
