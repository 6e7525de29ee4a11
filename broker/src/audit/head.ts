// The signed chain head. Every append stores, with the new head, a JWS over it
// (seq, hash, the checkpoint it knew of), signed with the credential signing
// key. Someone who can write to Redis can still rebuild a consistent chain, but
// cannot sign its head: a rewritten, cut or extended chain no longer ends where
// the signature says. What they can do is put back a head (with its signature)
// they saw earlier, after cutting the chain to it; docs/audit.md says how that
// is caught (a running broker notices, and the copies outside Redis show it).
//
// The head's `typ` differs from a checkpoint's, so a checkpoint (kept forever in
// Redis) cannot stand in for a head.
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { ChainHead } from './chain.js';
import { signCompactJws, type AuditKeyring } from './jws.js';

export const HEAD_TYPE = 'countersign-audit-head+jwt';
const ALGORITHMS = ['ES256', 'EdDSA'];

export interface HeadClaims {
  iss: string;
  seq: number;
  hash: string;
  /** A checkpoint seq the chain had reached when this head was signed (0: none known); the checkpoint must exist. */
  checkpoint_seq: number;
  /** Signing time, seconds. */
  iat: number;
}

/** The head as stored in Redis ({prefix}audit:head). */
export interface StoredHead extends ChainHead {
  /** The head's JWS; undefined when missing. */
  sig: string | undefined;
  /** The newest checkpoint stored (0: none). */
  checkpointSeq: number;
  /** The seq of the first record in the Redis list (1, or more after a restart on an empty Redis). */
  firstSeq: number;
}

/** Signs heads as the broker appends them; a no-op signer exists only for benchmarks. */
export interface HeadSigner {
  sign(head: ChainHead, checkpointSeq: number, now: number): string;
  /** Whether `sig` is a valid head signature for exactly this head (never throws). */
  verify(sig: string | undefined, head: ChainHead): Promise<HeadVerification>;
}

export type HeadVerification =
  | { ok: true; claims: HeadClaims }
  | {
      ok: false;
      code: 'ERR_AUDIT_HEAD_UNSIGNED' | 'ERR_AUDIT_HEAD_SIGNATURE' | 'ERR_AUDIT_HEAD_MISMATCH';
      reason: string;
    };

/** Checks a head signature against a key set and the head it should cover; never throws. */
export async function verifyHeadSignature(
  sig: string | undefined,
  getKey: JWTVerifyGetKey,
  head: ChainHead | undefined,
): Promise<HeadVerification> {
  if (sig === undefined || sig === '')
    return { ok: false, code: 'ERR_AUDIT_HEAD_UNSIGNED', reason: 'the head carries no signature' };
  let kid: string | undefined;
  try {
    decodeJwt(sig);
    kid = decodeProtectedHeader(sig).kid;
  } catch {
    return { ok: false, code: 'ERR_AUDIT_HEAD_SIGNATURE', reason: 'the head signature is not a compact JWS' };
  }
  let claims: HeadClaims;
  try {
    const { payload } = await jwtVerify(sig, getKey, { algorithms: ALGORITHMS, typ: HEAD_TYPE });
    if (
      !Number.isSafeInteger(payload.seq) ||
      typeof payload.hash !== 'string' ||
      !/^[0-9a-f]{64}$/.test(payload.hash)
    ) {
      return {
        ok: false,
        code: 'ERR_AUDIT_HEAD_SIGNATURE',
        reason: 'the head signature is valid, but its seq or hash is malformed',
      };
    }
    claims = {
      ...(payload as unknown as HeadClaims),
      checkpoint_seq: Number.isSafeInteger(payload.checkpoint_seq) ? (payload.checkpoint_seq as number) : 0,
    };
  } catch (e) {
    const reason =
      e instanceof joseErrors.JWKSNoMatchingKey
        ? `the head is signed by unknown key ${JSON.stringify(kid ?? null)} (give audit verify the JWKS that held it)`
        : e instanceof joseErrors.JWSSignatureVerificationFailed
          ? `the head signature does not verify with key ${JSON.stringify(kid ?? null)} (forged or altered)`
          : e instanceof joseErrors.JWTClaimValidationFailed && e.claim === 'typ'
            ? `the head signature is not a head statement (typ is not ${HEAD_TYPE}; a checkpoint cannot stand in for a head)`
            : `the head signature does not verify: ${(e as Error).message}`;
    return { ok: false, code: 'ERR_AUDIT_HEAD_SIGNATURE', reason };
  }
  if (head !== undefined && (claims.seq !== head.seq || claims.hash !== head.hash)) {
    return {
      ok: false,
      code: 'ERR_AUDIT_HEAD_MISMATCH',
      reason: `the head signature covers seq ${claims.seq} (hash ${claims.hash.slice(0, 12)}…), but the head is at seq ${head.seq} (hash ${head.hash.slice(0, 12)}…)`,
    };
  }
  return { ok: true, claims };
}

/** How many of its own latest head signatures a signer remembers (an append signs one). */
const SIGNED_HEADS_KEPT = 16;

/** Signs heads with the keyring's current signing key; verifies with every key it holds. */
export class KeyringHeadSigner implements HeadSigner {
  private readonly getKey: JWTVerifyGetKey;
  /** Heads already verified (seq:hash:sig), so a replica re-reading the same head does not verify it twice. */
  private readonly verified = new Map<string, HeadClaims>();
  /**
   * The last heads this process signed (seq:hash:sig) and their claims. More than the latest:
   * the checkpointer reads the head back while the next append (already signed) is in flight.
   */
  private readonly signed = new Map<string, HeadClaims>();

  constructor(
    private readonly keyring: AuditKeyring,
    private readonly issuer: string,
    getKey: JWTVerifyGetKey,
  ) {
    this.getKey = getKey;
  }

  sign(head: ChainHead, checkpointSeq: number, now: number): string {
    const claims: HeadClaims = {
      iss: this.issuer,
      seq: head.seq,
      hash: head.hash,
      checkpoint_seq: checkpointSeq,
      iat: Math.floor(now / 1000),
    };
    const sig = signCompactJws(this.keyring.signingKey(now), HEAD_TYPE, claims as unknown as Record<string, unknown>);
    // A head this process signed needs no verifying when it reads it back (the checkpointer
    // does, every N events): the last SIGNED_HEADS_KEPT are remembered, anything else is checked.
    if (this.signed.size >= SIGNED_HEADS_KEPT) this.signed.delete(this.signed.keys().next().value as string);
    this.signed.set(`${head.seq}:${head.hash}:${sig}`, claims);
    return sig;
  }

  async verify(sig: string | undefined, head: ChainHead): Promise<HeadVerification> {
    const cacheKey = `${head.seq}:${head.hash}:${sig ?? ''}`;
    const known = this.signed.get(cacheKey) ?? this.verified.get(cacheKey);
    if (known !== undefined) return { ok: true, claims: known };
    const result = await verifyHeadSignature(sig, this.getKey, head);
    if (result.ok) {
      if (this.verified.size >= 64) this.verified.clear();
      this.verified.set(cacheKey, result.claims);
    }
    return result;
  }
}

/** Signs nothing: for the benchmark's baseline only (a chain without a signed head fails audit verify). */
export const UNSIGNED_HEADS: HeadSigner = {
  sign: () => '',
  verify: async () => ({ ok: false, code: 'ERR_AUDIT_HEAD_UNSIGNED', reason: 'heads are not signed' }),
};
