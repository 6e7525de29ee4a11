// One credential, one string. An ECDSA signature (r, s) has a twin (r, n - s)
// that verifies just as well, and base64url text whose last character carries
// unused bits has twins that decode to the same bytes: either way a third party
// can turn a credential into a different string that is still "valid", which
// defeats anything keyed by the token text (replay caches, logs, deny lists).
// The broker signs only canonical strings (low S, RFC 4648 canonical base64url,
// as Bitcoin's BIP 62/146 and Ethereum's EIP-2 require for the same reason), and
// the verify library and Broker.RedeemCredential refuse any other.
// EdDSA (RFC 8032) is not malleable in S: verifiers must refuse S >= L, and
// OpenSSL does; only its encoding is checked here.

/** The order n of the P-256 group (FIPS 186-4, D.1.2.3). */
export const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const P256_HALF_ORDER = P256_ORDER >> 1n;

const toBigInt = (bytes: Uint8Array): bigint => BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);
const toBytes = (n: bigint, length: number): Buffer => Buffer.from(n.toString(16).padStart(length * 2, '0'), 'hex');

/** Whether text is the one RFC 4648 base64url form (no padding, unused bits zero) of the bytes it decodes to. */
export function isCanonicalBase64url(text: string): boolean {
  return /^[A-Za-z0-9_-]*$/.test(text) && Buffer.from(text, 'base64url').toString('base64url') === text;
}

/**
 * Why the signature of a compact JWS is not the one canonical string for its
 * algorithm, or undefined when it is. Call it on a token whose signature has
 * been verified (alg is its protected header's "alg").
 */
export function nonCanonicalSignature(token: string, alg: string): string | undefined {
  const signature = token.slice(token.lastIndexOf('.') + 1);
  if (!isCanonicalBase64url(signature))
    return 'the signature is not in canonical base64url (its last character carries bits that are not zero)';
  if (alg === 'ES256') {
    const bytes = Buffer.from(signature, 'base64url');
    if (bytes.length !== 64) return `an ES256 signature is 64 bytes, not ${bytes.length}`;
    if (toBigInt(bytes.subarray(32)) > P256_HALF_ORDER)
      return 'the ECDSA signature is not in low-S form (s > n/2): it is the malleated twin of another signature';
  }
  return undefined;
}

/** The same token with its ES256 signature in low-S form (r, min(s, n - s)); other algorithms unchanged. */
export function withLowS(token: string, alg: string): string {
  if (alg !== 'ES256') return token;
  const dot = token.lastIndexOf('.');
  const bytes = Buffer.from(token.slice(dot + 1), 'base64url');
  if (bytes.length !== 64) throw new TypeError(`an ES256 signature is 64 bytes, not ${bytes.length}`);
  const s = toBigInt(bytes.subarray(32));
  if (s <= P256_HALF_ORDER) return token;
  const low = Buffer.concat([bytes.subarray(0, 32), toBytes(P256_ORDER - s, 32)]);
  return `${token.slice(0, dot + 1)}${low.toString('base64url')}`;
}
