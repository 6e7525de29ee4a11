// Benchmark (issue 18): what the OIDC exchange costs, against baselines in the same run.
//  1. RequestOperation (allow path) with an exchanged SVID vs with a file SVID, on one broker
//     with identity.oidc configured: the per-request cost of reading the SVID's claims from
//     Redis and giving them to CEL (target ratio >= 0.8).
//  2. ExchangeToken itself (JWT verify, CSR verify, single-use mark, SVID signing, audit) vs
//     the allow path: how many exchanges a broker serves per request it could have served.
import { CountersignClient, exchangeToken } from '@countersign/agent';
import { CertificateAuthority, startTestBroker } from '@countersign/broker/testing';
import { githubClaims, LocalIssuer } from '../test/e2e/support/oidc-issuer.js';
import { fmt, runLoad, table } from './harness.js';

export async function benchOidcExchange(options: { durationMs: number; concurrency: number }): Promise<void> {
  const issuer = await LocalIssuer.start();
  await issuer.rotate('ES256');
  const ca = CertificateAuthority.createRoot('example.org');
  const oidcCa = ca.createIntermediate();
  const policy = `version: 1
rules:
  - name: staging
    match: { workload: "spiffe://example.org/**", operation: deploy, resource: "staging/*" }
    when: workload.issuer == "" || workload.claims.ref == "refs/heads/main"
    decision: allow
`;
  const t = await startTestBroker({
    ca,
    policy,
    files: { 'oidc-ca.pem': oidcCa.pem, 'oidc-ca-key.pem': oidcCa.certificate.keyPem },
    identity: `identity:
  svid: { cert_file: broker.pem, key_file: broker-key.pem }
  bundles: [{ trust_domain: example.org, file: ca.pem }]
  oidc_ca: { cert_file: oidc-ca.pem, key_file: oidc-ca-key.pem }
  oidc:
    - { name: github, issuer: "${issuer.url}", audience: countersign, spiffe_id: "spiffe://{trust_domain}/github/{repository}/{environment}", algorithms: [ES256] }
`,
    extraConfig: 'requests:\n  limits: { requests_per_second: 100000, burst: 100000 }\n',
  });
  const serverId = 'spiffe://example.org';
  try {
    const fileSvid = t.svid('ci/deployer');
    const viaFile = new CountersignClient({
      address: t.address,
      certChainPem: fileSvid.chainPem,
      keyPem: fileSvid.keyPem,
      caPem: t.ca.pem,
    });
    const exchanged = await exchangeToken(await issuer.sign(githubClaims({ environment: 'bench' })), {
      address: t.address,
      caPem: t.ca.pem,
      serverId,
    });
    const viaExchange = new CountersignClient({
      address: t.address,
      certChainPem: exchanged.certChainPem,
      keyPem: exchanged.keyPem,
      caPem: exchanged.caPem,
    });
    const ask = (c: CountersignClient) => () =>
      c.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: { version: '1' } });
    const load = { concurrency: options.concurrency, durationMs: options.durationMs };
    const file = await runLoad(ask(viaFile), load);
    const oidc = await runLoad(ask(viaExchange), load);
    // Tokens are signed ahead, so the measurement is the broker's work (and the caller's key + CSR).
    const tokens = await Promise.all(
      Array.from({ length: Math.max(200, Math.ceil((options.durationMs / 1000) * 400)) }, (_, i) =>
        issuer.sign(githubClaims({ environment: `e${i}` })),
      ),
    );
    let next = 0;
    const exchanges = await runLoad(
      () => exchangeToken(tokens[next++ % tokens.length] as string, { address: t.address, caPem: t.ca.pem, serverId }),
      { ...load, warmupMs: 200 },
    );
    viaFile.close();
    viaExchange.close();
    process.stdout.write(
      '\nOIDC exchange (issue 18): requests with an exchanged SVID, and ExchangeToken itself, vs the allow path with a file SVID\n',
    );
    process.stdout.write(
      `(in-process callers, concurrency ${options.concurrency}; target: exchanged/file >= 0.8. Exchanges past the signed tokens are replays, refused: see errors)\n`,
    );
    process.stdout.write(
      `${table([
        {
          measure: 'RequestOperation, file SVID (baseline)',
          'calls/s': fmt(file.throughput, 0),
          'p50/p99 ms': `${fmt(file.p50Ms, 2)}/${fmt(file.p99Ms, 2)}`,
          ratio: '1.00',
          errors: String(file.errors),
        },
        {
          measure: 'RequestOperation, exchanged SVID (claims in CEL)',
          'calls/s': fmt(oidc.throughput, 0),
          'p50/p99 ms': `${fmt(oidc.p50Ms, 2)}/${fmt(oidc.p99Ms, 2)}`,
          ratio: fmt(oidc.throughput / file.throughput, 2),
          errors: String(oidc.errors),
        },
        {
          measure: 'ExchangeToken (new key + CSR per call)',
          'calls/s': fmt(exchanges.throughput, 0),
          'p50/p99 ms': `${fmt(exchanges.p50Ms, 2)}/${fmt(exchanges.p99Ms, 2)}`,
          ratio: fmt(exchanges.throughput / file.throughput, 2),
          errors: String(exchanges.errors),
        },
      ])}\n`,
    );
  } finally {
    await t.close();
    await issuer.close();
  }
}
