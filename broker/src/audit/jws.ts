// Compact JWS (RFC 7515) signed synchronously. jose signs through WebCrypto,
// which costs several times more per signature; the audit signs its chain head
// on every append and the minter signs every credential (both on the allow path),
// so they sign with node:crypto through the key's signJwsInput. Verification stays with jose, and a differential test
// checks that jose accepts what is made here (broker/test/audit-head.test.ts).
import type { JWK } from 'jose';

/** What the audit needs of a signing key (credentials/keys.ts SigningKey has it). */
export interface AuditSigningKey {
  readonly kid: string;
  readonly alg: 'ES256' | 'EdDSA';
  signJwsInput(input: string): Buffer;
}

/** The keys the audit signs and verifies with (credentials/keys.ts Keyring has them). */
export interface AuditKeyring {
  signingKey(now: number): AuditSigningKey;
  /** Every configured key's public half, retired ones included. */
  allPublicJwks(): { keys: JWK[] };
}

const b64url = (value: string): string => Buffer.from(value, 'utf8').toString('base64url');

/** The encoded protected header of each key, per typ: the same bytes for every signature. */
const headers = new WeakMap<AuditSigningKey, Map<string, string>>();

function encodedHeader(key: AuditSigningKey, typ: string): string {
  let byTyp = headers.get(key);
  if (byTyp === undefined) headers.set(key, (byTyp = new Map<string, string>()));
  let header = byTyp.get(typ);
  if (header === undefined) byTyp.set(typ, (header = b64url(JSON.stringify({ alg: key.alg, kid: key.kid, typ }))));
  return header;
}

/** A compact JWS over `payload` with the key's alg and kid and the given typ. */
export function signCompactJws(key: AuditSigningKey, typ: string, payload: Record<string, unknown>): string {
  const input = `${encodedHeader(key, typ)}.${b64url(JSON.stringify(payload))}`;
  return `${input}.${key.signJwsInput(input).toString('base64url')}`;
}
