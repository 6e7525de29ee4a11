// Signing keys: the schedule that makes rotation safe (published before signing,
// kept until what it signed has expired), configuration errors, key material
// that never shows up in logs, and the key_rotation audit event.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { RedisAuditLog } from '../src/audit/audit-log.js';
import { ManualClock } from '../src/clock.js';
import { parseConfig } from '../src/config/config.js';
import {
  generateSigningKeyPem,
  Keyring,
  lowS,
  parseSigningKey,
  VERIFIER_MAX_SKEW_MS,
  type SigningKey,
} from '../src/credentials/keys.js';
import { CredentialMinter } from '../src/credentials/mint.js';
import { KeyRotationRecorder } from '../src/credentials/rotation.js';
import { silentLogger } from '../src/observability/logger.js';
import { Keys } from '../src/redis/keys.js';
import { testRedis, type TestRedis } from './support/redis.js';
import { testHeadSigner } from './support/audit.js';

const HOUR = 3_600_000;
const T = Date.UTC(2026, 2, 1); // k2 activates here

const mintInput = {
  subject: 'spiffe://example.org/ci/deployer',
  certificateThumbprint: 'x5t',
  svidNotAfter: T + 48 * HOUR,
  operation: 'deploy',
  resource: 'prod/web',
  parametersDigest: 'digest',
  audience: 'https://deploy.example.org',
  ttlCaps: [HOUR],
};

describe('signing keys', () => {
  let k1: SigningKey;
  let k2: SigningKey;
  let ed: SigningKey;

  before(async () => {
    k1 = await parseSigningKey(generateSigningKeyPem('ES256'), 'k1.pem');
    k2 = await parseSigningKey(generateSigningKeyPem('ES256'), 'k2.pem');
    ed = await parseSigningKey(generateSigningKeyPem('EdDSA'), 'ed.pem');
  });

  it('publishes a new key before it signs, and keeps the old one until everything it signed has expired', async () => {
    const keyring = new Keyring(
      [
        { key: k1, activateAt: undefined },
        { key: k2, activateAt: T },
      ],
      { maxTtlMs: HOUR },
    );
    const kids = (now: number) => keyring.jwks(now).keys.map((k) => k.kid);

    assert.equal(keyring.signingKey(T - 1).kid, k1.kid);
    assert.deepEqual(kids(T - 1), [k1.kid, k2.kid], 'k2 is published before it signs');
    assert.equal(keyring.signingKey(T).kid, k2.kid);
    assert.deepEqual(kids(T + HOUR), [k1.kid, k2.kid], 'k1 stays while credentials it signed may live');
    assert.deepEqual(kids(T + HOUR + VERIFIER_MAX_SKEW_MS), [k2.kid], 'then it goes');
    assert.deepEqual(
      keyring.status(T + 2 * HOUR).map((s) => s.state),
      ['expired', 'signing'],
    );
  });

  it('keeps every credential verifiable from its issue to its expiry across a rotation', async () => {
    const keyring = new Keyring(
      [
        { key: k1, activateAt: T - 10 * HOUR },
        { key: k2, activateAt: T },
      ],
      { maxTtlMs: HOUR },
    );
    const clock = new ManualClock(T - 1000);
    const minter = new CredentialMinter(keyring, { issuer: 'iss', maxTtlMs: HOUR, clock });
    const old = await minter.mint(mintInput); // the last one k1 signs
    clock.set(T);
    const fresh = await minter.mint(mintInput);
    assert.equal(old.kid, k1.kid);
    assert.equal(fresh.kid, k2.kid);
    for (const credential of [old, fresh]) {
      for (let at = credential.claims.iat * 1000; at < credential.expiresAt; at += 5 * 60_000) {
        const jwks = createLocalJWKSet(keyring.jwks(at)); // what a verifier fetching at that moment gets
        await jwtVerify(credential.token, jwks, { currentDate: new Date(at), audience: mintInput.audience });
      }
    }
  });

  it('signs with EdDSA when the key is Ed25519', async () => {
    const keyring = new Keyring([ed], { maxTtlMs: HOUR });
    const minted = await new CredentialMinter(keyring, {
      issuer: 'iss',
      maxTtlMs: HOUR,
      clock: new ManualClock(T),
    }).mint(mintInput);
    const { protectedHeader } = await jwtVerify(minted.token, createLocalJWKSet(keyring.jwks(T)), {
      currentDate: new Date(T),
    });
    assert.equal(protectedHeader.alg, 'EdDSA');
    assert.equal(protectedHeader.kid, ed.kid);
  });

  it('refuses ambiguous schedules and says which file to fix', () => {
    assert.throws(() => new Keyring([k1, k2], { maxTtlMs: HOUR }), {
      code: 'ERR_SIGNING_KEY_INVALID',
      message: /signing key k2\.pem: only one key may omit activate_at/,
    });
    assert.throws(() => new Keyring([k1, k1], { maxTtlMs: HOUR }), { message: /k1\.pem: is the same key as k1\.pem/ });
    assert.throws(
      () =>
        new Keyring(
          [
            { key: k1, activateAt: T },
            { key: k2, activateAt: T },
          ],
          { maxTtlMs: HOUR },
        ),
      { message: /k2\.pem: activates at the same time as k1\.pem/ },
    );
    const future = new Keyring([{ key: k1, activateAt: T }], { maxTtlMs: HOUR });
    assert.throws(() => future.signingKey(T - 1), { code: 'ERR_NO_SIGNING_KEY' });
  });

  it('never puts private key material in JSON, logs or error messages', async () => {
    const pem = generateSigningKeyPem();
    const key = await parseSigningKey(pem, 'k.pem');
    const keyring = new Keyring([key], { maxTtlMs: HOUR });
    for (const text of [JSON.stringify(key), JSON.stringify(keyring), JSON.stringify({ key, keyring })]) {
      assert.doesNotMatch(text, /PRIVATE KEY|"d":/);
    }
    const broken = `${pem.slice(0, 80)}\n-----END PRIVATE KEY-----\n`; // truncated body
    await assert.rejects(parseSigningKey(broken, 'broken.pem'), (e: Error) => {
      assert.equal(e.message, 'signing key broken.pem: not a PEM private key');
      return true;
    });
  });

  it('reads activate_at from the configuration and rejects a time without a zone', () => {
    const base = `trust_domain: example.org
identity: { svid: { cert_file: a, key_file: b }, bundles: [{ trust_domain: example.org, file: c }] }
policy: { file: p }
credentials:
  default_audience: aud
  signing_keys:
    - file: k1.pem
    - file: k2.pem
`;
    const ok = parseConfig(`${base}      activate_at: 2026-03-01T00:00:00Z\n`, '/etc/cs/config.yaml');
    assert.equal(ok.credentials.signing_keys[1]?.activate_at, T);
    assert.equal(ok.audit.stdout, true);
    assert.equal(ok.audit.checkpoint.every_events, 100);
    assert.equal(ok.audit.checkpoint.interval, 60_000);
    assert.throws(() => parseConfig(`${base}      activate_at: 2026-03-01 00:00\n`, '/etc/cs/config.yaml'), {
      message: /config\.yaml:9:\d+: credentials\.signing_keys\[1\]\.activate_at: expected an RFC 3339 time with a zone/,
    });
  });
});

