// What a resource server runs before doing what a credential authorizes: the
// signature (from the broker's JWKS), the token type, issuer, audience, expiry,
// the certificate the caller presented, and the exact operation, resource and
// parameters; optionally, that it is used only once (Broker.RedeemCredential).
import { X509Certificate } from 'node:crypto';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import {
  AUTHORIZATION_DETAILS_TYPE,
  CREDENTIAL_TYPE,
  certificateThumbprint,
  nonCanonicalSignature,
  parametersDigest,
  type CredentialClaims,
  type JsonObject,
  type OperationDetails,
} from '@countersign/proto';
import { CredentialVerificationError, type VerifyErrorCode } from './errors.js';
import { RemoteJwks } from './jwks.js';

export { CredentialVerificationError, refusalClass, type RefusalClass, type VerifyErrorCode } from './errors.js';

export type CredentialAlgorithm = 'ES256' | 'EdDSA';
/** The only algorithms a credential may use: never "none", never a MAC (HS*) that a public key could forge. */
export const ALLOWED_ALGORITHMS: readonly CredentialAlgorithm[] = ['ES256', 'EdDSA'];
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30;
export const MAX_CLOCK_TOLERANCE_SECONDS = 300;
export const MAX_TOKEN_LENGTH = 16 * 1024;

/** Online single use: Broker.RedeemCredential, e.g. CountersignClient from @countersign/agent. */
export interface CredentialRedeemer {
  redeemCredential(token: string): Promise<{ credentialId: string; requestId: string; redeemedAt: Date | undefined }>;
}

export type JwksSource = JSONWebKeySet | JWTVerifyGetKey | RemoteJwks;

export interface VerifyOptions {
  /** The broker's JWKS: a document, a RemoteJwks (fetched and cached), or a jose key getter. */
  jwks: JwksSource;
  /** This resource server's audience; the credential's "aud" must contain it. */
  audience: string;
  /** Expected "iss"; checked when given. */
  issuer?: string | undefined;
  /** Narrows the allowed algorithms (default ES256 and EdDSA; nothing else can be added). */
  algorithms?: readonly CredentialAlgorithm[] | undefined;
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
  /** When given, the credential is redeemed once all offline checks pass; a second use is refused. */
  redeem?: CredentialRedeemer | undefined;
}

export interface VerifiedCredential {
  claims: CredentialClaims;
  details: OperationDetails;
  kid: string | undefined;
  alg: string;
  /** Set when the credential was redeemed by this call. */
  redeemedAt?: Date | undefined;
}

const fail = (code: VerifyErrorCode, message: string, cause?: unknown): never => {
  throw new CredentialVerificationError(code, `credential: ${message}`, cause === undefined ? undefined : { cause });
};

const localSets = new WeakMap<JSONWebKeySet, JWTVerifyGetKey>();

/** A key getter for any JWKS source (a document's imported keys are cached with it). */
export function keyGetter(jwks: JwksSource): JWTVerifyGetKey {
  if (jwks instanceof RemoteJwks) return jwks.getKey;
  if (typeof jwks === 'function') return jwks;
  let getKey = localSets.get(jwks);
  if (getKey === undefined) {
    getKey = createLocalJWKSet(jwks);
    localSets.set(jwks, getKey);
  }
  return getKey;
}

const pemThumbprints = new Map<string, string>();
const PEM_PREFIX = [...Buffer.from('-----BEGIN')];

