// SVID and bundle files change under a running broker (cert-manager,
// trust-manager, csi-driver-spiffe): it picks them up without a restart and
// without dropping live connections; a broken new file keeps the old one and is
// reported in the log and in countersign_reload_failures_total.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { RequestState } from '@countersign/proto';
import { CountersignClient } from '@countersign/agent';
import { CertificateAuthority, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import {
  capturingLogger,
  errorCode,
  metricValue,
  openH2,
  rawCall,
  rejection,
  servedSerial,
  serialOf,
  until,
} from './support/identity.js';

/** Writes like Kubernetes' atomic writer: a new file renamed over the old one. */
async function replaceFile(path: string, content: string): Promise<void> {
  await writeFile(`${path}.tmp`, content);
  await rename(`${path}.tmp`, path);
}

const spiffeJson = (cas: CertificateAuthority[], sequence: number) =>
  JSON.stringify({
    spiffe_sequence: sequence,
    spiffe_refresh_hint: 60,
    keys: cas.map((ca) => ({
      ...(new X509Certificate(ca.certificate.der).publicKey.export({ format: 'jwk' }) as object),
      use: 'x509-svid',
      x5c: [ca.certificate.der.toString('base64')],
    })),
  });

describe('hot reload of the broker SVID and PEM bundles', () => {
  let t: TestBroker;
  const log = capturingLogger();

  before(async () => {
    t = await startTestBroker({
      overrides: { logger: log.logger },
      // A short reload interval for the test: the default is 5 s.
      identity: `identity:
  svid:
    cert_file: broker.pem
    key_file: broker-key.pem
  bundles:
    - trust_domain: example.org
      file: ca.pem
  reload_interval: 100ms
`,
    });
  });
  after(async () => t?.close());

  it('serves a renewed SVID on new connections and keeps the live ones', async () => {
    const deployer = t.svid('ci/deployer');
    const live = await openH2(t.broker.grpcPort, deployer);
    const client = new CountersignClient({
      address: t.address,
      certChainPem: deployer.chainPem,
      keyPem: deployer.keyPem,
      caPem: t.ca.pem,
    });
    try {
      assert.equal((await client.requestOperation({ operation: 'deploy', resource: 'staging/web' })).state, 'APPROVED');
      const oldSerial = serialOf(t.brokerSvid.der);
      assert.equal(live.socket.getPeerX509Certificate()?.serialNumber.toLowerCase(), oldSerial);
      await live.ping();

      const renewed = t.svid('countersign/broker');
      await replaceFile(join(t.dir, 'broker-key.pem'), renewed.keyPem);
      await replaceFile(join(t.dir, 'broker.pem'), renewed.chainPem);
      await until(
        'the renewed SVID on new connections',
        async () => (await servedSerial(t.broker.grpcPort, deployer)) === serialOf(renewed.der),
      );
      assert.equal(t.broker.identity.svid.serial, serialOf(renewed.der));

      await live.ping(); // the connection opened before the renewal is still up, with the old certificate
      assert.equal(live.session.closed, false);
      assert.equal((await client.requestOperation({ operation: 'deploy', resource: 'staging/web' })).state, 'APPROVED');
      assert.ok(log.lines.some((l) => l.msg === 'broker SVID rotated' && l.serial === serialOf(renewed.der)));
    } finally {
      live.session.destroy();
      client.close();
    }
  });

  it('keeps the SVID in force when the new files are broken, and reports it', async () => {
    const inForce = t.broker.identity.svid.serial;
    const failuresBefore = await metricValue(t, 'countersign_reload_failures_total', { kind: 'svid' });
    const stranger = t.svid('countersign/broker');
    // A certificate whose key is not the one in the key file.
    await replaceFile(join(t.dir, 'broker.pem'), stranger.chainPem);
    await until(
      'the reload failure to be counted',
      async () => (await metricValue(t, 'countersign_reload_failures_total', { kind: 'svid' })) === failuresBefore + 1,
    );
    assert.equal(t.broker.identity.svid.serial, inForce);
    assert.equal(await servedSerial(t.broker.grpcPort, t.svid('ci/deployer')), inForce);
    const line = log.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('kept the previous svid'));
    assert.match(String(line?.msg), /the private key does not belong to the leaf certificate/);

    // A file that is not even PEM, and a file that disappears: still the same SVID.
    await replaceFile(join(t.dir, 'broker.pem'), 'not a certificate');
    await until(
      'the second failure',
      async () => (await metricValue(t, 'countersign_reload_failures_total', { kind: 'svid' })) === failuresBefore + 2,
    );
    assert.equal(t.broker.identity.svid.serial, inForce);
    // Repair: the matching pair again.
    await replaceFile(join(t.dir, 'broker-key.pem'), stranger.keyPem);
    await replaceFile(join(t.dir, 'broker.pem'), stranger.chainPem);
    await until('the repaired SVID', () => t.broker.identity.svid.serial === serialOf(stranger.der));
  });

  it('refuses a new SVID with another SPIFFE ID', async () => {
    const failuresBefore = await metricValue(t, 'countersign_reload_failures_total', { kind: 'svid' });
    const impostor = t.svid('someone/else');
    await replaceFile(join(t.dir, 'broker-key.pem'), impostor.keyPem);
    await replaceFile(join(t.dir, 'broker.pem'), impostor.chainPem);
    await until(
      'the refusal',
      async () => (await metricValue(t, 'countersign_reload_failures_total', { kind: 'svid' })) === failuresBefore + 1,
    );
    assert.equal(t.broker.identity.svid.spiffeId, 'spiffe://example.org/countersign/broker');
  });

  it('trusts a CA added to the bundle file, and stops trusting a removed one, on live connections too', async () => {
    const next = CertificateAuthority.createRoot('example.org');
    const fromNext = next.issueSvid('spiffe://example.org/ci/deployer');
    const fromOld = t.svid('ci/deployer');
    let e = await rejection(rawCall(t.address, t.ca.pem, fromNext, { operation: 'deploy', resource: 'staging/web' }));
    assert.equal(errorCode(e), 'ERR_SVID_UNTRUSTED');

    const generation = t.broker.identity.bundles.generation;
    await replaceFile(join(t.dir, 'ca.pem'), t.ca.pem + next.pem);
    await until('the new bundle', () => t.broker.identity.bundles.generation > generation);
    assert.equal(
      (await rawCall(t.address, t.ca.pem, fromNext, { operation: 'deploy', resource: 'staging/web' })).state,
      RequestState.REQUEST_STATE_APPROVED,
    );

    // A connection from the old CA, open while the old CA is removed, is re-validated on its next call.
    const client = new CountersignClient({
      address: t.address,
      certChainPem: fromOld.chainPem,
      keyPem: fromOld.keyPem,
      caPem: t.ca.pem,
    });
    try {
      assert.equal((await client.requestOperation({ operation: 'deploy', resource: 'staging/web' })).state, 'APPROVED');
      const before = t.broker.identity.bundles.generation;
      await replaceFile(join(t.dir, 'ca.pem'), next.pem);
      await until('the bundle without the old CA', () => t.broker.identity.bundles.generation > before);
      await assert.rejects(client.requestOperation({ operation: 'deploy', resource: 'staging/web' }), {
        code: 'ERR_SVID_UNTRUSTED',
        grpcStatus: status.UNAUTHENTICATED,
      });
    } finally {
      client.close();
    }
    await replaceFile(join(t.dir, 'ca.pem'), t.ca.pem + next.pem);
    await until(
      'both CAs again',
      () => t.broker.identity.bundles.current.getBundle('example.org')?.x509Authorities.length === 2,
    );
    e = await rejection(
      rawCall(
        t.address,
        t.ca.pem,
        CertificateAuthority.createRoot('example.org').issueSvid('spiffe://example.org/ci/x'),
        { operation: 'deploy', resource: 'staging/web' },
      ),
    );
    assert.equal(errorCode(e), 'ERR_SVID_UNTRUSTED');
  });

  it('keeps the bundle in force when the new bundle file is broken', async () => {
    const failuresBefore = await metricValue(t, 'countersign_reload_failures_total', { kind: 'bundle' });
    const generation = t.broker.identity.bundles.generation;
    await replaceFile(
      join(t.dir, 'ca.pem'),
      '-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n',
    );
    await until(
      'the bundle failure',
      async () =>
        (await metricValue(t, 'countersign_reload_failures_total', { kind: 'bundle' })) === failuresBefore + 1,
    );
    assert.equal(t.broker.identity.bundles.generation, generation);
    assert.equal(
      (await rawCall(t.address, t.ca.pem, t.svid('ci/deployer'), { operation: 'deploy', resource: 'staging/web' }))
        .state,
      RequestState.REQUEST_STATE_APPROVED,
    );
  });
});