describe('low-S ES256 signatures', () => {
  const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
  const hex = (n: bigint) => n.toString(16).padStart(64, '0');
  it('keeps s at most n/2 and turns a high s into n - s, as BigInt arithmetic does', () => {
    const r = 'ab'.repeat(32);
    const cases = [1n, N >> 1n, (N >> 1n) + 1n, N - 1n, N - 0x100n, 0xffn << 200n];
    for (let i = 0; i < 2000; i++) cases.push(BigInt(`0x${randomBytes(32).toString('hex')}`) % N);
    for (const s of cases) {
      const out = lowS(Buffer.from(r + hex(s), 'hex')).toString('hex');
      assert.equal(out, r + hex(s <= N >> 1n ? s : N - s), hex(s));
    }
  });
});

describe('key rotation audit', () => {
  let r: TestRedis;
  before(async () => {
    r = await testRedis('keys');
  });
  after(async () => r?.cleanup());

  it('records the signing key once, and each change once, across replicas', async () => {
    const k1 = await parseSigningKey(generateSigningKeyPem(), 'k1.pem');
    const k2 = await parseSigningKey(generateSigningKeyPem(), 'k2.pem');
    const keyring = new Keyring(
      [
        { key: k1, activateAt: T - HOUR },
        { key: k2, activateAt: T },
      ],
      { maxTtlMs: HOUR },
    );
    const keys = new Keys(r.prefix);
    const clock = new ManualClock(T - 1000);
    const audit = new RedisAuditLog(r.redis, keys, clock, { heads: testHeadSigner(keyring) });
    const replica = () =>
      new KeyRotationRecorder({ redis: r.redis, keys, keyring, audit, clock, logger: silentLogger() });
    const [a, b] = [replica(), replica()];
    await Promise.all([a.check(), b.check(), a.check()]);
    clock.set(T);
    await Promise.all([a.check(), b.check()]);
    const events = (await r.redis.lrange(keys.auditChain(), 0, -1)).map(
      (l) => (JSON.parse(l) as { event: Record<string, unknown> }).event,
    );
    assert.deepEqual(
      events.map((e) => [e.type, e.signing_kid, e.previous_kid]),
      [
        ['key_rotation', k1.kid, null],
        ['key_rotation', k2.kid, k1.kid],
      ],
    );
    assert.deepEqual(events[1]?.published, [k1.kid, k2.kid]);
  });
});
