// What the broker spends validating a new connection's X.509-SVID (SPIFFE ID,
// extensions, path to its own trust domain's bundle), as a ratio to the two
// signature checks any TLS stack does for the same chain anyway.
import { X509Certificate } from 'node:crypto';
import { CertificateAuthority } from '../broker/src/dev/ca.js';
import { BundleSet, bundleFromPem } from '../broker/src/identity/bundle.js';
import { verifySvid } from '../broker/src/identity/x509-svid.js';
import { fmt } from './harness.js';

function rate(fn: () => void, durationMs: number): number {
  const warm = performance.now() + 200;
  while (performance.now() < warm) fn();
  let n = 0;
  const start = performance.now();
  const end = start + durationMs;
  while (performance.now() < end) {
    for (let i = 0; i < 20; i++) fn();
    n += 20;
  }
  return n / ((performance.now() - start) / 1000);
}

export async function benchSvidVerify(options: { durationMs: number }): Promise<void> {
  const root = CertificateAuthority.createRoot('example.org');
  const intermediate = root.createIntermediate();
  const svid = intermediate.issueSvid('spiffe://example.org/ci/deployer');
  const bundles = new BundleSet([bundleFromPem('example.org', root.pem), bundleFromPem('other.org', CertificateAuthority.createRoot('other.org').pem)]);
  const leaf = new X509Certificate(svid.chainDer[0] as Buffer);
  const mid = new X509Certificate(svid.chainDer[1] as Buffer);
  const rootCert = new X509Certificate(root.certificate.der);
  const now = Date.now();

  const baseline = rate(() => {
    if (!leaf.verify(mid.publicKey) || !mid.verify(rootCert.publicKey)) throw new Error('bad chain');
  }, options.durationMs);
  const full = rate(() => verifySvid(svid.chainDer, bundles, { now }), options.durationMs);
  process.stdout.write(`\nsvid-verify: leaf + intermediate, two trust domains\n`);
  process.stdout.write(`  baseline (2 signature checks)   ${fmt(baseline, 0)} /s\n`);
  process.stdout.write(`  verifySvid                      ${fmt(full, 0)} /s  = ${fmt(full / baseline, 2)}x baseline\n`);
}
