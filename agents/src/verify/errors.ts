// Why a credential was refused: a stable code to branch on, a message for people.
import type { ErrorCode } from '@countersign/proto';

/** The verify library's codes, from the closed list in @countersign/proto. */
export type VerifyErrorCode = Extract<
  ErrorCode,
  | 'ERR_CREDENTIAL_MISSING'
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
  | 'ERR_CREDENTIAL_PARAMETERS_MISMATCH'
  | 'ERR_CREDENTIAL_ALREADY_REDEEMED'
  | 'ERR_CREDENTIAL_REDEMPTION_FAILED'
  | 'ERR_JWKS_UNAVAILABLE'
>;

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

/** Who is at fault, for mapping to a protocol status: the token, its scope, or the infrastructure. */
export type RefusalClass = 'invalid' | 'forbidden' | 'unavailable';

export function refusalClass(code: VerifyErrorCode): RefusalClass {
  switch (code) {
    case 'ERR_CREDENTIAL_AUDIENCE':
    case 'ERR_CREDENTIAL_CERTIFICATE_MISMATCH':
    case 'ERR_CREDENTIAL_OPERATION_MISMATCH':
    case 'ERR_CREDENTIAL_RESOURCE_MISMATCH':
    case 'ERR_CREDENTIAL_PARAMETERS_MISMATCH':
    case 'ERR_CREDENTIAL_ALREADY_REDEEMED':
      return 'forbidden';
    case 'ERR_JWKS_UNAVAILABLE':
    case 'ERR_CREDENTIAL_REDEMPTION_FAILED':
      return 'unavailable';
    default:
      return 'invalid';
  }
}