/** x5t#S256 of a presented certificate; PEM results are memoized (a connection presents the same one many times). */
export function thumbprintOf(certificate: string | Uint8Array): string {
  if (typeof certificate !== 'string') {
    // readFileSync('client.pem') gives a Buffer of PEM text, not DER: read it as the text it is.
    if (PEM_PREFIX.every((byte, i) => certificate[i] === byte))
      return thumbprintOf(Buffer.from(certificate).toString('utf8'));
    return certificateThumbprint(certificate);
  }
  const known = pemThumbprints.get(certificate);
  if (known !== undefined) return known;
  let der: Buffer;
  try {
    der = Buffer.from(new X509Certificate(certificate).raw);
  } catch (e) {
    return fail('ERR_CREDENTIAL_CERTIFICATE_MISMATCH', 'the presented client certificate cannot be parsed', e);
  }
  const thumbprint = certificateThumbprint(der);
  if (pemThumbprints.size >= 256) pemThumbprints.delete(pemThumbprints.keys().next().value as string);
  pemThumbprints.set(certificate, thumbprint);
  return thumbprint;
}

function mapJoseError(e: unknown): never {
  if (e instanceof CredentialVerificationError) throw e;
  if (e instanceof joseErrors.JWTExpired) return fail('ERR_CREDENTIAL_EXPIRED', `expired (${e.message})`, e);
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    if (e.claim === 'aud') return fail('ERR_CREDENTIAL_AUDIENCE', `audience does not match (${e.message})`, e);
    if (e.claim === 'iss') return fail('ERR_CREDENTIAL_ISSUER', `issuer does not match (${e.message})`, e);
    if (e.claim === 'typ') return fail('ERR_CREDENTIAL_TYPE', `token type is not ${CREDENTIAL_TYPE}`, e);
    if (e.claim === 'nbf' || e.claim === 'iat')
      return fail('ERR_CREDENTIAL_NOT_YET_VALID', `not yet valid (${e.message})`, e);
    return fail('ERR_CREDENTIAL_CLAIMS', e.message, e);
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed || e instanceof joseErrors.JOSENotSupported) {
    return fail(
      'ERR_CREDENTIAL_ALGORITHM',
      `algorithm not allowed; expected one of ${ALLOWED_ALGORITHMS.join(', ')}`,
      e,
    );
  }
  if (e instanceof joseErrors.JWKSNoMatchingKey)
    return fail('ERR_CREDENTIAL_UNKNOWN_KEY', 'signed by a key that is not in the JWKS', e);
  if (e instanceof joseErrors.JWSSignatureVerificationFailed)
    return fail('ERR_CREDENTIAL_SIGNATURE', 'signature does not verify', e);
  if (e instanceof joseErrors.JWSInvalid || e instanceof joseErrors.JWTInvalid)
    return fail('ERR_CREDENTIAL_MALFORMED', e.message, e);
  return fail('ERR_CREDENTIAL_MALFORMED', (e as Error).message ?? String(e), e);
}

function algorithmsOf(options: VerifyOptions): string[] {
  const algorithms = options.algorithms ?? ALLOWED_ALGORITHMS;
  const unknown = algorithms.filter((a) => !ALLOWED_ALGORITHMS.includes(a));
  if (algorithms.length === 0 || unknown.length > 0) {
    throw new TypeError(
      `algorithms must be a non-empty subset of ${ALLOWED_ALGORITHMS.join(', ')}; got ${JSON.stringify(algorithms)}`,
    );
  }
  return [...algorithms];
}

