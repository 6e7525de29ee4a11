// The X.509-SVID validation table over real mTLS gRPC: every certificate the
// broker must refuse gets UNAUTHENTICATED with its stable code, an audit record
// with the reason, and a count in countersign_identity_refusals_total; the ones
// it must accept reach policy.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { RequestState } from '@countersign/proto';
import { CertificateAuthority, startTestBroker, svidCases, type SvidCaseContext, type TestBroker } from '@countersign/broker/testing';
import { auditEvents, errorCode, metricValue, rawCall, rejection } from './support/identity.js';

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
