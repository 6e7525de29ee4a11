// Benchmarks for issue 7, each against a baseline measured in the same run:
//  1. credential verification: @countersign/agent/verify (signature, typ, iss,
//     aud, expiry, certificate binding, operation, resource, parameters digest)
//     vs a bare jose.jwtVerify (signature + audience) on the same tokens.
//     Target: ratio >= 0.8.
//  2. audit append cost per event: the hash chain (canonical JSON, SHA-256,
//     compare-and-append Lua) vs a bare XADD and a bare SET of the same bytes.
import { createLocalJWKSet, jwtVerify } from 'jose';
import { certificateThumbprint, parametersDigest } from '@countersign/proto';
import { verifyCredential } from '@countersign/agent/verify';
import { CertificateAuthority, testRedis } from '@countersign/broker/testing';
import { RedisAuditLog } from '../broker/src/audit/audit-log.js';
import { systemClock } from '../broker/src/clock.js';
import { generateSigningKeyPem, Keyring, parseSigningKey } from '../broker/src/credentials/keys.js';
import { CredentialMinter } from '../broker/src/credentials/mint.js';
import { Keys } from '../broker/src/redis/keys.js';
import { fmt, runLoad, table } from './harness.js';

async function timeLoop(fn: () => Promise<unknown>, durationMs: number): Promise<number> {
  let n = 0;
  const end = performance.now() + durationMs;
  const start = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 50; i++) await fn();
    n += 50;
  }
  return n / ((performance.now() - start) / 1000);
}

export async function benchVerify(options: { durationMs: number }): Promise<void> {
  const ca = CertificateAuthority.createRoot('example.org');
  const caller = ca.issueSvid('spiffe://example.org/ci/deployer');
  const key = await parseSigningKey(generateSigningKeyPem('ES256'), 'bench');
  const keyring = new Keyring([key], { maxTtlMs: 3_600_000 });
  const jwks = keyring.jwks(Date.now());
  const parameters = { version: '1.4.2', replicas: 3, flags: ['canary', 'fast'] };
  const minter = new CredentialMinter(keyring, { issuer: 'spiffe://example.org/countersign/broker', maxTtlMs: 3_600_000, clock: systemClock });
  const tokens: string[] = [];
  for (let i = 0; i < 256; i++) {
    const minted = await minter.mint({
      subject: caller.spiffeId,
      certificateThumbprint: certificateThumbprint(caller.der),
      svidNotAfter: Date.now() + 3_600_000,
      operation: 'deploy',
      resource: 'prod/web',
      parametersDigest: parametersDigest(parameters),
      audience: 'https://deploy.example.org',
      ttlCaps: [],
    });
    tokens.push(minted.token);
  }
  const localSet = createLocalJWKSet(jwks);
  let i = 0;
  const bare = () => jwtVerify(tokens[i++ % tokens.length] as string, localSet, { algorithms: ['ES256'], audience: 'https://deploy.example.org' });
  const ours = () =>
    verifyCredential(tokens[i++ % tokens.length] as string, {
      jwks,
      audience: 'https://deploy.example.org',
      issuer: 'spiffe://example.org/countersign/broker',
      operation: 'deploy',
      resource: 'prod/web',
      parameters,
      clientCertificate: caller.der,
    });
  await timeLoop(bare, 300);
  await timeLoop(ours, 300);
  // Alternate rounds so drift on a shared machine hits both alike.
  const rounds = 3;
  let bareTotal = 0;
  let oursTotal = 0;
  for (let r = 0; r < rounds; r++) {
    bareTotal += await timeLoop(bare, options.durationMs / rounds);
    oursTotal += await timeLoop(ours, options.durationMs / rounds);
  }
  const bareRate = bareTotal / rounds;
  const oursRate = oursTotal / rounds;
  process.stdout.write('\nCredential verification (ES256, one core, sequential): agents/verify with every check vs bare jose.jwtVerify (target ratio >= 0.8)\n');
  process.stdout.write(
    `${table([
      {
        'jose.jwtVerify/s': fmt(bareRate, 0),
        'verifyCredential/s': fmt(oursRate, 0),
        'ratio verify/jose': fmt(oursRate / bareRate, 2),
        'µs per verify (ours)': fmt(1e6 / oursRate, 1),
      },
    ])}\n`,
  );
}

export async function benchAuditAppend(options: { durationMs: number; concurrencies: number[] }): Promise<void> {
  const r = await testRedis('bench-audit');
  const keys = new Keys(r.prefix);
  const log = new RedisAuditLog(r.redis, keys, systemClock);
  const event = {
    type: 'credential_issued',
    request_id: 'req_0123456789abcdef',
    jti: 'EY1mvTSZrIsP9BTAEj9mOQ',
    kid: 'euX5m_pZRzyKzLtP1Bgg0hLVNxc9ArGTuxE_1ms6IgE',
    subject: 'spiffe://example.org/ci/deployer',
    audience: 'https://deploy.example.org',
    expires_at: Date.now() + 600_000,
    operation: 'deploy',
    resource: 'prod/web',
    parameters_digest: 'D3mnxUzgoFmb09alZGCZb9h5NoUFKvb7prMwCRq4DGs',
    certificate_thumbprint: 'wJxG2NrVekmnRgg4iQX4HWcOJdiCCq8i8hSbIhvIyzo',
  };
  const sample = JSON.stringify((await log.append(event)) as unknown);
  let n = 0;
  const xadd = () => r.redis.xadd(`${r.prefix}baseline:stream`, '*', 'event', sample);
  const set = () => r.redis.set(`${r.prefix}baseline:k:${n++ % 1000}`, sample);
  const chain = () => log.append(event);
  const rows: Record<string, string>[] = [];
  for (const concurrency of options.concurrencies) {
    const common = { concurrency, durationMs: options.durationMs, warmupMs: 300 };
    const a = await runLoad(xadd, common);
    const b = await runLoad(set, common);
    const c = await runLoad(chain, common);
    await r.redis.del(`${r.prefix}baseline:stream`);
    rows.push({
      concurrency: String(concurrency),
      'XADD µs/event': fmt(1e6 / a.throughput, 1),
      'SET µs/event': fmt(1e6 / b.throughput, 1),
      'chain µs/event': fmt(1e6 / c.throughput, 1),
      'cost chain/XADD': fmt(a.throughput / c.throughput, 2),
      'chain p99 ms': fmt(c.p99Ms, 2),
      errors: String(a.errors + b.errors + c.errors),
    });
  }
  process.stdout.write('\nAudit append, one event per call: hash chain (JCS + SHA-256 + compare-and-append Lua, group commit) vs bare XADD / SET of the same record\n');
  process.stdout.write(`${table(rows)}\n`);
  await r.cleanup();
}
