// Signing keys for credentials. Each key has a kid (its RFC 7638 thumbprint);
// the first key in the keyring signs, all are published in the JWKS.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { calculateJwkThumbprint, importPKCS8, type CryptoKey, type JWK } from 'jose';
import { CountersignError } from '../errors.js';

export type SigningAlgorithm = 'ES256' | 'EdDSA';

export interface SigningKey {
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly privateKey: CryptoKey;
  /** Public JWK with kid, alg and use. */
  readonly publicJwk: JWK;
}

function keyError(source: string, message: string): CountersignError {
  return new CountersignError('invalid_argument', 'ERR_SIGNING_KEY_INVALID', `signing key ${source}: ${message}`, { source });
}

/** Parses a PKCS#8 PEM private key: EC P-256 (ES256) or Ed25519 (EdDSA). */
export async function parseSigningKey(pem: string, source: string): Promise<SigningKey> {
  let keyObject;
  try {
    keyObject = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw keyError(source, 'not a PEM private key');
  }
  let alg: SigningAlgorithm;
  if (keyObject.asymmetricKeyType === 'ec' && keyObject.asymmetricKeyDetails?.namedCurve === 'prime256v1') alg = 'ES256';
  else if (keyObject.asymmetricKeyType === 'ed25519') alg = 'EdDSA';
  else throw keyError(source, `unsupported key type ${keyObject.asymmetricKeyType ?? 'unknown'}; expected EC P-256 (ES256) or Ed25519 (EdDSA)`);
  const pkcs8 = keyObject.export({ format: 'pem', type: 'pkcs8' }).toString();
  const privateKey = await importPKCS8(pkcs8, alg);
  const jwk = createPublicKey(keyObject).export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  return { kid, alg, privateKey, publicJwk: { ...jwk, kid, alg, use: 'sig' } };
}

export async function loadSigningKey(file: string): Promise<SigningKey> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (e) {
    throw keyError(file, `cannot read: ${(e as Error).message}`);
  }
  return parseSigningKey(pem, file);
}

export class Keyring {
  constructor(readonly keys: readonly SigningKey[]) {
    if (keys.length === 0) throw new CountersignError('invalid_argument', 'ERR_SIGNING_KEY_INVALID', 'keyring: at least one signing key is needed');
  }

  /** The key that signs new credentials. */
  get active(): SigningKey {
    return this.keys[0] as SigningKey;
  }

  jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => k.publicJwk) };
  }
}
