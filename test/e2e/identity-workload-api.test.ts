// The broker and a requester both taking their SVIDs from a Workload API that
// rotates them on cue, goes away and comes back, and sends something broken.
// (test/e2e/spire.test.ts does the same against a real SPIRE.)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CountersignClient, WorkloadApiIdentity, verifyCredential } from '@countersign/agent';
import { certificateThumbprint } from '@countersign/proto';
import {
  CertificateAuthority,
  startTestBroker,
  TestWorkloadApi,
  x509Response,
  type IssuedSvid,
  type TestBroker,
} from '@countersign/broker/testing';
import type { JSONWebKeySet } from 'jose';
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

const BROKER_ID = 'spiffe://example.org/countersign/broker';
const WORKLOAD_ID = 'spiffe://example.org/ci/deployer';

describe('broker SVID from the Workload API', () => {
  const ca = CertificateAuthority.createRoot('example.org');
  const partnerCa = CertificateAuthority.createRoot('partner.org');
  let brokerApi: TestWorkloadApi;
  let workloadApi: TestWorkloadApi;
  let t: TestBroker;
  let brokerSvid: IssuedSvid;
  const log = capturingLogger();

  const publishBroker = (svid: IssuedSvid, federated: CertificateAuthority[] = [partnerCa]) =>
    brokerApi.publish(x509Response([{ svid, bundle: [ca] }], federated));

  before(async () => {
    brokerApi = await TestWorkloadApi.start();
    workloadApi = await TestWorkloadApi.start();
    brokerSvid = ca.issueSvid(BROKER_ID);
    publishBroker(brokerSvid);
    workloadApi.publish(x509Response([{ svid: ca.issueSvid(WORKLOAD_ID), bundle: [ca] }]));
    t = await startTestBroker({
      policy: `version: 1
rules:
  - name: deploys
    match: { workload: ["spiffe://example.org/ci/*", "spiffe://partner.org/ci/*"], operation: deploy, resource: "staging/*" }
    decision: allow
    ttl: 10m
`,
      // No bundle files at all: the trust bundles come from the Workload API too.
      identity: `identity:
  svid:
    workload_api:
      socket: ${brokerApi.address}
      timeout: 20s
`,
      overrides: { logger: log.logger, workloadApiBackoff: { initialMs: 20, maxMs: 300 } },
    });
  });
  after(async () => {
    await t?.close();
    await brokerApi?.close();
    await workloadApi?.close();
  });

  it('serves the SVID it was handed, and validates callers against the bundles that came with it', async () => {
    assert.equal(t.broker.spiffeId, BROKER_ID);
    assert.equal(await servedSerial(t.broker.grpcPort, ca.issueSvid(WORKLOAD_ID)), serialOf(brokerSvid.der));
    const partner = partnerCa.issueSvid('spiffe://partner.org/ci/deployer');
    assert.equal(
      (await rawCall(t.address, ca.pem, partner, { operation: 'deploy', resource: 'staging/web' })).rule,
      'deploys',
      'a federated bundle from the Workload API is trusted',
    );
    const stranger = CertificateAuthority.createRoot('example.org').issueSvid(WORKLOAD_ID);
    assert.equal(
      errorCode(
        await rejection(rawCall(t.address, ca.pem, stranger, { operation: 'deploy', resource: 'staging/web' })),
      ),
      'ERR_SVID_UNTRUSTED',
    );
  });

  it('a requester on the Workload API gets a credential bound to its current SVID, across rotations on both sides', async () => {
    const identity = await WorkloadApiIdentity.connect({ address: workloadApi.address, timeoutMs: 20_000 });
    const client = new CountersignClient({
      address: t.address,
      identitySource: identity,
      ownsIdentitySource: true,
      serverId: BROKER_ID,
    });
    const live = await openH2(t.broker.grpcPort, {
      chainPem: identity.svid.certChainPem,
      keyPem: identity.svid.keyPem,
    });
    try {
      const jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
      const check = async (expected: IssuedSvid | { der: Buffer }) => {
        const result = await client.requestOperation({
          operation: 'deploy',
          resource: 'staging/web',
          parameters: { v: 1 },
        });
        assert.equal(result.state, 'APPROVED');
        const verified = await verifyCredential(result.token as string, {
          jwks,
          audience: 'https://deploy.example.org',
          issuer: BROKER_ID,
        });
        assert.equal(verified.claims.sub, WORKLOAD_ID);
        assert.equal(verified.claims.cnf['x5t#S256'], certificateThumbprint(expected.der));
      };
      await check({ der: identity.svid.chainDer[0] as Buffer });

      // The requester's SVID rotates: the next call goes out on a new connection with it.
      const rotated = ca.issueSvid(WORKLOAD_ID);
      workloadApi.publish(x509Response([{ svid: rotated, bundle: [ca] }]));
      await until('the requester to see its rotated SVID', () => identity.svid.serial === serialOf(rotated.der));
      await check(rotated);

      // The broker's SVID rotates: new connections get it, live ones stay up.
      const renewed = ca.issueSvid(BROKER_ID);
      publishBroker(renewed);
      await until(
        'the broker to serve its rotated SVID',
        async () => (await servedSerial(t.broker.grpcPort, rotated)) === serialOf(renewed.der),
      );
      await live.ping();
      await check(rotated);
      assert.ok(log.lines.some((l) => l.msg === 'broker SVID rotated' && l.serial === serialOf(renewed.der)));
      assert.ok((await metricValue(t, 'countersign_identity_updates_total', { kind: 'svid' })) >= 1);
      assert.equal(
        await metricValue(t, 'countersign_svid_expiry_timestamp_seconds'),
        Math.floor(t.broker.identity.svid.notAfter / 1000),
      );
    } finally {
      live.session.destroy();
      client.close();
    }
  });

  it('refuses a rotated SVID that does not chain to its bundle or names someone else, keeping the one in force', async () => {
    const inForce = t.broker.identity.svid.serial;
    const before = await metricValue(t, 'countersign_reload_failures_total', { kind: 'svid' });
    publishBroker(CertificateAuthority.createRoot('example.org').issueSvid(BROKER_ID)); // signed by a CA outside the bundle
    await until(
      'the refusal',
      async () => (await metricValue(t, 'countersign_reload_failures_total', { kind: 'svid' })) === before + 1,
    );
    publishBroker(ca.issueSvid('spiffe://example.org/not/the/broker'));
    await until(
      'the second refusal',
      async () => (await metricValue(t, 'countersign_reload_failures_total', { kind: 'svid' })) === before + 2,
    );
    assert.equal(t.broker.identity.svid.serial, inForce);
    assert.ok(
      log.lines.some(
        (l) =>
          typeof l.msg === 'string' &&
          /kept the previous svid: .*not the broker|kept the previous svid: .*restart to change/.test(l.msg),
      ),
    );
  });

  it('rides out the agent going away, then follows the rotation it missed', async () => {
    await brokerApi.stop();
    const renewed = ca.issueSvid(BROKER_ID);
    publishBroker(renewed);
    await brokerApi.restart();
    await until('the rotation after the restart', () => t.broker.identity.svid.serial === serialOf(renewed.der));
    assert.ok(log.lines.some((l) => l.msg === 'workload api: stream lost, reconnecting'));
    // Calls keep working throughout.
    assert.equal(
      (await rawCall(t.address, ca.pem, ca.issueSvid(WORKLOAD_ID), { operation: 'deploy', resource: 'staging/web' }))
        .rule,
      'deploys',
    );
  });

  it('drops a federated trust domain the Workload API stops sending', async () => {
    publishBroker(ca.issueSvid(BROKER_ID), []);
    await until(
      'partner.org to be gone',
      () => t.broker.identity.bundles.current.getBundle('partner.org') === undefined,
    );
    const partner = partnerCa.issueSvid('spiffe://partner.org/ci/deployer');
    assert.equal(
      errorCode(await rejection(rawCall(t.address, ca.pem, partner, { operation: 'deploy', resource: 'staging/web' }))),
      'ERR_SVID_UNKNOWN_TRUST_DOMAIN',
    );
  });
});

