// The chain head's signature is made with node:crypto (audit/jws.ts), not jose,
// because it is signed on every append. Differential test: jose must accept
// every JWS made that way, for both algorithms the broker signs with, and the
// ES256 signatures must be low-S (the form strict verifiers require).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { HEAD_TYPE, KeyringHeadSigner, verifyHeadSignature } from '../src/audit/head.js';
import { signCompactJws } from '../src/audit/jws.js';
import { generateSigningKeyPem, Keyring, parseSigningKey, type SigningAlgorithm } from '../src/credentials/keys.js';

const P256_HALF_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n >> 1n;

describe('head signatures (node:crypto) against jose', () => {
  for (const alg of ['ES256', 'EdDSA'] as SigningAlgorithm[]) {
    it(`${alg}: jose verifies every signature, with the key's alg, kid and the head typ`, async () => {
      const key = await parseSigningKey(generateSigningKeyPem(alg), `${alg}.pem`);
      const jwks = createLocalJWKSet({ keys: [key.publicJwk] });
      for (let i = 0; i < 200; i++) {
        const payload = {
          iss: 'spiffe://example.org/countersign/broker',
          seq: i + 1,
          hash: i.toString(16).padStart(64, '0'),
          checkpoint_seq: i,
          iat: 1_790_000_000 + i,
          note: 'é€😀',
        };
        const jws = signCompactJws(key, HEAD_TYPE, payload);
        const { payload: verified, protectedHeader } = await jwtVerify(jws, jwks, {
          algorithms: [alg],
          typ: HEAD_TYPE,
        });
        assert.deepEqual(verified, payload);
        assert.deepEqual(protectedHeader, { alg, kid: key.kid, typ: HEAD_TYPE });
        if (alg === 'ES256') {
          const s = BigInt(
            `0x${Buffer.from(jws.split('.')[2] as string, 'base64url')
              .subarray(32)
              .toString('hex')}`,
          );
          assert.ok(s <= P256_HALF_N, 'low-S');
        }
      }
    });
  }

  it('a signed head verifies for exactly its seq and hash, with the keyring that signed it only', async () => {
    const keyring = new Keyring([await parseSigningKey(generateSigningKeyPem(), 'k.pem')], { maxTtlMs: 60_000 });
    const other = new Keyring([await parseSigningKey(generateSigningKeyPem(), 'other.pem')], { maxTtlMs: 60_000 });
    const signer = new KeyringHeadSigner(keyring, 'spiffe://example.org/b', createLocalJWKSet(keyring.allPublicJwks()));
    const head = { seq: 7, hash: 'c'.repeat(64) };
    const sig = signer.sign(head, 5, Date.UTC(2026, 0, 1));
    const ok = await signer.verify(sig, head);
    assert.equal(ok.ok && ok.claims.checkpoint_seq, 5);
    assert.deepEqual(
      await signer.verify(sig, { seq: 8, hash: head.hash }).then((v) => !v.ok && v.code),
      'ERR_AUDIT_HEAD_MISMATCH',
    );
    assert.deepEqual(await signer.verify(undefined, head).then((v) => !v.ok && v.code), 'ERR_AUDIT_HEAD_UNSIGNED');
    const foreign = await verifyHeadSignature(sig, createLocalJWKSet(other.allPublicJwks()), head);
    assert.equal(!foreign.ok && foreign.code, 'ERR_AUDIT_HEAD_SIGNATURE');
  });

  it('remembers its own recent heads, but still checks what it did not sign', async () => {
    const keyring = new Keyring([await parseSigningKey(generateSigningKeyPem(), 'k.pem')], { maxTtlMs: 60_000 });
    let lookups = 0;
    const jwks = createLocalJWKSet(keyring.allPublicJwks());
    const signer = new KeyringHeadSigner(keyring, 'spiffe://example.org/b', (...args) => {
      lookups++;
      return jwks(...args);
    });
    const now = Date.UTC(2026, 0, 1);
    const heads = Array.from({ length: 20 }, (_, i) => ({ seq: i + 1, hash: i.toString(16).padStart(64, '0') }));
    const sigs = heads.map((h) => signer.sign(h, 0, now));
    // The checkpointer reads a head back while the next appends are already signed: no verification for those.
    for (const i of [19, 18, 10, 4]) assert.equal((await signer.verify(sigs[i], heads[i]!)).ok, true);
    assert.equal(lookups, 0);
    // Older than the ones remembered: verified with the key set.
    assert.equal((await signer.verify(sigs[0], heads[0]!)).ok, true);
    assert.equal(lookups, 1);
    // A remembered signature over another head, or an altered one, is not taken on trust.
    assert.equal((await signer.verify(sigs[19], heads[18]!)).ok, false);
    const altered = `${sigs[19]!.slice(0, -2)}${sigs[19]!.endsWith('A') ? 'B' : 'A'}A`;
    assert.equal((await signer.verify(altered, heads[19]!)).ok, false);
  });
});
