// Refused identities are summarised per code and source per interval, so the
// audit trail grows by a bounded number of records whatever an anonymous client
// does.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../src/clock.js';
import { CountersignError, type ErrorCode } from '../src/errors.js';
import { OTHER_SOURCES, RefusalAggregator, sourceOf } from '../src/identity/refusal-recorder.js';

const refusal = (code: ErrorCode) => new CountersignError('unauthenticated', code, `x509svid: ${code}`);

describe('RefusalAggregator', () => {
  it('sums refusals per code and source (the port does not count), one summary each per interval', () => {
    const clock = new ManualClock(1_000);
    const agg = new RefusalAggregator(clock, { intervalMs: 60_000, maxSources: 10 });
    const firsts: boolean[] = [];
    for (let i = 0; i < 1000; i++) {
      clock.advance(1);
      firsts.push(agg.note(refusal('ERR_SVID_UNTRUSTED'), `203.0.113.7:${40_000 + i}`));
    }
    firsts.push(agg.note(refusal('ERR_SVID_EXPIRED'), '203.0.113.7:1'));
    firsts.push(agg.note(refusal('ERR_SVID_UNTRUSTED'), '[2001:db8::1]:443'));
    firsts.push(agg.note(refusal('ERR_XFCC_MISSING'), '10.0.0.9:5', { proxy: 'spiffe://example.org/envoy' }));
    assert.equal(firsts.filter(Boolean).length, 4, 'one log line per (code, source)');
    assert.deepEqual(agg.drain(), [
      {
        code: 'ERR_SVID_UNTRUSTED',
        source: '203.0.113.7',
        count: 1000,
        message: 'x509svid: ERR_SVID_UNTRUSTED',
        firstAt: 1_001,
        lastAt: 2_000,
      },
      {
        code: 'ERR_SVID_EXPIRED',
        source: '203.0.113.7',
        count: 1,
        message: 'x509svid: ERR_SVID_EXPIRED',
        firstAt: 2_000,
        lastAt: 2_000,
      },
      {
        code: 'ERR_SVID_UNTRUSTED',
        source: '2001:db8::1',
        count: 1,
        message: 'x509svid: ERR_SVID_UNTRUSTED',
        firstAt: 2_000,
        lastAt: 2_000,
      },
      {
        code: 'ERR_XFCC_MISSING',
        source: '10.0.0.9',
        proxy: 'spiffe://example.org/envoy',
        count: 1,
        message: 'x509svid: ERR_XFCC_MISSING',
        firstAt: 2_000,
        lastAt: 2_000,
      },
    ]);
    assert.deepEqual(agg.drain(), [], 'a new interval starts empty');
  });

  it('bounds the summaries of an interval: sources beyond max_sources are summed per code', () => {
    const clock = new ManualClock(0);
    const agg = new RefusalAggregator(clock, { intervalMs: 60_000, maxSources: 3 });
    // 10,000 refusals from 5,000 addresses, with two codes: a botnet with no identity.
    for (let i = 0; i < 10_000; i++)
      agg.note(
        refusal(i % 2 === 0 ? 'ERR_SVID_UNTRUSTED' : 'ERR_SVID_NO_CERTIFICATE'),
        `198.51.${(i >> 8) % 20}.${i % 250}:1`,
      );
    const out = agg.drain();
    assert.equal(out.length, 3 + 2, 'max_sources summaries plus one per code');
    assert.equal(
      out.reduce((n, r) => n + r.count, 0),
      10_000,
      'every refusal is accounted for',
    );
    const others = out.filter((r) => r.source === OTHER_SOURCES);
    assert.deepEqual(others.map((r) => r.code).sort(), ['ERR_SVID_NO_CERTIFICATE', 'ERR_SVID_UNTRUSTED']);
    assert.ok(others.every((r) => (r.sources ?? 0) > 100));
  });

  it('reads the source out of IPv4, IPv6 and bracketed peers', () => {
    assert.equal(sourceOf('192.0.2.1:8443'), '192.0.2.1');
    assert.equal(sourceOf('::ffff:127.0.0.1:53211'), '::ffff:127.0.0.1');
    assert.equal(sourceOf('[::1]:53211'), '::1');
    assert.equal(sourceOf('unix-socket'), 'unix-socket');
  });
});
