// Benchmarks for issue 7, each against a baseline measured in the same run:
//  1. credential verification: @countersign/agent/verify (signature, typ, iss,
//     aud, expiry, certificate binding, operation, resource, parameters digest)
//     vs a bare jose.jwtVerify (signature + audience) on the same tokens.
//     Target: ratio >= 0.8.
//  2. audit append cost per event: the hash chain (canonical JSON, SHA-256,
//     compare-and-append Lua, the head signed on every write) vs the same
//     chain without the head signature and a bare XADD and SET of the same
//     bytes; one signature with node:crypto vs jose; and the checkpoint cadence.
import { createLocalJWKSet, jwtVerify, SignJWT } from 'jose';
import { certificateThumbprint, parametersDigest } from '@countersign/proto';
import { verifyCredential } from '@countersign/agent/verify';
import { CertificateAuthority, testRedis } from '@countersign/broker/testing';
import { RedisAuditLog } from '../broker/src/audit/audit-log.js';
import type { ChainHead } from '../broker/src/audit/chain.js';
import { Checkpointer } from '../broker/src/audit/checkpoints.js';
import { HEAD_TYPE, KeyringHeadSigner, UNSIGNED_HEADS, type HeadSigner } from '../broker/src/audit/head.js';
import { silentLogger } from '../broker/src/observability/logger.js';
import { systemClock } from '../broker/src/clock.js';
import { generateSigningKeyPem, Keyring, parseSigningKey } from '../broker/src/credentials/keys.js';
import { CredentialMinter } from '../broker/src/credentials/mint.js';
import { Keys } from '../broker/src/redis/keys.js';
import { fmt, runLoad, table, type LoadResult } from './harness.js';

