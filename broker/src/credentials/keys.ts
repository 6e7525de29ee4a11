// Signing keys for credentials and audit checkpoints. Each key has a kid (its
// RFC 7638 thumbprint) and, optionally, the time it starts signing. Rotation
// needs no downtime and no coordination between replicas:
//
//   upcoming  activate_at in the future: published in the JWKS, does not sign yet
//   signing   the key with the latest activate_at that has passed (a key without
//             activate_at counts as active since forever)
//   retiring  replaced by a newer key less than max_ttl + 5 min ago: still
//             published, because credentials it signed may still be valid
//   expired   replaced longer ago than that: no longer published; remove its file
//
// Private keys are never logged: a SigningKey holds a non-extractable CryptoKey
// and its JSON form shows only the public half.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { calculateJwkThumbprint, importPKCS8, type CryptoKey, type JWK } from 'jose';
import { CountersignError } from '../errors.js';

export type SigningAlgorithm = 'ES256' | 'EdDSA';
export const SIGNING_ALGORITHMS: readonly SigningAlgorithm[] = ['ES256', 'EdDSA'];

/** The most clock skew a verifier may allow (agents/verify caps it at 300 s): retired keys stay that much longer. */
export const VERIFIER_MAX_SKEW_MS = 300_000;

export interface SigningKey {
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly privateKey: CryptoKey;
  /**
   * Signs a JWS signing input synchronously (node:crypto, several times faster
   * than WebCrypto through jose): the JWS signature bytes, ES256 as r||s with a
   * low S. For the audit head, signed on every append (see credentials/jws.ts).
   */
  readonly signJwsInput: (input: string) => Buffer;
  /** Public JWK with kid, alg and use. */
  readonly publicJwk: JWK;
  /** Where it came from (a file path), for messages. */
  readonly source: string;
}

function keyError(source: string, message: string): CountersignError {
  return new CountersignError('invalid_argument', 'ERR_SIGNING_KEY_INVALID', `signing key ${source}: ${message}`, {
    source,
  });
}

/** Order of the P-256 group. */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

const P256_N_BYTES = Buffer.from(P256_N.toString(16).padStart(64, '0'), 'hex');
const P256_HALF_N_BYTES = Buffer.from((P256_N >> 1n).toString(16).padStart(64, '0'), 'hex');

/**
 * An ES256 signature (r||s) with s in the lower half of the group: the one form strict
 * verifiers accept. Big-endian byte arithmetic on the fresh signature buffer (once per
 * credential: no hex strings, no BigInt).
 */
export function lowS(signature: Buffer): Buffer {
  const s = signature.subarray(32, 64);
  if (Buffer.compare(s, P256_HALF_N_BYTES) <= 0) return signature;
  // s := n - s (n > s, so no borrow is left over).
  let borrow = 0;
  for (let i = 31; i >= 0; i--) {
    const d = (P256_N_BYTES[i] as number) - (s[i] as number) - borrow;
    borrow = d < 0 ? 1 : 0;
    s[i] = d & 0xff;
  }
  return signature;
}

/** Parses a PKCS#8 PEM private key: EC P-256 (ES256) or Ed25519 (EdDSA). */
export async function parseSigningKey(pem: string, source: string): Promise<SigningKey> {
  let keyObject;
  try {
    keyObject = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    // Never echo the content: it is (or is meant to be) a private key.
    throw keyError(source, 'not a PEM private key');
  }
  let alg: SigningAlgorithm;
  if (keyObject.asymmetricKeyType === 'ec' && keyObject.asymmetricKeyDetails?.namedCurve === 'prime256v1')
    alg = 'ES256';
  else if (keyObject.asymmetricKeyType === 'ed25519') alg = 'EdDSA';
  else
    throw keyError(
      source,
      `unsupported key type ${keyObject.asymmetricKeyType ?? 'unknown'}; expected EC P-256 (ES256) or Ed25519 (EdDSA)`,
    );
  const pkcs8 = keyObject.export({ format: 'pem', type: 'pkcs8' }).toString();
  const privateKey = await importPKCS8(pkcs8, alg);
  const jwk = createPublicKey(keyObject).export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  const publicJwk: JWK = { ...jwk, kid, alg, use: 'sig' };
  // The KeyObject stays in this closure: nothing that logs or serialises a SigningKey can reach it.
  const signJwsInput =
    alg === 'ES256'
      ? (input: string) =>
          lowS(sign('sha256', Buffer.from(input, 'utf8'), { key: keyObject, dsaEncoding: 'ieee-p1363' }))
      : (input: string) => sign(null, Buffer.from(input, 'utf8'), keyObject);
  return {
    kid,
    alg,
    privateKey,
    signJwsInput,
    publicJwk,
    source,
    toJSON: () => ({ kid, alg, source, publicJwk }),
  } as SigningKey;
}

export async function loadSigningKey(file: string): Promise<SigningKey> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw keyError(
      file,
      code === 'ENOENT'
        ? 'no such file (create one with: countersign-broker keys create --out FILE)'
        : `cannot read: ${code ?? 'error'}`,
    );
  }
  return parseSigningKey(pem, file);
}

