// The audit event that records a credential leaving the broker. Whoever hands
// out a credential (the allow path, an approved request being collected) appends
// this, with the decision that justified it, before the caller gets the token.
import type { CredentialClaims } from '@countersign/proto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import type { AuditEvent } from '../audit/events.js';
import { sha256 } from '../digest.js';

/**
 * Built from the token itself when only the token is at hand (a collector that
 * finds a credential another one stored records exactly the same thing), or from
 * the claims and kid the minter just produced, which saves decoding it again.
 */
export function credentialIssuedEvent(
  requestId: string,
  token: string,
  minted?: { claims: CredentialClaims; kid: string },
): AuditEvent {
  const claims = minted?.claims ?? (decodeJwt(token) as unknown as CredentialClaims);
  const kid = minted?.kid ?? decodeProtectedHeader(token).kid;
  const details = claims.authorization_details[0];
  const event: AuditEvent = {
    type: 'credential_issued',
    request_id: requestId,
    jti: claims.jti,
    kid,
    subject: claims.sub,
    audience: claims.aud,
    issued_at: claims.iat * 1000,
    expires_at: claims.exp * 1000,
    operation: details?.operation,
    resource: details?.resource,
    parameters_digest: details?.parameters_digest,
    certificate_thumbprint: claims.cnf['x5t#S256'],
    // Lets whoever holds a token find its record without the token being stored.
    token_sha256: sha256(token, 'base64url'),
  };
  // Absent ones left out, not undefined: the event is then canonicalised without a copy (audit/jcs.ts).
  if (claims.act?.sub !== undefined) event.on_behalf_of = claims.act.sub;
  if (claims.acr !== undefined) event.acr = claims.acr;
  if (claims.approval !== undefined) event.approval = claims.approval;
  return event;
}