/** Runs each call in turn, `rounds` times for durationMs / rounds each, so drift on a shared machine hits all alike. */
async function alternate<K extends string>(
  calls: Record<K, () => Promise<unknown>>,
  options: { concurrency: number; durationMs: number; rounds?: number },
): Promise<Record<K, LoadResult>> {
  const rounds = options.rounds ?? 3;
  const totals = new Map<K, LoadResult[]>();
  for (let round = 0; round < rounds; round++) {
    for (const [name, call] of Object.entries(calls) as [K, () => Promise<unknown>][]) {
      const result = await runLoad(call, {
        concurrency: options.concurrency,
        durationMs: options.durationMs / rounds,
        warmupMs: round === 0 ? 300 : 50,
      });
      totals.set(name, [...(totals.get(name) ?? []), result]);
    }
  }
  const out = {} as Record<K, LoadResult>;
  for (const [name, results] of totals) {
    const calls = results.reduce((sum, x) => sum + x.calls, 0);
    const seconds = results.reduce((sum, x) => sum + x.seconds, 0);
    out[name] = {
      calls,
      seconds,
      throughput: calls / seconds,
      p50Ms: Math.max(...results.map((x) => x.p50Ms)),
      p99Ms: Math.max(...results.map((x) => x.p99Ms)),
      errors: results.reduce((sum, x) => sum + x.errors, 0),
      cpuUsPerCall: results.reduce((sum, x) => sum + x.cpuUsPerCall * x.calls, 0) / Math.max(1, calls),
      warmupCalls: results.reduce((sum, x) => sum + x.warmupCalls, 0),
    };
  }
  return out;
}

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
  const minter = new CredentialMinter(keyring, {
    issuer: 'spiffe://example.org/countersign/broker',
    maxTtlMs: 3_600_000,
    clock: systemClock,
  });
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
  const bare = () =>
    jwtVerify(tokens[i++ % tokens.length] as string, localSet, {
      algorithms: ['ES256'],
      audience: 'https://deploy.example.org',
    });
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
  process.stdout.write(
    '\nCredential verification (ES256, one core, sequential): agents/verify with every check vs bare jose.jwtVerify (target ratio >= 0.8)\n',
  );
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
  const key = await parseSigningKey(generateSigningKeyPem('ES256'), 'bench');
  const keyring = new Keyring([key], { maxTtlMs: 3_600_000 });
  const issuer = 'spiffe://example.org/countersign/broker';
  const heads = new KeyringHeadSigner(keyring, issuer, createLocalJWKSet(keyring.allPublicJwks()));
  let chains = 0;
  /** A chain of its own under the bench prefix; with a checkpointer every `everyEvents` events when given. */
  const newChain = (signer: HeadSigner, everyEvents?: number) => {
    const keys = new Keys(`${r.prefix}c${++chains}:`);
    const checkpointer =
      everyEvents === undefined
        ? undefined
        : new Checkpointer(
            { redis: r.redis, keys, keyring, heads, clock: systemClock, logger: silentLogger() },
            { issuer, everyEvents, intervalMs: 3_600_000 },
          );
    const log = new RedisAuditLog(r.redis, keys, systemClock, {
      heads: signer,
      ...(checkpointer ? { onAppended: (h: ChainHead) => checkpointer.noteAppended(h) } : {}),
    });
    return { keys, log };
  };
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
  const sample = JSON.stringify(await newChain(heads).log.append(event));
  let n = 0;
  const xadd = () => r.redis.xadd(`${r.prefix}baseline:stream`, '*', 'event', sample);
  const set = () => r.redis.set(`${r.prefix}baseline:k:${n++ % 1000}`, sample);
  const rows: Record<string, string>[] = [];
  for (const concurrency of options.concurrencies) {
    const unsigned = newChain(UNSIGNED_HEADS).log;
    const signed = newChain(heads).log;
    const m = await alternate(
      { xadd, set, unsigned: () => unsigned.append(event), signed: () => signed.append(event) },
      { concurrency, durationMs: options.durationMs },
    );
    await r.redis.del(`${r.prefix}baseline:stream`);
    rows.push({
      concurrency: String(concurrency),
      'XADD µs/event': fmt(1e6 / m.xadd.throughput, 1),
      'SET µs/event': fmt(1e6 / m.set.throughput, 1),
      'unsigned head µs/event': fmt(1e6 / m.unsigned.throughput, 1),
      'signed head µs/event': fmt(1e6 / m.signed.throughput, 1),
      'cost signed/XADD': fmt(m.xadd.throughput / m.signed.throughput, 2),
      'cost signed/unsigned': fmt(m.unsigned.throughput / m.signed.throughput, 2),
      'CPU µs/event unsigned': fmt(m.unsigned.cpuUsPerCall, 1),
      'CPU µs/event signed': fmt(m.signed.cpuUsPerCall, 1),
      'signed p99 ms': fmt(m.signed.p99Ms, 2),
      errors: String(m.xadd.errors + m.set.errors + m.unsigned.errors + m.signed.errors),
    });
  }
  process.stdout.write(
    '\nAudit append, one event per call: the hash chain (JCS + SHA-256 + compare-and-append Lua, group commit) with its head signed on every write (ES256, node:crypto) vs the same chain unsigned, and bare XADD / SET of the same record. CPU: this process (Redis excluded), the steadier figure on a shared machine.\n',
  );
  process.stdout.write(`${table(rows)}\n`);

  // What one head signature costs on its own: node:crypto (what the chain uses) vs jose (WebCrypto) with the same key.
  const signRate = async (sign: () => unknown) => {
    let count = 0;
    const end = performance.now() + Math.min(options.durationMs, 2000);
    const start = performance.now();
    while (performance.now() < end) {
      await sign();
      count++;
    }
    return count / ((performance.now() - start) / 1000);
  };
  const head = { seq: 1, hash: 'a'.repeat(64) };
  const fast = await signRate(() => heads.sign(head, 0, Date.now()));
  const slow = await signRate(() =>
    new SignJWT({ seq: 1, hash: head.hash, checkpoint_seq: 0 })
      .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: HEAD_TYPE })
      .setIssuer(issuer)
      .setIssuedAt()
      .sign(key.privateKey),
  );
  process.stdout.write(
    `${table([{ 'node:crypto µs/signature': fmt(1e6 / fast, 1), 'jose µs/signature': fmt(1e6 / slow, 1), 'ratio jose/node': fmt(fast / slow, 2) }])}\n`,
  );

  // Checkpoint cadence: the same appends with a checkpointer every N events, one caller (no group commit to hide it).
  const cadences = [1, 10, 100, 1000];
  const chainsByCadence = new Map(cadences.map((every) => [every, newChain(heads, every)]));
  const base = newChain(heads).log;
  const m: Record<string, LoadResult> = await alternate<string>(
    {
      none: () => base.append(event),
      ...Object.fromEntries(
        cadences.map((every) => [
          String(every),
          () => (chainsByCadence.get(every) as { log: RedisAuditLog }).log.append(event),
        ]),
      ),
    },
    { concurrency: 1, durationMs: options.durationMs },
  );
  await new Promise((resolve) => setTimeout(resolve, 100)); // let the last checkpoints land
  const cadence: Record<string, string>[] = [];
  for (const every of cadences) {
    const { keys } = chainsByCadence.get(every) as { keys: Keys };
    const [records, checkpoints, checkpointBytes, recordBytes] = await Promise.all([
      r.redis.llen(keys.auditChain()),
      r.redis.llen(keys.auditCheckpoints()),
      r.redis.lrange(keys.auditCheckpoints(), 0, -1).then((l) => l.reduce((sum, jws) => sum + jws.length, 0)),
      r.redis.lrange(keys.auditChain(), 0, -1).then((l) => l.reduce((sum, line) => sum + line.length, 0)),
    ]);
    const result = m[String(every)] as LoadResult;
    cadence.push({
      'checkpoint every': `${every} events`,
      'µs/event': fmt(1e6 / result.throughput, 1),
      'cost vs none': fmt((m.none as LoadResult).throughput / result.throughput, 2),
      'CPU µs/event': fmt(result.cpuUsPerCall, 1),
      'CPU vs none': fmt(result.cpuUsPerCall / (m.none as LoadResult).cpuUsPerCall, 2),
      'events per checkpoint': fmt(records / Math.max(1, checkpoints), 1),
      'checkpoint bytes / record bytes': fmt(checkpointBytes / recordBytes, 4),
    });
  }
  process.stdout.write(
    `\nCheckpoint cadence (one caller, head signed on every append; baseline without checkpoints: ${fmt(1e6 / (m.none as LoadResult).throughput, 1)} µs/event, CPU ${fmt((m.none as LoadResult).cpuUsPerCall, 1)} µs/event). A checkpoint is taken in the background, one at a time, so "every 1" means as often as one can finish.\n`,
  );
  process.stdout.write(`${table(cadence)}\n`);
  await r.cleanup();
}
