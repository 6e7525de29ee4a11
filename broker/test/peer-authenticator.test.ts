// PeerAuthenticator takes two verdicts on a connection's chain: OpenSSL's, from
// the TLS handshake (against every trust domain's authorities, at the wall
// clock), and verifySvid's (SPIFFE rules, the leaf's own trust domain, PKI.js's
// path validation, at the broker's clock). These tests hand it sockets whose
// handshake verdict is set, to pin down which OpenSSL refusals stand.
import assert from 'node:assert/strict';
import type { TLSSocket } from 'node:tls';
import { describe, it } from 'node:test';
import { ManualClock } from '../src/clock.js';
import { CountersignError } from '../src/errors.js';
import { BundleSet, bundleFromPem } from '../src/identity/bundle.js';
import { BundleStore } from '../src/identity/bundle-store.js';
import { PeerAuthenticator } from '../src/identity/peer-authenticator.js';
import { SvidCache } from '../src/identity/svid-cache.js';
import { verifySvid } from '../src/identity/x509-svid.js';
import { CertificateAuthority, type IssuedSvid } from '../src/dev/ca.js';

const MINUTE = 60_000;

let port = 40000;
/** What PeerAuthenticator reads from a TLS socket: the peer chain as Node links it, and OpenSSL's verdict. */
function socketWith(svid: IssuedSvid, verdict: { authorized: boolean; authorizationError?: string }): TLSSocket {
  type Linked = { raw: Buffer; fingerprint256: string; issuerCertificate?: Linked };
  const linked = svid.chainDer.map((raw, i): Linked => ({
    raw,
    fingerprint256: `${i}:${raw.toString('base64').slice(-16)}`,
  }));
  linked.forEach((cert, i) => {
    const issuer = linked[i + 1];
    if (issuer) cert.issuerCertificate = issuer;
  });
  const socket = {
    remoteAddress: '127.0.0.1',
    remotePort: port++,
    authorized: verdict.authorized,
    authorizationError: verdict.authorizationError,
    getPeerCertificate: () => linked[0],
    once: () => socket,
  };
  return socket as unknown as TLSSocket;
}

const peerOf = (socket: TLSSocket) => `${socket.remoteAddress}:${socket.remotePort}`;

function setup() {
  const ca = CertificateAuthority.createRoot('example.org');
  const clock = new ManualClock(Date.now());
  const bundles = new BundleStore(new BundleSet([bundleFromPem('example.org', ca.pem)]));
  const refused: string[] = [];
  const peers = new PeerAuthenticator(bundles, clock, (e) => refused.push(e.code));
  return { ca, clock, bundles, peers, refused };
}

