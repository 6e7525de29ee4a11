// The X.509-SVID validation table, run against verifySvid directly: every row
// names the rule it exercises and the code it must produce.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CountersignError } from '../src/errors.js';
import { BundleSet, bundleFromPem } from '../src/identity/bundle.js';
import { verifySvid } from '../src/identity/x509-svid.js';
import { CertificateAuthority } from '../src/dev/ca.js';
import { defaultBundles, svidCases, type SvidCaseContext } from './support/svid-cases.js';

const now = Date.now();
const ctx: SvidCaseContext = {
  ca: CertificateAuthority.createRoot('example.org'),
  other: CertificateAuthority.createRoot('other.org'),
  now,
};

async function outcome(input: ReturnType<(typeof svidCases)[number]['build']>): Promise<string> {
  try {
    await verifySvid(input.chain, input.bundles ?? defaultBundles(ctx), { now, role: input.role ?? 'client' });
    return 'ok';
  } catch (e) {
    assert.ok(
      e instanceof CountersignError,
      `threw a ${(e as Error).name}, not a coded error: ${(e as Error).message}`,
    );
    assert.equal(e.kind, 'unauthenticated', 'every refusal is UNAUTHENTICATED');
    assert.match(e.message, /^x509svid: /);
    return e.code;
  }
}

describe('X.509-SVID validation table', () => {
  it('has at least 25 refusal cases, each with a distinct name', () => {
    assert.ok(svidCases.filter((c) => c.expect !== 'ok').length >= 25);
    assert.equal(new Set(svidCases.map((c) => c.name)).size, svidCases.length);
  });
  for (const c of svidCases) {
    it(`${c.name} -> ${c.expect} (${c.rule})`, async () => {
      assert.equal(await outcome(c.build(ctx)), c.expect);
    });
  }
});

describe('X.509-SVID identity facts', () => {
  it('returns the ID, trust domain, serial, validity window and thumbprint of the leaf', async () => {
    const notBefore = Math.floor((now - 5 * 60_000) / 1000) * 1000;
    const notAfter = Math.floor((now + 20 * 60_000) / 1000) * 1000;
    const svid = ctx.ca.createIntermediate().issueSvid('spiffe://example.org/ci/deployer', { notBefore, notAfter });
    const identity = await verifySvid(svid.chainDer, defaultBundles(ctx), { now });
    assert.equal(identity.spiffeId, 'spiffe://example.org/ci/deployer');
    assert.equal(identity.trustDomain, 'example.org');
    assert.equal(identity.path, '/ci/deployer');
    assert.equal(identity.notBefore, notBefore);
    assert.equal(identity.notAfter, notAfter);
    assert.match(identity.serial, /^[0-9a-f]+$/);
    assert.match(identity.thumbprint, /^[A-Za-z0-9_-]{43}$/);
  });

  it('uses the injected time, not the wall clock', async () => {
    const svid = ctx.ca.issueSvid('spiffe://example.org/ci/deployer', { notBefore: now, notAfter: now + 60_000 });
    assert.equal(
      (await verifySvid(svid.chainDer, defaultBundles(ctx), { now: now + 30_000 })).spiffeId,
      'spiffe://example.org/ci/deployer',
    );
    await assert.rejects(verifySvid(svid.chainDer, defaultBundles(ctx), { now: now + 120_000 }), {
      code: 'ERR_SVID_EXPIRED',
    });
  });

  it('judges intermediates and anchors at the injected time too (the path validator gets the same clock)', async () => {
    const svid = ctx.ca
      .createIntermediate({ notBefore: now + 10 * 60_000, notAfter: now + 60 * 60_000 })
      .issueSvid('spiffe://example.org/ci/deployer', {
        notBefore: now - 60_000,
        notAfter: now + 60 * 60_000,
      });
    await assert.rejects(verifySvid(svid.chainDer, defaultBundles(ctx), { now }), {
      code: 'ERR_SVID_CHAIN_NOT_YET_VALID',
    });
    assert.equal(
      (await verifySvid(svid.chainDer, defaultBundles(ctx), { now: now + 20 * 60_000 })).spiffeId,
      'spiffe://example.org/ci/deployer',
    );
  });

  it('accepts an SVID during a root rotation, from either authority of the bundle', async () => {
    const next = CertificateAuthority.createRoot('example.org');
    const bundles = new BundleSet([bundleFromPem('example.org', ctx.ca.pem + next.pem)]);
    for (const root of [ctx.ca, next]) {
      assert.equal(
        (await verifySvid(root.issueSvid('spiffe://example.org/w').chainDer, bundles, { now })).spiffeId,
        'spiffe://example.org/w',
      );
    }
  });

  it("never lets one trust domain's CA vouch for another, even when both are trusted", async () => {
    const claimingOther = ctx.ca.issueSvid('spiffe://other.org/ci/deployer');
    await assert.rejects(verifySvid(claimingOther.chainDer, defaultBundles(ctx), { now }), (e: unknown) => {
      assert.ok(e instanceof CountersignError);
      assert.equal(e.code, 'ERR_SVID_UNTRUSTED');
      assert.match(e.message, /trust domain other\.org/);
      return true;
    });
  });
});
