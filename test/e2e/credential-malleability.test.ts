// Issue 14, finding 8: one credential, one string. The high-S twin of an ES256
// signature, (r, n - s), verifies under plain ECDSA, and so does base64url text
// whose unused bits were flipped; both gave a second valid string for a real
// credential. The verify library and Broker.RedeemCredential refuse them, and
// the broker only issues low-S signatures.
import assert from 'node:assert/strict';
import { createPublicKey, verify as ecdsaVerify, type JsonWebKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { JSONWebKeySet } from 'jose';
import { CountersignClient, CountersignClientError } from '@countersign/agent';
import { CredentialVerificationError, verifyCredential } from '@countersign/agent/verify';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';

// The order of the P-256 group, written out here rather than taken from the code under test.
const N = BigInt('0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551');
const AUD = 'https://deploy.example.org';

const sOf = (token: string): bigint =>
  BigInt(
    `0x${Buffer.from(token.split('.')[2] ?? '', 'base64url')
      .subarray(32)
      .toString('hex')}`,
  );

/** The same token with (r, n - s) as its signature. */
function highLowTwin(token: string): string {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const bytes = Buffer.from(signature, 'base64url');
  const twinS = (N - sOf(token)).toString(16).padStart(64, '0');
  return `${header}.${payload}.${Buffer.concat([bytes.subarray(0, 32), Buffer.from(twinS, 'hex')]).toString('base64url')}`;
}

/** The same token with an unused bit of its signature's last base64url character set (it decodes to the same bytes). */
function encodingTwin(token: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(token.at(-1) as string);
  return token.slice(0, -1) + alphabet[last ^ 1];
}

/** Plain ECDSA over the JWS signing input, as any JWT library checks it. */
function ecdsaAccepts(token: string, jwks: JSONWebKeySet): boolean {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const kid = (JSON.parse(Buffer.from(header, 'base64url').toString()) as { kid: string }).kid;
  const jwk = jwks.keys.find((k) => k.kid === kid) as JsonWebKey;
  return ecdsaVerify(
    'sha256',
    Buffer.from(`${header}.${payload}`),
    { key: createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' },
    Buffer.from(signature, 'base64url'),
  );
}

describe('credential malleability', () => {
  let t: TestBroker;
  let client: CountersignClient;
  let jwks: JSONWebKeySet;
  const issue = async () => {
    const r = await client.requestOperation({
      operation: 'deploy',
      resource: 'staging/web',
      parameters: { version: '1.4.2' },
    });
    assert.equal(r.state, 'APPROVED', r.message);
    return r.token as string;
  };

  before(async () => {
    // The requester redeems here only to show that a twin does not use the credential up.
    t = await startTestBroker({ redeemers: [{ audience: AUD, workloads: ['spiffe://example.org/ci/deployer'] }] });
    const svid = t.svid('ci/deployer');
    client = new CountersignClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
    jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
  });
  after(async () => {
    client?.close();
    await t?.close();
  });

  it('issues only low-S ES256 signatures (the one canonical form)', async () => {
    const tokens = await Promise.all(Array.from({ length: 24 }, issue));
    const high = tokens.filter((token) => sOf(token) > N / 2n);
    assert.equal(high.length, 0, `${high.length} of ${tokens.length} credentials carry a high-S signature`);
    for (const token of tokens) assert.ok(ecdsaAccepts(token, jwks));
  });

  it('refuses the high-S twin of a real credential in the verify library and in RedeemCredential', async () => {
    const token = await issue();
    const twin = highLowTwin(token);
    const [high, low] = sOf(token) > N / 2n ? [token, twin] : [twin, token];
    assert.notEqual(high, low);
    assert.ok(ecdsaAccepts(high, jwks), 'the twin is a valid ECDSA signature: the attack is real');

    const refused = await verifyCredential(high, { jwks, audience: AUD }).then(
      () => assert.fail('the verify library accepted the high-S twin'),
      (e: unknown) => e,
    );
    assert.ok(refused instanceof CredentialVerificationError);
    assert.equal(refused.code, 'ERR_CREDENTIAL_SIGNATURE');
    assert.match(refused.message, /not in low-S form/);

    const redeemRefused = await client.redeemCredential(high).then(
      () => assert.fail('RedeemCredential accepted the high-S twin'),
      (e: unknown) => e,
    );
    assert.ok(redeemRefused instanceof CountersignClientError);
    assert.equal(redeemRefused.code, 'ERR_CREDENTIAL_INVALID');
    assert.match(redeemRefused.message, /not in low-S form/);

    // The credential itself is untouched: it verifies and redeems once.
    await verifyCredential(low, { jwks, audience: AUD });
    assert.ok((await client.redeemCredential(low)).credentialId);
  });

  it('refuses a twin in another base64url spelling of the same signature bytes', async () => {
    const token = await issue();
    const twin = encodingTwin(token);
    assert.notEqual(twin, token);
    assert.deepEqual(
      Buffer.from(twin.split('.')[2] as string, 'base64url'),
      Buffer.from(token.split('.')[2] as string, 'base64url'),
    );
    const refused = await verifyCredential(twin, { jwks, audience: AUD }).then(
      () => assert.fail('the verify library accepted the re-encoded twin'),
      (e: unknown) => e,
    );
    assert.equal((refused as CredentialVerificationError).code, 'ERR_CREDENTIAL_SIGNATURE');
    const redeemRefused = await client.redeemCredential(twin).then(
      () => assert.fail('RedeemCredential accepted the re-encoded twin'),
      (e: unknown) => e,
    );
    assert.equal((redeemRefused as CountersignClientError).code, 'ERR_CREDENTIAL_INVALID');
    assert.match((redeemRefused as Error).message, /canonical base64url/);
  });
});
