// The credential format is part of the wire contract: the broker mints it and
// resource servers check it, so both sides take these definitions from here.
import * as crypto from 'node:crypto';
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/** JOSE header "typ" of every Countersign credential (RFC 9068). */
export const CREDENTIAL_TYPE = 'at+jwt';

/** The RFC 9396 authorization_details type that carries the operation. */
export const AUTHORIZATION_DETAILS_TYPE = 'countersign_operation';

/**
 * "acr" values: how the credential's operation was authorized (docs/credentials.md).
 * PASSKEY: every approval that counted was a user-verified passkey (WebAuthn)
 * assertion over a challenge derived from the request itself (phishing-resistant).
 */
export const ACR = {
  WORKLOAD: 'urn:countersign:acr:workload',
  HUMAN_APPROVAL: 'urn:countersign:acr:human-approval',
  PASSKEY: 'urn:countersign:acr:human-approval:phishing-resistant',
} as const;

/** "amr" (RFC 8176) of a passkey approval: proof of possession of a key, user presence, and a second factor (user verification). */
export const PASSKEY_AMR = ['pop', 'user', 'mfa'] as const;

export interface OperationDetails {
  type: typeof AUTHORIZATION_DETAILS_TYPE;
  operation: string;
  resource: string;
  /** base64url SHA-256 of the RFC 8785 canonical JSON of the parameters. */
  parameters_digest: string;
}

export interface ApprovalVoteEvidence {
  principal: string;
  channel: string;
  /** Seconds since the epoch. */
  at: number;
  step_up: string;
}

export interface ApprovalEvidence {
  request_id: string;
  rule: string;
  policy_digest: string;
  approvers: ApprovalVoteEvidence[];
  break_glass?: boolean;
}

export interface CredentialClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  iat: number;
  nbf: number;
  exp: number;
  jti: string;
  client_id: string;
  authorization_details: OperationDetails[];
  cnf: { 'x5t#S256': string };
  act?: { sub: string };
  approval?: ApprovalEvidence;
  acr?: string;
  /** RFC 8176 methods of the approval, when every approval was a passkey assertion. */
  amr?: string[];
  auth_time?: number;
}

/** A JSON object, as the parameters of an operation must be. */
export type JsonObject = { [key: string]: JsonValue };
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** RFC 8785 (JCS) canonical form of a JSON value. */
export function canonicalJson(value: JsonValue): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value cannot be canonicalized');
  return text;
}

/** base64url(SHA-256(JCS(parameters))): the digest that binds a credential to its arguments. */
export function parametersDigest(parameters: JsonObject): string {
  return digestOfCanonical(canonicalJson(parameters));
}

/** node:crypto's one-shot hash (Node 20.12+): about a third of a Hash object's cost for short text. */
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string, encoding: 'base64url') => string }).hash;

/** The parameters digest of text that is already in RFC 8785 form (the broker computes it on every request). */
export function digestOfCanonical(canonical: string): string {
  return oneShotHash !== undefined
    ? oneShotHash('sha256', canonical, 'base64url')
    : createHash('sha256').update(canonical, 'utf8').digest('base64url');
}

/** RFC 8705 certificate thumbprint: base64url SHA-256 of the DER certificate. */
export function certificateThumbprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('base64url');
}
