// What a resource server runs before doing what a credential authorizes: the
// signature (from the broker's JWKS), the token type, issuer, audience, expiry,
// the certificate the caller presented, and the exact operation, resource and
// parameters.
import { X509Certificate } from 'node:crypto';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import {
  AUTHORIZATION_DETAILS_TYPE,
  CREDENTIAL_TYPE,
  certificateThumbprint,
  parametersDigest,
  type CredentialClaims,
  type JsonObject,
  type OperationDetails,
} from '@countersign/proto';

export const ALLOWED_ALGORITHMS = ['ES256', 'EdDSA'] as const;
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30;
export const MAX_CLOCK_TOLERANCE_SECONDS = 300;
export const MAX_TOKEN_LENGTH = 16 * 1024;

export type VerifyErrorCode =
  | 'ERR_CREDENTIAL_MALFORMED'
  | 'ERR_CREDENTIAL_SIGNATURE'
  | 'ERR_CREDENTIAL_UNKNOWN_KEY'
  | 'ERR_CREDENTIAL_ALGORITHM'
  | 'ERR_CREDENTIAL_TYPE'
  | 'ERR_CREDENTIAL_ISSUER'
  | 'ERR_CREDENTIAL_AUDIENCE'
  | 'ERR_CREDENTIAL_EXPIRED'
  | 'ERR_CREDENTIAL_NOT_YET_VALID'
  | 'ERR_CREDENTIAL_CLAIMS'
  | 'ERR_CREDENTIAL_CERTIFICATE_MISMATCH'
  | 'ERR_CREDENTIAL_OPERATION_MISMATCH'
  | 'ERR_CREDENTIAL_RESOURCE_MISMATCH'
  | 'ERR_CREDENTIAL_PARAMETERS_MISMATCH';

