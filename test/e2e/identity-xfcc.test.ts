// Behind a TLS-terminating proxy: the caller's certificate arrives in
// x-forwarded-client-cert, and is believed only on a configured proxy's own
// connection, after the same validation as a direct certificate.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { RequestState, certificateThumbprint } from '@countersign/proto';
import { verifyCredential } from '@countersign/agent';
import {
  CertificateAuthority,
  nameConstraints,
  startTestBroker,
  type IssuedSvid,
  type TestBroker,
} from '@countersign/broker/testing';
import type { JSONWebKeySet } from 'jose';
import { auditEvents, errorCode, rawCall, rejection } from './support/identity.js';

const PROXY_ID = 'spiffe://example.org/ingress/envoy';

/** What Envoy sends with forward_client_cert_details: SANITIZE_SET and cert, chain, uri details. */
function xfcc(svid: IssuedSvid, extra = ''): string {
  const hash = createHash('sha256').update(svid.der).digest('hex');
  return `By=${PROXY_ID};Hash=${hash};Cert="${encodeURIComponent(svid.pem)}";Chain="${encodeURIComponent(svid.chainPem)}";URI=${svid.spiffeId}${extra}`;
}

describe('x-forwarded-client-cert from a configured proxy', () => {
  let t: TestBroker;
  let proxy: IssuedSvid;
  let jwks: JSONWebKeySet;
  const call = (client: IssuedSvid, headers: Record<string, string>) =>
    rawCall(t.address, t.ca.pem, client, { operation: 'deploy', resource: 'staging/web' }, headers);

  before(async () => {
    t = await startTestBroker({
      extraConfig: '',
      identity: `identity:
  svid:
    cert_file: broker.pem
    key_file: broker-key.pem
  bundles:
    - trust_domain: example.org
      file: ca.pem
  xfcc:
    enabled: true
    proxy_ids: [${PROXY_ID}]
`,
    });
    proxy = t.svid('ingress/envoy');
    jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
  });
  after(async () => t?.close());

  it('attributes the call to the forwarded certificate, and binds the credential to it', async () => {
    const caller = t.ca.createIntermediate().issueSvid('spiffe://example.org/ci/deployer');
    const response = await call(proxy, { 'x-forwarded-client-cert': xfcc(caller) });
    assert.equal(response.state, RequestState.REQUEST_STATE_APPROVED);
    const verified = await verifyCredential(response.credential?.token as string, {
      jwks,
      audience: 'https://deploy.example.org',
    });
    assert.equal(verified.claims.sub, 'spiffe://example.org/ci/deployer');
    assert.equal(verified.claims.cnf['x5t#S256'], certificateThumbprint(caller.der));
  });

  it('takes a long forwarded chain (RSA, two intermediates, many DNS SANs: a header over 12 KiB)', async () => {
    const dns = Array.from({ length: 120 }, (_, i) => `replica-${i}.deployer.example.org`);
    const caller = t.ca
      .createIntermediate({ keyType: 'rsa' })
      .createIntermediate({ keyType: 'rsa' })
      .issueSvid('spiffe://example.org/ci/deployer', { keyType: 'rsa', dns });
    const header = xfcc(caller);
    assert.ok(header.length > 12 * 1024, `a header of ${header.length} bytes`);
    const response = await call(proxy, { 'x-forwarded-client-cert': header });
    assert.equal(response.state, RequestState.REQUEST_STATE_APPROVED);
  });

  it('ignores the header from anyone who is not a configured proxy', async () => {
    const caller = t.svid('ci/deployer');
    const impostor = t.svid('ci/impostor');
    const response = await call(impostor, { 'x-forwarded-client-cert': xfcc(caller) });
    // The impostor is judged as itself: policy allows ci/*, and the credential is the impostor's.
    const verified = await verifyCredential(response.credential?.token as string, {
      jwks,
      audience: 'https://deploy.example.org',
    });
    assert.equal(verified.claims.sub, 'spiffe://example.org/ci/impostor');
  });

  const refusals: [string, () => Record<string, string>, string][] = [
    ['no header', () => ({}), 'ERR_XFCC_MISSING'],
    [
      'a forwarded certificate from an unknown CA',
      () => ({
        'x-forwarded-client-cert': xfcc(
          CertificateAuthority.createRoot('example.org').issueSvid('spiffe://example.org/ci/deployer'),
        ),
      }),
      'ERR_SVID_UNTRUSTED',
    ],
    [
      'an expired forwarded certificate',
      () => ({
        'x-forwarded-client-cert': xfcc(
          t.svid('ci/deployer', { notBefore: Date.now() - 7200_000, notAfter: Date.now() - 3600_000 }),
        ),
      }),
      'ERR_SVID_EXPIRED',
    ],
    [
      'two elements (an appending proxy)',
      () => ({ 'x-forwarded-client-cert': `${xfcc(t.svid('ci/a'))},${xfcc(t.svid('ci/b'))}` }),
      'ERR_XFCC_MULTIPLE',
    ],
    [
      'a Hash that does not match',
      () => ({
        'x-forwarded-client-cert': xfcc(t.svid('ci/deployer')).replace(/Hash=[0-9a-f]+/, `Hash=${'0'.repeat(64)}`),
      }),
      'ERR_XFCC_INCONSISTENT',
    ],
    [
      "a URI that is not the certificate's",
      () => ({
        'x-forwarded-client-cert': xfcc(t.svid('ci/deployer')).replace(/URI=.*$/, 'URI=spiffe://example.org/admin'),
      }),
      'ERR_XFCC_INCONSISTENT',
    ],
    [
      'no certificate',
      () => ({ 'x-forwarded-client-cert': `By=${PROXY_ID};URI=spiffe://example.org/ci/deployer` }),
      'ERR_XFCC_NO_CERTIFICATE',
    ],
    ['an unterminated quote', () => ({ 'x-forwarded-client-cert': 'Cert="abc' }), 'ERR_XFCC_MALFORMED'],
    [
      'a forwarded chain whose intermediate may only issue for other.org (name constraints)',
      () => ({
        'x-forwarded-client-cert': xfcc(
          t.ca
            .createIntermediate({ extraExtensions: [nameConstraints({ permitted: [{ uri: 'other.org' }] })] })
            .issueSvid('spiffe://example.org/ci/deployer'),
        ),
      }),
      'ERR_SVID_NAME_NOT_PERMITTED',
    ],
    [
      'a forwarded certificate without a SPIFFE ID',
      () => ({
        'x-forwarded-client-cert': xfcc(t.svid('ci/deployer', { uris: [], dns: ['deployer'] })).replace(/;URI=.*$/, ''),
      }),
      'ERR_SVID_NO_URI_SAN',
    ],
  ];
  for (const [name, headers, code] of refusals) {
    it(`refuses ${name} with UNAUTHENTICATED ${code}, audited with the proxy`, async () => {
      const e = await rejection(call(proxy, headers()));
      assert.equal(e.code, status.UNAUTHENTICATED);
      assert.equal(errorCode(e), code, e.details);
      // Refusals are audited as summaries per code, source and proxy; write this interval's now.
      await t.broker.flushRefusals();
      const audited = (await auditEvents(t)).filter(
        (ev) => ev.type === 'identity_refused' && ev.code === code && ev.proxy === PROXY_ID,
      );
      assert.ok(audited.length > 0);
    });
  }
});

describe('x-forwarded-client-cert when xfcc is off (the default)', () => {
  let t: TestBroker;
  before(async () => {
    t = await startTestBroker();
  });
  after(async () => t?.close());

  it('never reads the header, even from a proxy', async () => {
    const proxy = t.svid('ingress/envoy');
    const caller = t.svid('ci/deployer');
    // The proxy is judged as itself: ingress/envoy matches no rule, so it is denied by name.
    const response = await rawCall(
      t.address,
      t.ca.pem,
      proxy,
      { operation: 'deploy', resource: 'staging/web' },
      { 'x-forwarded-client-cert': xfcc(caller) },
    );
    assert.equal(response.state, RequestState.REQUEST_STATE_DENIED);
    assert.match(response.message, /for spiffe:\/\/example\.org\/ingress\/envoy/);
  });
});
