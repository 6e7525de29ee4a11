// Online single use (Broker.RedeemCredential): a resource server that wants a
// credential used once asks the broker to mark it. The approval behind it (or,
// for a credential allowed without approval, the credential itself) is marked
// atomically; a second redemption is refused with who redeemed it and when.
import { fileURLToPath } from 'node:url';
import { createLocalJWKSet, errors as joseErrors, jwtVerify } from 'jose';
import { CREDENTIAL_TYPE, nonCanonicalSignature, type CredentialClaims } from '@countersign/proto';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { Metrics } from '../observability/metrics.js';
import { CountersignError } from '../errors.js';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { loadScripts, registerScripts, type ScriptRunner } from '../redis/scripts.js';
import { SIGNING_ALGORITHMS, VERIFIER_MAX_SKEW_MS, type Keyring } from './keys.js';
import type { Redeemers } from './redeemers.js';

export const MAX_REDEEM_TOKEN_LENGTH = 16 * 1024;
/** Clock skew allowed when checking the credential's lifetime. */
export const REDEEM_CLOCK_TOLERANCE_SECONDS = 30;

const CREDENTIALS_LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url));
const ID = /^[A-Za-z0-9_-]{1,128}$/;

export interface Redemption {
  jti: string;
  /** The approval request behind the credential; "" for one allowed without approval. */
  requestId: string;
  /** SPIFFE ID of the workload that redeemed it. */
  by: string;
  /** ms since the epoch. */
  at: number;
}

export class RedemptionService {
  private readonly scripts: ScriptRunner;

  constructor(
    private readonly deps: {
      redis: Redis;
      keys: Keys;
      keyring: Keyring;
      audit: AuditLog;
      clock: Clock;
      issuer: string;
      /** Who may redeem, per audience (credentials.redeemers); nobody when not configured. */
      redeemers: Redeemers;
      metrics?: Metrics;
    },
  ) {
    this.scripts = registerScripts(deps.redis, loadScripts(CREDENTIALS_LUA_DIR));
  }

  private async verify(token: string, now: number): Promise<CredentialClaims> {
    if (token === '')
      throw new CountersignError('invalid_argument', 'ERR_INVALID_FIELD', 'token: is required', { field: 'token' });
    if (token.length > MAX_REDEEM_TOKEN_LENGTH) {
      throw new CountersignError(
        'invalid_argument',
        'ERR_INVALID_FIELD',
        `token: ${token.length} characters, at most ${MAX_REDEEM_TOKEN_LENGTH}`,
        { field: 'token' },
      );
    }
    try {
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(this.deps.keyring.jwks(now)), {
        algorithms: [...SIGNING_ALGORITHMS],
        typ: CREDENTIAL_TYPE,
        issuer: this.deps.issuer,
        clockTolerance: REDEEM_CLOCK_TOLERANCE_SECONDS,
        currentDate: new Date(now),
        requiredClaims: ['jti', 'exp', 'sub'],
      });
      const malleated = nonCanonicalSignature(token, protectedHeader.alg);
      if (malleated !== undefined) throw new Error(malleated);
      if (typeof payload.jti !== 'string' || !ID.test(payload.jti)) throw new Error('jti is malformed');
      return payload as unknown as CredentialClaims;
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) {
        throw new CountersignError(
          'failed_precondition',
          'ERR_CREDENTIAL_EXPIRED',
          `token: the credential expired (${e.message}); it cannot be redeemed`,
        );
      }
      throw new CountersignError(
        'invalid_argument',
        'ERR_CREDENTIAL_INVALID',
        `token: not a valid credential from this broker (${(e as Error).message})`,
        { field: 'token' },
      );
    }
  }

  async redeem(token: string, caller: { spiffeId: string }): Promise<Redemption> {
    const now = this.deps.clock.now();
    const claims = await this.verify(token, now);
    const requestId = claims.approval?.request_id ?? '';
    // Only a resource server of the credential's audience may use it up; anyone else holding a copy may not.
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    try {
      this.deps.redeemers.check(caller.spiffeId, audiences);
    } catch (e) {
      if (!(e instanceof CountersignError)) throw e;
      this.deps.metrics?.redemptions.inc({ outcome: 'forbidden' });
      await this.deps.audit.append({
        type: 'credential_redeemed',
        outcome: 'forbidden',
        code: e.code,
        jti: claims.jti,
        request_id: requestId || undefined,
        by: caller.spiffeId,
        audience: claims.aud,
        subject: claims.sub,
      });
      throw e;
    }
    // One approval, one use: every credential minted for the same approval shares its mark.
    const markId = requestId !== '' && ID.test(requestId) ? requestId : claims.jti;
    const key = this.deps.keys.redemption(markId);
    const record = JSON.stringify({ jti: claims.jti, request_id: requestId, by: caller.spiffeId, at: now });
    const rememberMs = Math.max(1000, claims.exp * 1000 - now + VERIFIER_MAX_SKEW_MS);
    const [code, stored] = (await redisCall('redeem credential', () =>
      this.scripts('redeemCredential', [key], [record, rememberMs]),
    )) as [number, string];

    if (code === 1) {
      try {
        await this.deps.audit.append({
          type: 'credential_redeemed',
          outcome: 'redeemed',
          jti: claims.jti,
          request_id: requestId || undefined,
          by: caller.spiffeId,
          subject: claims.sub,
        });
      } catch (e) {
        // Fail closed, but let the caller retry: the mark goes only if it is still ours.
        await redisCall('redeem credential', () => this.scripts('releaseRedemption', [key], [record])).catch(
          () => undefined,
        );
        throw e;
      }
      this.deps.metrics?.redemptions.inc({ outcome: 'redeemed' });
      return { jti: claims.jti, requestId, by: caller.spiffeId, at: now };
    }
    this.deps.metrics?.redemptions.inc({ outcome: 'refused' });

    const first = JSON.parse(stored) as { jti: string; request_id: string; by: string; at: number };
    await this.deps.audit.append({
      type: 'credential_redeemed',
      outcome: 'refused',
      jti: claims.jti,
      request_id: requestId || undefined,
      by: caller.spiffeId,
      first_redeemed_at: first.at,
      first_redeemed_by: first.by,
      first_jti: first.jti,
    });
    const what = requestId !== '' ? `the approval of request ${requestId}` : `this credential (${claims.jti})`;
    throw new CountersignError(
      'failed_precondition',
      'ERR_CREDENTIAL_ALREADY_REDEEMED',
      `${what} was already redeemed at ${new Date(first.at).toISOString()} by ${first.by}${first.jti !== claims.jti ? ` (credential ${first.jti})` : ''}`,
      { redeemedAt: first.at, redeemedBy: first.by },
    );
  }
}
