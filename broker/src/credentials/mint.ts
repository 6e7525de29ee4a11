// Minting a credential: a short-lived JWT bound to one operation, its exact
// parameters (RFC 8785 digest), and the caller's certificate (RFC 8705 cnf).
import {
  ACR,
  AUTHORIZATION_DETAILS_TYPE,
  PASSKEY_AMR,
  CREDENTIAL_TYPE,
  type ApprovalEvidence,
  type CredentialClaims,
} from '@countersign/proto';
import { signCompactJws } from '../audit/jws.js';
import type { Clock } from '../clock.js';
import { CountersignError } from '../errors.js';
import { randomId } from '../ids.js';
import type { Keyring } from './keys.js';

export interface MintInput {
  /** Caller SPIFFE ID ("sub" and "client_id"). */
  subject: string;
  /** x5t#S256 of the caller's certificate. */
  certificateThumbprint: string;
  /** When the caller's SVID stops being valid (ms); the credential never outlives it. */
  svidNotAfter: number;
  operation: string;
  resource: string;
  parametersDigest: string;
  audience: string;
  /** Upper bounds on the lifetime (ms): policy cap, requested TTL, ... undefined entries ignored. */
  ttlCaps: (number | undefined)[];
  onBehalfOf?: string;
  approval?: ApprovalEvidence;
  /** When the approval happened (ms), for auth_time; default now. */
  authTime?: number;
}

export interface MintedCredential {
  token: string;
  jti: string;
  /** The key that signed it. */
  kid: string;
  claims: CredentialClaims;
  expiresAt: number;
}

/** Below this, a credential would expire before anyone could use it. */
export const MIN_CREDENTIAL_TTL_MS = 5_000;

export class CredentialMinter {
  constructor(
    private readonly keyring: Keyring,
    private readonly options: {
      issuer: string;
      maxTtlMs: number;
      clock: Clock;
      /** Told which key signs each credential (key rotation is audited when it changes). */
      onKeyUsed?: (kid: string) => void;
    },
  ) {}

  async mint(input: MintInput): Promise<MintedCredential> {
    const now = this.options.clock.now();
    const svidLeft = input.svidNotAfter - now;
    const capped = Math.min(this.options.maxTtlMs, ...input.ttlCaps.filter((c): c is number => c !== undefined));
    const ttl = Math.min(capped, svidLeft);
    if (ttl < MIN_CREDENTIAL_TTL_MS) {
      // Say which bound is too short: the SVID (renew it) or the lifetime asked for (ask for more).
      if (svidLeft < MIN_CREDENTIAL_TTL_MS) {
        throw new CountersignError(
          'failed_precondition',
          'ERR_SVID_TOO_CLOSE_TO_EXPIRY',
          `the caller's SVID expires in ${Math.max(0, Math.floor(svidLeft / 1000))}s; renew it before asking for a credential`,
        );
      }
      throw new CountersignError(
        'failed_precondition',
        'ERR_CREDENTIAL_TTL_TOO_SHORT',
        `the credential would live ${Math.max(0, capped / 1000)}s (the shortest of credentials.max_ttl, the rule's ttl and requested_ttl), below the ${MIN_CREDENTIAL_TTL_MS / 1000}s minimum`,
      );
    }
    const iat = Math.floor(now / 1000);
    const exp = Math.floor((now + ttl) / 1000);
    const jti = randomId(16);
    const claims: CredentialClaims = {
      iss: this.options.issuer,
      sub: input.subject,
      aud: input.audience,
      iat,
      nbf: iat,
      exp,
      jti,
      client_id: input.subject,
      authorization_details: [
        {
          type: AUTHORIZATION_DETAILS_TYPE,
          operation: input.operation,
          resource: input.resource,
          parameters_digest: input.parametersDigest,
        },
      ],
      cnf: { 'x5t#S256': input.certificateThumbprint },
    };
    if (input.onBehalfOf) claims.act = { sub: input.onBehalfOf };
    if (input.approval) {
      claims.approval = input.approval;
      // Phishing-resistant only when every approval that counted was a passkey assertion bound to the request.
      const approvers = input.approval.approvers;
      const passkeys = approvers.length > 0 && approvers.every((a) => a.step_up === 'webauthn');
      claims.acr = passkeys ? ACR.PASSKEY : ACR.HUMAN_APPROVAL;
      if (passkeys) claims.amr = [...PASSKEY_AMR];
      claims.auth_time = Math.floor((input.authTime ?? now) / 1000);
    } else {
      claims.acr = ACR.WORKLOAD;
      claims.auth_time = iat;
    }
    const key = this.keyring.signingKey(now);
    this.options.onKeyUsed?.(key.kid);
    // Signed synchronously with node:crypto (WebCrypto through jose cost about a fifth of the
    // allow path's CPU, docs/performance.md); signJwsInput gives ES256 signatures in low-S form,
    // the one form verifiers accept, so no one can make a second valid string of this credential.
    const token = signCompactJws(key, CREDENTIAL_TYPE, claims as unknown as Record<string, unknown>);
    return { token, jti, kid: key.kid, claims, expiresAt: exp * 1000 };
  }
}
