// The X.509-SVID validation table over real mTLS gRPC: every certificate the
// broker must refuse gets UNAUTHENTICATED with its stable code, an audit record
// with the reason, and a count in countersign_identity_refusals_total; the ones
// it must accept reach policy.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { RequestState } from '@countersign/proto';
import { CertificateAuthority, startTestBroker, svidCases, type SvidCaseContext, type TestBroker } from '@countersign/broker/testing';
import { auditEvents, errorCode, metricValue, rawCall, rejection, until } from './support/identity.js';

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
      const call = rawCall(t.address, t.ca.pem, { chainPem: input.chainPem, keyPem: input.keyPem }, { operation: 'deploy', resource: 'staging/web' });
      if (c.expect === 'ok') {
        const response = await call;
        assert.ok([RequestState.REQUEST_STATE_APPROVED, RequestState.REQUEST_STATE_DENIED].includes(response.state), 'reached policy');
        return;
      }
      const e = await rejection(call);
      assert.equal(e.code, status.UNAUTHENTICATED, e.details);
      assert.equal(errorCode(e), c.expect, e.details);
      assert.match(e.details, /^x509svid: /);
      const refused = (await auditEvents(t)).filter((ev) => ev.type === 'identity_refused' && ev.code === c.expect);
      assert.ok(refused.length > 0, 'the refusal is in the audit trail');
      assert.match(String(refused.at(-1)?.message), /^x509svid: /);
      assert.equal(await metricValue(t, 'countersign_identity_refusals_total', { code: c.expect }), refusedBefore + 1);
    });
  }
});

describe('a flood of refused identities', () => {
  let t: TestBroker;
  before(async () => {
    t = await startTestBroker();
  });
  after(async () => t?.close());

  it('is counted in full, but audited and logged at a bounded rate, saying how many were held back', async () => {
    const stranger = CertificateAuthority.createRoot('evil.org').issueSvid('spiffe://evil.org/flood');
    const flood = 180;
    const started = Date.now();
    for (let i = 0; i < flood; i += 20) {
      // Whole calls, so each handshake is finished on the broker's side too (a client may close first under TLS 1.3).
      await Promise.all(Array.from({ length: 20 }, () => rejection(rawCall(t.address, t.ca.pem, stranger, { operation: 'deploy', resource: 'staging/web' }))));
    }
    const flooding = (Date.now() - started) / 1000;
    await until('every refusal counted', async () => (await metricValue(t, 'countersign_identity_refusals_total')) >= flood);
    const refusedRecords = async () => (await auditEvents(t)).filter((e) => e.type === 'identity_refused');
    // A burst of 100 is recorded at once, then 10 a second.
    await until('the burst recorded', async () => (await refusedRecords()).length >= 100);
    const duringFlood = (await refusedRecords()).length;
    assert.ok(duringFlood < flood, `${duringFlood} records for ${flood} refusals in ${flooding.toFixed(2)} s`);

    // Once the rate allows, the next refusal is recorded with the count of those held back,
    // so the trail still accounts for every refusal.
    await new Promise((r) => setTimeout(r, 250));
    await rejection(rawCall(t.address, t.ca.pem, stranger, { operation: 'deploy', resource: 'staging/web' }));
    const accounted = (records: Record<string, unknown>[]) => records.length + records.reduce((n, e) => n + Number(e.suppressed ?? 0), 0);
    await until('recorded + held back = every refusal', async () => accounted(await refusedRecords()) === flood + 1);
    const all = await refusedRecords();
    assert.ok(all.some((e) => Number(e.suppressed) > 0), 'a record says how many were not recorded before it');
    const elapsedS = (Date.now() - started) / 1000;
    assert.ok(all.length <= 100 + Math.ceil(elapsedS * 10) + 1, `${all.length} records in ${elapsedS.toFixed(2)} s exceed the rate`);
  });
});