describe('broker start-up on the Workload API', () => {
  it('stops with a clear error when no SVID comes within the timeout', async () => {
    const silent = await TestWorkloadApi.start();
    try {
      await assert.rejects(
        startTestBroker({
          identity: `identity:\n  svid:\n    workload_api:\n      socket: ${silent.address}\n      timeout: 1s\n`,
        }),
        (e: unknown) => {
          assert.equal((e as { code?: string }).code, 'ERR_IDENTITY_WORKLOAD_API');
          assert.match((e as Error).message, /no X\.509-SVID from unix:.* within 1s/);
          return true;
        },
      );
    } finally {
      await silent.close();
    }
  });

  it('takes the endpoint from SPIFFE_ENDPOINT_SOCKET and picks the configured SPIFFE ID among several', async () => {
    const api = await TestWorkloadApi.start();
    const ca = CertificateAuthority.createRoot('example.org');
    const other = ca.issueSvid('spiffe://example.org/sidecar');
    const broker = ca.issueSvid(BROKER_ID);
    api.publish(
      x509Response([
        { svid: other, bundle: [ca] },
        { svid: broker, bundle: [ca] },
      ]),
    );
    const t = await startTestBroker({
      identity: `identity:\n  svid:\n    workload_api:\n      spiffe_id: ${BROKER_ID}\n`,
      overrides: { env: { SPIFFE_ENDPOINT_SOCKET: api.address } },
    });
    try {
      assert.equal(t.broker.identity.svid.serial, serialOf(broker.der));
    } finally {
      await t.close();
      await api.close();
    }
  });
});