describe('PeerAuthenticator: the TLS handshake verdict', () => {
  it('accepts a chain both OpenSSL and verifySvid accept', async () => {
    const { ca, peers, refused } = setup();
    const socket = socketWith(ca.createIntermediate().issueSvid('spiffe://example.org/ci/deployer'), {
      authorized: true,
    });
    await peers.attach(socket);
    assert.equal((await peers.authenticate(peerOf(socket))).spiffeId, 'spiffe://example.org/ci/deployer');
    assert.deepEqual(refused, []);
  });

  it('refuses a chain OpenSSL refused for a reason of its own (a name constraint, which Node reports as UNSPECIFIED), even when verifySvid accepts it', async () => {
    const { ca, peers, refused } = setup();
    const socket = socketWith(ca.issueSvid('spiffe://example.org/ci/deployer'), {
      authorized: false,
      authorizationError: 'UNSPECIFIED',
    });
    await peers.attach(socket);
    await assert.rejects(peers.authenticate(peerOf(socket)), (e: unknown) => {
      assert.ok(e instanceof CountersignError);
      assert.equal(e.code, 'ERR_SVID_PATH_REJECTED');
      assert.equal(e.kind, 'unauthenticated');
      assert.match(e.message, /^x509svid: .*OpenSSL.*UNSPECIFIED/);
      return true;
    });
    assert.deepEqual(refused, ['ERR_SVID_PATH_REJECTED'], 'reported once, when the connection is judged');
  });

  for (const code of ['PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'INVALID_CA', 'CERT_SIGNATURE_FAILURE']) {
    it(`keeps OpenSSL's ${code} after a bundle reload`, async () => {
      const { ca, peers, bundles } = setup();
      const socket = socketWith(ca.issueSvid('spiffe://example.org/ci/deployer'), {
        authorized: false,
        authorizationError: code,
      });
      await peers.attach(socket);
      bundles.replace(new BundleSet([bundleFromPem('example.org', ca.pem)]));
      await assert.rejects(peers.authenticate(peerOf(socket)), { code: 'ERR_SVID_PATH_REJECTED' });
    });
  }

  it("leaves time to the broker's clock: a wall-clock expiry in the handshake does not refuse, the injected clock does", async () => {
    const { ca, peers, clock } = setup();
    const now = clock.now();
    const svid = ca.issueSvid('spiffe://example.org/ci/deployer', {
      notBefore: now - MINUTE,
      notAfter: now + 10 * MINUTE,
    });
    const socket = socketWith(svid, { authorized: false, authorizationError: 'CERT_HAS_EXPIRED' });
    await peers.attach(socket);
    assert.equal((await peers.authenticate(peerOf(socket))).spiffeId, 'spiffe://example.org/ci/deployer');
    clock.advance(11 * MINUTE);
    await assert.rejects(peers.authenticate(peerOf(socket)), { code: 'ERR_SVID_EXPIRED' });

    const authorized = socketWith(svid, { authorized: true });
    await peers.attach(authorized);
    await assert.rejects(
      peers.authenticate(peerOf(authorized)),
      { code: 'ERR_SVID_EXPIRED' },
      "OpenSSL's yes does not override the broker's clock either",
    );
  });

  it("leaves trust to the bundles in force: an issuer OpenSSL could not find in the handshake's authorities is judged by verifySvid", async () => {
    const { ca, peers, bundles } = setup();
    const next = CertificateAuthority.createRoot('example.org');
    const socket = socketWith(next.issueSvid('spiffe://example.org/ci/deployer'), {
      authorized: false,
      authorizationError: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    });
    await peers.attach(socket);
    await assert.rejects(peers.authenticate(peerOf(socket)), { code: 'ERR_SVID_UNTRUSTED' });
    bundles.replace(new BundleSet([bundleFromPem('example.org', ca.pem + next.pem)]));
    assert.equal(
      (await peers.authenticate(peerOf(socket))).spiffeId,
      'spiffe://example.org/ci/deployer',
      'trusted once the bundle holds the new root',
    );
  });

  it("refuses with verifySvid's precise code when both refuse", async () => {
    const { ca, peers } = setup();
    const socket = socketWith(
      ca
        .createIntermediate({ pathLength: 0, commonName: 'A' })
        .createIntermediate({ commonName: 'B' })
        .issueSvid('spiffe://example.org/ci/deployer'),
      {
        authorized: false,
        authorizationError: 'PATH_LENGTH_EXCEEDED',
      },
    );
    await peers.attach(socket);
    await assert.rejects(peers.authenticate(peerOf(socket)), { code: 'ERR_SVID_PATH_LENGTH' });
  });
});

describe('SvidCache', () => {
  it('answers for the same chain, bundle and time window only', async () => {
    const ca = CertificateAuthority.createRoot('example.org');
    const now = Date.now();
    const svid = ca
      .createIntermediate({ notBefore: now - MINUTE, notAfter: now + 30 * MINUTE })
      .issueSvid('spiffe://example.org/ci/deployer', {
        notBefore: now - MINUTE,
        notAfter: now + 60 * MINUTE,
      });
    const bundles = new BundleSet([bundleFromPem('example.org', ca.pem)]);
    const cache = new SvidCache();
    const first = await verifySvid(svid.chainDer, bundles, { now, cache });
    assert.equal(cache.size, 1);
    assert.equal(
      await verifySvid(svid.chainDer, bundles, { now: now + MINUTE, cache }),
      first,
      'the remembered identity',
    );
    // The role is part of the key: judged afresh as a server.
    assert.notEqual(await verifySvid(svid.chainDer, bundles, { now, cache, role: 'server' }), first);
    assert.equal(cache.size, 2);
    // The intermediate expires before the leaf: the window ends with it.
    await assert.rejects(verifySvid(svid.chainDer, bundles, { now: now + 31 * MINUTE, cache }), {
      code: 'ERR_SVID_CHAIN_EXPIRED',
    });
    // Another bundle object (a reload) is judged afresh, even with the same roots.
    const reloaded = new BundleSet([bundleFromPem('example.org', CertificateAuthority.createRoot('example.org').pem)]);
    await assert.rejects(verifySvid(svid.chainDer, reloaded, { now, cache }), { code: 'ERR_SVID_UNTRUSTED' });
  });

  it('never remembers a refusal', async () => {
    const ca = CertificateAuthority.createRoot('example.org');
    const now = Date.now();
    const svid = ca.issueSvid('spiffe://example.org/ci/deployer', {
      notBefore: now + MINUTE,
      notAfter: now + 60 * MINUTE,
    });
    const bundles = new BundleSet([bundleFromPem('example.org', ca.pem)]);
    const cache = new SvidCache();
    await assert.rejects(verifySvid(svid.chainDer, bundles, { now, cache }), { code: 'ERR_SVID_NOT_YET_VALID' });
    assert.equal(cache.size, 0);
    assert.equal(
      (await verifySvid(svid.chainDer, bundles, { now: now + 2 * MINUTE, cache })).spiffeId,
      'spiffe://example.org/ci/deployer',
    );
  });

  it('drops the least recently used entry when full', async () => {
    const ca = CertificateAuthority.createRoot('example.org');
    const bundles = new BundleSet([bundleFromPem('example.org', ca.pem)]);
    const cache = new SvidCache(2);
    const now = Date.now();
    const [a, b, c] = ['a', 'b', 'c'].map((name) => ca.issueSvid(`spiffe://example.org/${name}`)) as [
      IssuedSvid,
      IssuedSvid,
      IssuedSvid,
    ];
    const first = await verifySvid(a.chainDer, bundles, { now, cache });
    await verifySvid(b.chainDer, bundles, { now, cache });
    assert.equal(await verifySvid(a.chainDer, bundles, { now, cache }), first, 'a is used again, b is now the oldest');
    await verifySvid(c.chainDer, bundles, { now, cache });
    assert.equal(cache.size, 2);
    assert.equal(await verifySvid(a.chainDer, bundles, { now, cache }), first, 'a survived');
  });
});