/** A new private key as PKCS#8 PEM. */
export function generateSigningKeyPem(alg: SigningAlgorithm = 'ES256'): string {
  const { privateKey } =
    alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

export interface ScheduledKey {
  key: SigningKey;
  /** When it starts signing (ms); undefined = active since forever. */
  activateAt: number | undefined;
}

export type KeyState = 'upcoming' | 'signing' | 'retiring' | 'expired';

export interface KeyStatus {
  kid: string;
  alg: SigningAlgorithm;
  source: string;
  state: KeyState;
  activateAt: number | undefined;
  /** When a newer key took over (ms), for retiring/expired keys. */
  replacedAt: number | undefined;
  /** Until when it stays in the JWKS (ms), for retiring keys. */
  publishedUntil: number | undefined;
}

export class Keyring {
  /** Oldest first. */
  private readonly schedule: ScheduledKey[];
  /** How long a replaced key stays published: the longest credential lifetime plus verifier skew. */
  readonly retainMs: number;

  constructor(keys: readonly (ScheduledKey | SigningKey)[], options: { maxTtlMs: number }) {
    const scheduled = keys.map((k): ScheduledKey => ('key' in k ? k : { key: k, activateAt: undefined }));
    if (scheduled.length === 0)
      throw new CountersignError(
        'invalid_argument',
        'ERR_SIGNING_KEY_INVALID',
        'keyring: at least one signing key is needed',
      );
    const byKid = new Map<string, string>();
    for (const { key } of scheduled) {
      const other = byKid.get(key.kid);
      if (other !== undefined) throw keyError(key.source, `is the same key as ${other} (kid ${key.kid})`);
      byKid.set(key.kid, key.source);
    }
    const always = scheduled.filter((k) => k.activateAt === undefined);
    if (always.length > 1) {
      throw keyError(
        (always[1] as ScheduledKey).key.source,
        `only one key may omit activate_at, but ${always[0]?.key.source} does too; give the older key any past time (e.g. the day it was created) so the broker knows which one signs`,
      );
    }
    const times = new Map<number, string>();
    for (const k of scheduled) {
      if (k.activateAt === undefined) continue;
      const other = times.get(k.activateAt);
      if (other !== undefined)
        throw keyError(k.key.source, `activates at the same time as ${other}; activation times must differ`);
      times.set(k.activateAt, k.key.source);
    }
    this.schedule = [...scheduled].sort((a, b) => (a.activateAt ?? -Infinity) - (b.activateAt ?? -Infinity));
    this.retainMs = options.maxTtlMs + VERIFIER_MAX_SKEW_MS;
  }

  /** Every configured key, oldest first. */
  get keys(): SigningKey[] {
    return this.schedule.map((s) => s.key);
  }

  private signingIndex(now: number): number {
    let index = -1;
    this.schedule.forEach((s, i) => {
      if ((s.activateAt ?? -Infinity) <= now) index = i;
    });
    return index;
  }

  /** The key that signs at `now`; throws when none is active yet. */
  signingKey(now: number): SigningKey {
    const index = this.signingIndex(now);
    if (index === -1) {
      const first = this.schedule[0] as ScheduledKey;
      throw new CountersignError(
        'failed_precondition',
        'ERR_NO_SIGNING_KEY',
        `no signing key is active yet: the first one (${first.key.source}) activates at ${new Date(first.activateAt as number).toISOString()}`,
      );
    }
    return (this.schedule[index] as ScheduledKey).key;
  }

  status(now: number): KeyStatus[] {
    const signing = this.signingIndex(now);
    return this.schedule.map((s, i) => {
      const successor = this.schedule[i + 1];
      const replacedAt = i < signing ? successor?.activateAt : undefined;
      let state: KeyState;
      if (i > signing) state = 'upcoming';
      else if (i === signing) state = 'signing';
      else state = now < (replacedAt as number) + this.retainMs ? 'retiring' : 'expired';
      return {
        kid: s.key.kid,
        alg: s.key.alg,
        source: s.key.source,
        state,
        activateAt: s.activateAt,
        replacedAt,
        publishedUntil: replacedAt === undefined ? undefined : replacedAt + this.retainMs,
      };
    });
  }

  /** The JWKS to publish at `now`: upcoming, signing and retiring keys. */
  jwks(now: number): { keys: JWK[] } {
    const states = this.status(now);
    return { keys: this.schedule.filter((_, i) => states[i]?.state !== 'expired').map((s) => s.key.publicJwk) };
  }

  /** Every configured key's public half, expired ones included (for verifying old checkpoints). */
  allPublicJwks(): { keys: JWK[] } {
    return { keys: this.schedule.map((s) => s.key.publicJwk) };
  }

  toJSON(): unknown {
    return {
      keys: this.schedule.map((s) => ({
        kid: s.key.kid,
        alg: s.key.alg,
        source: s.key.source,
        activateAt: s.activateAt,
      })),
    };
  }
}