export class CredentialVerificationError extends Error {
  override readonly name = 'CredentialVerificationError';
  constructor(
    readonly code: VerifyErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface VerifyOptions {
  /** The broker's JWKS document, or a key getter such as jose's createRemoteJWKSet(). */
  jwks: JSONWebKeySet | JWTVerifyGetKey;
  /** This resource server's audience; the credential's "aud" must contain it. */
  audience: string;
  /** Expected "iss"; checked when given. */
  issuer?: string | undefined;
  /** The certificate the caller presented (PEM or DER); when given, cnf.x5t#S256 must match it. */
  clientCertificate?: string | Uint8Array | undefined;
  /** The arguments about to be used; when given, their digest must match. */
  parameters?: JsonObject | undefined;
  /** When given, must equal the authorized operation / resource. */
  operation?: string | undefined;
  resource?: string | undefined;
  /** Allowed clock skew in seconds (default 30, at most 300). */
  clockToleranceSeconds?: number | undefined;
  /** Current time for the check (tests); default now. */
  currentDate?: Date | undefined;
}

export interface VerifiedCredential {
  claims: CredentialClaims;
  details: OperationDetails;
  kid: string | undefined;
  alg: string;
}

const fail = (code: VerifyErrorCode, message: string, cause?: unknown): never => {
  throw new CredentialVerificationError(code, `credential: ${message}`, cause === undefined ? undefined : { cause });
};

function derOf(certificate: string | Uint8Array): Buffer {
  try {
    return Buffer.from(new X509Certificate(typeof certificate === 'string' ? certificate : Buffer.from(certificate)).raw);
  } catch (e) {
    return fail('ERR_CREDENTIAL_CERTIFICATE_MISMATCH', 'the presented client certificate cannot be parsed', e);
  }
}

function mapJoseError(e: unknown): never {
  if (e instanceof joseErrors.JWTExpired) return fail('ERR_CREDENTIAL_EXPIRED', `expired (${e.message})`, e);
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    if (e.claim === 'aud') return fail('ERR_CREDENTIAL_AUDIENCE', `audience does not match (${e.message})`, e);
    if (e.claim === 'iss') return fail('ERR_CREDENTIAL_ISSUER', `issuer does not match (${e.message})`, e);
    if (e.claim === 'typ') return fail('ERR_CREDENTIAL_TYPE', `token type is not ${CREDENTIAL_TYPE}`, e);
    if (e.claim === 'nbf' || e.claim === 'iat') return fail('ERR_CREDENTIAL_NOT_YET_VALID', `not yet valid (${e.message})`, e);
    return fail('ERR_CREDENTIAL_CLAIMS', e.message, e);
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return fail('ERR_CREDENTIAL_ALGORITHM', `algorithm not allowed; expected one of ${ALLOWED_ALGORITHMS.join(', ')}`, e);
  if (e instanceof joseErrors.JWKSNoMatchingKey) return fail('ERR_CREDENTIAL_UNKNOWN_KEY', 'signed by a key that is not in the JWKS', e);
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return fail('ERR_CREDENTIAL_SIGNATURE', 'signature does not verify', e);
  if (e instanceof joseErrors.JWSInvalid || e instanceof joseErrors.JWTInvalid) return fail('ERR_CREDENTIAL_MALFORMED', e.message, e);
  if (e instanceof CredentialVerificationError) throw e;
  return fail('ERR_CREDENTIAL_MALFORMED', (e as Error).message ?? String(e), e);
}

/** Verifies a Countersign credential; returns its claims or throws a CredentialVerificationError. */
export async function verifyCredential(token: string, options: VerifyOptions): Promise<VerifiedCredential> {
  if (typeof token !== 'string' || token.length === 0) fail('ERR_CREDENTIAL_MALFORMED', 'token is empty');
  if (token.length > MAX_TOKEN_LENGTH) fail('ERR_CREDENTIAL_MALFORMED', `token is ${token.length} characters, at most ${MAX_TOKEN_LENGTH} are accepted`);
  const tolerance = Math.min(options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS, MAX_CLOCK_TOLERANCE_SECONDS);
  const getKey = typeof options.jwks === 'function' ? options.jwks : createLocalJWKSet(options.jwks);
  let result;
  try {
    result = await jwtVerify(token, getKey, {
      algorithms: [...ALLOWED_ALGORITHMS],
      typ: CREDENTIAL_TYPE,
      audience: options.audience,
      ...(options.issuer === undefined ? {} : { issuer: options.issuer }),
      clockTolerance: tolerance,
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'authorization_details', 'cnf'],
      ...(options.currentDate === undefined ? {} : { currentDate: options.currentDate }),
    });
  } catch (e) {
    return mapJoseError(e);
  }
  const claims = result.payload as unknown as CredentialClaims;
  const details = Array.isArray(claims.authorization_details)
    ? claims.authorization_details.find((d) => d?.type === AUTHORIZATION_DETAILS_TYPE)
    : undefined;
  if (details === undefined || typeof details.parameters_digest !== 'string') {
    return fail('ERR_CREDENTIAL_CLAIMS', `no authorization_details entry of type ${AUTHORIZATION_DETAILS_TYPE}`);
  }
  const boundThumbprint = claims.cnf?.['x5t#S256'];
  if (typeof boundThumbprint !== 'string') return fail('ERR_CREDENTIAL_CLAIMS', 'cnf.x5t#S256 is missing');
  if (options.clientCertificate !== undefined && certificateThumbprint(derOf(options.clientCertificate)) !== boundThumbprint) {
    fail('ERR_CREDENTIAL_CERTIFICATE_MISMATCH', 'bound to a different client certificate than the one presented');
  }
  if (options.operation !== undefined && details.operation !== options.operation) {
    fail('ERR_CREDENTIAL_OPERATION_MISMATCH', `authorizes operation ${JSON.stringify(details.operation)}, not ${JSON.stringify(options.operation)}`);
  }
  if (options.resource !== undefined && details.resource !== options.resource) {
    fail('ERR_CREDENTIAL_RESOURCE_MISMATCH', `authorizes resource ${JSON.stringify(details.resource)}, not ${JSON.stringify(options.resource)}`);
  }
  if (options.parameters !== undefined && parametersDigest(options.parameters) !== details.parameters_digest) {
    fail('ERR_CREDENTIAL_PARAMETERS_MISMATCH', 'the parameters differ from the ones that were authorized');
  }
  return { claims, details, kid: result.protectedHeader.kid, alg: result.protectedHeader.alg };
}