/** Verifies a Countersign credential; returns its claims or throws a CredentialVerificationError. */
export async function verifyCredential(token: string, options: VerifyOptions): Promise<VerifiedCredential> {
  if (typeof token !== 'string' || token.length === 0) fail('ERR_CREDENTIAL_MISSING', 'no token was presented');
  if (token.length > MAX_TOKEN_LENGTH)
    fail('ERR_CREDENTIAL_MALFORMED', `token is ${token.length} characters, at most ${MAX_TOKEN_LENGTH} are accepted`);
  const algorithms = algorithmsOf(options); // a bad allowlist is the caller's bug: TypeError, not a refusal
  const tolerance = Math.max(
    0,
    Math.min(options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS, MAX_CLOCK_TOLERANCE_SECONDS),
  );
  let result;
  try {
    result = await jwtVerify(token, keyGetter(options.jwks), {
      algorithms,
      typ: CREDENTIAL_TYPE,
      audience: options.audience,
      ...(options.issuer === undefined ? {} : { issuer: options.issuer }),
      clockTolerance: tolerance,
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'authorization_details', 'cnf'],
      ...(options.currentDate === undefined ? {} : { currentDate: options.currentDate }),
    });
  } catch (e) {
    if (e instanceof joseErrors.JWTClaimValidationFailed && e.claim === 'aud') {
      const aud = (e.payload as { aud?: unknown }).aud;
      return fail(
        'ERR_CREDENTIAL_AUDIENCE',
        `audience does not match: the credential is for ${JSON.stringify(aud)}, this resource server is ${JSON.stringify(options.audience)}`,
        e,
      );
    }
    return mapJoseError(e);
  }
  // A signature that verifies may still be a malleated twin (high S, or another base64url spelling): one credential, one string.
  const malleated = nonCanonicalSignature(token, result.protectedHeader.alg);
  if (malleated !== undefined) fail('ERR_CREDENTIAL_SIGNATURE', `signature does not verify: ${malleated}`);
  const claims = result.payload as unknown as CredentialClaims;
  const details = Array.isArray(claims.authorization_details)
    ? claims.authorization_details.find((d) => d?.type === AUTHORIZATION_DETAILS_TYPE)
    : undefined;
  if (details === undefined || typeof details.parameters_digest !== 'string') {
    return fail('ERR_CREDENTIAL_CLAIMS', `no authorization_details entry of type ${AUTHORIZATION_DETAILS_TYPE}`);
  }
  const boundThumbprint = claims.cnf?.['x5t#S256'];
  if (typeof boundThumbprint !== 'string') return fail('ERR_CREDENTIAL_CLAIMS', 'cnf.x5t#S256 is missing');
  if (options.clientCertificate !== undefined) {
    const presented = thumbprintOf(options.clientCertificate);
    if (presented !== boundThumbprint) {
      fail(
        'ERR_CREDENTIAL_CERTIFICATE_MISMATCH',
        `bound to a different client certificate than the one presented: the credential names x5t#S256 ${boundThumbprint}, the presented certificate's is ${presented}`,
      );
    }
  }
  if (options.operation !== undefined && details.operation !== options.operation) {
    fail(
      'ERR_CREDENTIAL_OPERATION_MISMATCH',
      `authorizes operation ${JSON.stringify(details.operation)}, not ${JSON.stringify(options.operation)}`,
    );
  }
  if (options.resource !== undefined && details.resource !== options.resource) {
    fail(
      'ERR_CREDENTIAL_RESOURCE_MISMATCH',
      `authorizes resource ${JSON.stringify(details.resource)}, not ${JSON.stringify(options.resource)}`,
    );
  }
  if (options.parameters !== undefined) {
    const digest = parametersDigest(options.parameters);
    if (digest !== details.parameters_digest) {
      fail(
        'ERR_CREDENTIAL_PARAMETERS_MISMATCH',
        `the parameters differ from the ones that were authorized: theirs digest to ${digest}, the credential carries ${details.parameters_digest}`,
      );
    }
  }
  const verified: VerifiedCredential = {
    claims,
    details,
    kid: result.protectedHeader.kid,
    alg: result.protectedHeader.alg,
  };
  if (options.redeem !== undefined) verified.redeemedAt = await redeem(options.redeem, token);
  return verified;
}

async function redeem(redeemer: CredentialRedeemer, token: string): Promise<Date> {
  try {
    const r = await redeemer.redeemCredential(token);
    return r.redeemedAt ?? new Date();
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ERR_CREDENTIAL_ALREADY_REDEEMED')
      return fail('ERR_CREDENTIAL_ALREADY_REDEEMED', (e as Error).message, e);
    return fail('ERR_CREDENTIAL_REDEMPTION_FAILED', `could not be redeemed: ${(e as Error).message}`, e);
  }
}
