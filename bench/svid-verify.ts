// What the broker spends validating a new connection's X.509-SVID (SPIFFE ID,
// extensions, path to its own trust domain's bundle, RFC 5280 path validation by
// PKI.js), as a ratio to the two signature checks any TLS stack does for the same
// chain anyway. Twice: for a chain seen for the first time (no cache: what every
// new SVID costs), and for one seen before (the cache PeerAuthenticator keeps, so a
// workload's second connection with the same SVID skips path validation).
import { X509Certificate } from 'node:crypto';
import { CertificateAuthority } from '../broker/src/dev/ca.js';
import { BundleSet, bundleFromPem } from '../broker/src/identity/bundle.js';
import { SvidCache } from '../broker/src/identity/svid-cache.js';
import { verifySvid } from '../broker/src/identity/x509-svid.js';
import { fmt } from './harness.js';

async function rate(fn: () => void | Promise<unknown>, durationMs: number): Promise<number> {
  const warm = performance.now() + 200;
  while (performance.now() < warm) await fn();
  let n = 0;
  const start = performance.now();
  const end = start + durationMs;
  while (performance.now() < end) {
    for (let i = 0; i < 20; i++) await fn();
    n += 20;
  }
  return n / ((performance.now() - start) / 1000);
}

export async function benchSvidVerify(options: { durationMs: number }): Promise<void> {
  const root = CertificateAuthority.createRoot('example.org');
  const intermediate = root.createIntermediate();
  const svid = intermediate.issueSvid('spiffe://example.org/ci/deployer');
  const bundles = new BundleSet([
    bundleFromPem('example.org', root.pem),
    bundleFromPem('other.org', CertificateAuthority.createRoot('other.org').pem),
  ]);
  const leaf = new X509Certificate(svid.chainDer[0] as Buffer);
  const mid = new X509Certificate(svid.chainDer[1] as Buffer);
  const rootCert = new X509Certificate(root.certificate.der);
  const now = Date.now();
  const cache = new SvidCache();

  const baseline = await rate(() => {
    if (!leaf.verify(mid.publicKey) || !mid.verify(rootCert.publicKey)) throw new Error('bad chain');
  }, options.durationMs);
  const cold = await rate(() => verifySvid(svid.chainDer, bundles, { now }), options.durationMs);
  const warm = await rate(() => verifySvid(svid.chainDer, bundles, { now, cache }), options.durationMs);
  process.stdout.write(`\nsvid-verify: leaf + intermediate, two trust domains\n`);
  process.stdout.write(`  baseline (2 signature checks)   ${fmt(baseline, 0)} /s\n`);
  process.stdout.write(
    `  verifySvid, a new chain         ${fmt(cold, 0)} /s  = ${fmt(cold / baseline, 2)}x baseline\n`,
  );
  process.stdout.write(
    `  verifySvid, a chain seen before ${fmt(warm, 0)} /s  = ${fmt(warm / baseline, 2)}x baseline\n`,
  );
}
