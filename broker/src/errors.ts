// Every failure the broker reports carries a stable code. Tests and clients match
// on the code; the message is for people. api/status.ts turns the kind into a gRPC
// status, in one place. The codes are a closed list in @countersign/proto (errors.ts).
import type { ErrorCode } from '@countersign/proto';

export type { ErrorCode };

/** How a failure surfaces to a caller; api/status.ts maps each to one gRPC status. */
export type ErrorKind =
  | 'invalid_argument'
  | 'unauthenticated'
  | 'permission_denied'
  | 'not_found'
  | 'already_exists'
  | 'failed_precondition'
  | 'resource_exhausted'
  | 'unavailable'
  | 'unimplemented'
  | 'internal';

export class CountersignError extends Error {
  override readonly name = 'CountersignError';
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  /** Extra, non-secret facts for logs and audit (field names, limits). */
  readonly details: Record<string, unknown>;

  constructor(
    kind: ErrorKind,
    code: ErrorCode,
    message: string,
    details: Record<string, unknown> = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.kind = kind;
    this.code = code;
    this.details = details;
  }
}

export const isCountersignError = (e: unknown): e is CountersignError => e instanceof CountersignError;

/** A request field failed validation; the message names the field and what was expected. */
export function invalidField(field: string, message: string, details: Record<string, unknown> = {}): CountersignError {
  return new CountersignError('invalid_argument', 'ERR_INVALID_FIELD', `${field}: ${message}`, { field, ...details });
}

export function unavailable(code: ErrorCode, message: string, cause?: unknown): CountersignError {
  return new CountersignError('unavailable', code, message, {}, cause === undefined ? undefined : { cause });
}