describe('hot reload of a SPIFFE bundle document', () => {
  let t: TestBroker;
  const other = CertificateAuthority.createRoot('other.org');
  const otherNext = CertificateAuthority.createRoot('other.org');
  const partner = (ca: CertificateAuthority) => ca.issueSvid('spiffe://other.org/ci/partner');
  const call = (ca: CertificateAuthority) =>
    rawCall(t.address, t.ca.pem, partner(ca), { operation: 'deploy', resource: 'staging/web' });

  before(async () => {
    t = await startTestBroker({
      policy: `version: 1
rules:
  - name: partners
    match: { trust_domain: other.org, operation: deploy, resource: "staging/*" }
    decision: allow
`,
      files: { 'other.json': spiffeJson([other], 5) },
      identity: `identity:
  svid:
    cert_file: broker.pem
    key_file: broker-key.pem
  bundles:
    - trust_domain: example.org
      file: ca.pem
    - trust_domain: other.org
      file: other.json
      format: spiffe
  reload_interval: 100ms
`,
    });
  });
  after(async () => t?.close());

  it('trusts the federated trust domain from its SPIFFE bundle, and policy sees the trust domain', async () => {
    const response = await call(other);
    assert.equal(response.state, RequestState.REQUEST_STATE_APPROVED);
    assert.equal(response.rule, 'partners');
    const bundle = t.broker.identity.bundles.current.getBundle('other.org');
    assert.equal(bundle?.sequence, 5n);
    assert.equal(bundle?.refreshHintSeconds, 60);
  });

  it('follows a key rotation published with a higher spiffe_sequence', async () => {
    await replaceFile(join(t.dir, 'other.json'), spiffeJson([otherNext], 6));
    await until('sequence 6', () => t.broker.identity.bundles.current.getBundle('other.org')?.sequence === 6n);
    assert.equal((await call(otherNext)).state, RequestState.REQUEST_STATE_APPROVED);
    assert.equal(errorCode(await rejection(call(other))), 'ERR_SVID_UNTRUSTED');
  });

  it('does not go back to an older spiffe_sequence, and reports it', async () => {
    const failuresBefore = await metricValue(t, 'countersign_reload_failures_total', { kind: 'bundle' });
    await replaceFile(join(t.dir, 'other.json'), spiffeJson([other], 4));
    await until(
      'the rollback refusal',
      async () =>
        (await metricValue(t, 'countersign_reload_failures_total', { kind: 'bundle' })) === failuresBefore + 1,
    );
    assert.equal(t.broker.identity.bundles.current.getBundle('other.org')?.sequence, 6n);
    assert.equal(errorCode(await rejection(call(other))), 'ERR_SVID_UNTRUSTED');
  });

  it('keeps the bundle when the new document repeats a member', async () => {
    const failuresBefore = await metricValue(t, 'countersign_reload_failures_total', { kind: 'bundle' });
    const doc = spiffeJson([otherNext], 7);
    await replaceFile(join(t.dir, 'other.json'), doc.replace('"keys":', '"keys": [], "keys":'));
    await until(
      'the duplicate-member refusal',
      async () =>
        (await metricValue(t, 'countersign_reload_failures_total', { kind: 'bundle' })) === failuresBefore + 1,
    );
    assert.equal((await call(otherNext)).state, RequestState.REQUEST_STATE_APPROVED);
  });
});
