// The audit event that records a credential leaving the broker. Whoever hands
// out a credential (the allow path, an approved request being collected) appends
// this, with the decision that justified it, before the caller gets the token.
import { createHash } from 'node:crypto';
import type { AuditEvent } from '../audit/events.js';
import type { MintedCredential } from './mint.js';

export function credentialIssuedEvent(requestId: string, credential: MintedCredential): AuditEvent {
  const { claims } = credential;
  const details = claims.authorization_details[0];
  return {
    type: 'credential_issued',
    request_id: requestId,
    jti: credential.jti,
    kid: credential.kid,
    subject: claims.sub,
    audience: claims.aud,
    issued_at: claims.iat * 1000,
    expires_at: credential.expiresAt,
    operation: details?.operation,
    resource: details?.resource,
    parameters_digest: details?.parameters_digest,
    certificate_thumbprint: claims.cnf['x5t#S256'],
    on_behalf_of: claims.act?.sub,
    acr: claims.acr,
    approval: claims.approval,
    // Lets whoever holds a token find its record without the token being stored.
    token_sha256: createHash('sha256').update(credential.token).digest('base64url'),
  };
}
