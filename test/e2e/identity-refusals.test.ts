// The X.509-SVID validation table over real mTLS gRPC: every certificate the
// broker must refuse gets UNAUTHENTICATED with its stable code, an audit record
// with the reason, and a count in countersign_identity_refusals_total; the ones
// it must accept reach policy.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { RequestState } from '@countersign/proto';
import {
  CertificateAuthority,
  startTestBroker,
  svidCases,
  type SvidCaseContext,
  type TestBroker,
} from '@countersign/broker/testing';
import { auditEvents, capturingLogger, errorCode, metricValue, rawCall, rejection, until } from './support/identity.js';

describe('identity refusals over mTLS gRPC', () => {
  let t: TestBroker;
  let ctx: SvidCaseContext;

  before(async () => {
    const other = CertificateAuthority.createRoot('other.org');
    t = await startTestBroker({ federated: [other] });
    ctx = { ca: t.ca, other, now: Date.now() };
  });
  after(async () => t?.close());

  for (const c of svidCases.filter((x) => x.overTls)) {
    it(`${c.name} -> ${c.expect}`, async () => {
      const input = c.build(ctx);
      const refusedBefore = await metricValue(t, 'countersign_identity_refusals_total', { code: c.expect });
      const call = rawCall(
        t.address,
        t.ca.pem,
        { chainPem: input.chainPem, keyPem: input.keyPem },
        { operation: 'deploy', resource: 'staging/web' },
      );
      if (c.expect === 'ok') {
        const response = await call;
        assert.ok(
          [RequestState.REQUEST_STATE_APPROVED, RequestState.REQUEST_STATE_DENIED].includes(response.state),
          'reached policy',
        );
        return;
      }
      const e = await rejection(call);
      assert.equal(e.code, status.UNAUTHENTICATED, e.details);
      assert.equal(errorCode(e), c.expect, e.details);
      assert.match(e.details, /^x509svid: /);
      // Refusals are audited as summaries per interval; write this interval's now.
      await until(
        'the refusal is counted',
        async () =>
          (await metricValue(t, 'countersign_identity_refusals_total', { code: c.expect })) === refusedBefore + 1,
      );
      await t.broker.flushRefusals();
      const refused = (await auditEvents(t)).filter((ev) => ev.type === 'identity_refused' && ev.code === c.expect);
      assert.ok(refused.length > 0, 'the refusal is in the audit trail');
      assert.match(String(refused.at(-1)?.message), /^x509svid: /);
      assert.equal(await metricValue(t, 'countersign_identity_refusals_total', { code: c.expect }), refusedBefore + 1);
    });
  }
});

// Issue 14, finding 4 (audit): refused handshakes were audited one by one (up to
// 10 a second after a burst of 100), so a client with no identity at all could add
// ~0.9 M records a day. Now they are summed per code and source per interval.
describe('a flood of refused identities', () => {
  let t: TestBroker;
  let lines: Record<string, unknown>[];
  before(async () => {
    const captured = capturingLogger();
    lines = captured.lines;
    // An interval longer than the test: only the explicit flush writes summaries.
    t = await startTestBroker({
      identity:
        'identity:\n  svid: { cert_file: broker.pem, key_file: broker-key.pem }\n  bundles: [{ trust_domain: example.org, file: ca.pem }]\n  refusals: { interval: 1h }\n',
      overrides: { logger: captured.logger },
    });
  });
  after(async () => t?.close());

  it('is counted in full, but audited as one summary per code and source, however many there are', async () => {
    const stranger = CertificateAuthority.createRoot('evil.org').issueSvid('spiffe://evil.org/flood');
    const refusedRecords = async () => (await auditEvents(t)).filter((e) => e.type === 'identity_refused');
    const before = (await refusedRecords()).length;
    const flood = 180;
    for (let i = 0; i < flood; i += 20) {
      // Whole calls, so each handshake is finished on the broker's side too (a client may close first under TLS 1.3).
      await Promise.all(
        Array.from({ length: 20 }, () =>
          rejection(rawCall(t.address, t.ca.pem, stranger, { operation: 'deploy', resource: 'staging/web' })),
        ),
      );
    }
    await Promise.all(
      Array.from({ length: 20 }, () =>
        rejection(rawCall(t.address, t.ca.pem, undefined, { operation: 'deploy', resource: 'staging/web' })),
      ),
    );
    await until(
      'every refusal counted',
      async () => (await metricValue(t, 'countersign_identity_refusals_total')) >= flood + 20,
    );
    assert.equal((await refusedRecords()).length, before, 'nothing is written per refusal');

    assert.equal(await t.broker.flushRefusals(), 2);
    const summaries = (await refusedRecords()).slice(before);
    assert.deepEqual(
      summaries.map((e) => [e.code, e.peer, e.count]),
      [
        ['ERR_SVID_UNKNOWN_TRUST_DOMAIN', '127.0.0.1', flood],
        ['ERR_SVID_NO_CERTIFICATE', '127.0.0.1', 20],
      ],
    );
    for (const e of summaries) {
      assert.match(String(e.message), /^x509svid: /);
      assert.ok(Number(e.first_at) <= Number(e.last_at));
    }
    // The log names the first refusal of each code and source, once.
    const logged = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('refused identity:'));
    assert.deepEqual(logged.map((l) => l.code).sort(), ['ERR_SVID_NO_CERTIFICATE', 'ERR_SVID_UNKNOWN_TRUST_DOMAIN']);
  });
});
