// Typed errors for SDK users: a stable code to branch on, the gRPC status, and
// the broker's message.
import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';

import { ERROR_CODE_TRAILER, isErrorCode, type ErrorCode } from '@countersign/proto';

export { ERROR_CODE_TRAILER, type ErrorCode };

export class CountersignClientError extends Error {
  override readonly name = 'CountersignClientError';
  constructor(
    /** Stable code, e.g. ERR_INVALID_FIELD, ERR_SVID_UNTRUSTED, ERR_BROKER_UNAVAILABLE. */
    readonly code: ErrorCode,
    message: string,
    /** The gRPC status, when the error came from the broker. */
    readonly grpcStatus?: GrpcStatus,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

const FALLBACK_CODE: Partial<Record<GrpcStatus, ErrorCode>> = {
  [GrpcStatus.UNAVAILABLE]: 'ERR_BROKER_UNAVAILABLE',
  [GrpcStatus.DEADLINE_EXCEEDED]: 'ERR_BROKER_TIMEOUT',
  [GrpcStatus.UNAUTHENTICATED]: 'ERR_UNAUTHENTICATED',
  [GrpcStatus.PERMISSION_DENIED]: 'ERR_PERMISSION_DENIED',
  [GrpcStatus.INVALID_ARGUMENT]: 'ERR_INVALID_ARGUMENT',
  [GrpcStatus.NOT_FOUND]: 'ERR_NOT_FOUND',
  [GrpcStatus.UNIMPLEMENTED]: 'ERR_UNIMPLEMENTED',
};

export function fromServiceError(e: ServiceError): CountersignClientError {
  const metadata = e.metadata instanceof Metadata ? e.metadata : undefined;
  const sent = metadata?.get(ERROR_CODE_TRAILER)[0]?.toString();
  const fallback = FALLBACK_CODE[e.code] ?? 'ERR_BROKER';
  // A code this SDK does not know (a newer broker's) keeps its status's code; the message names it.
  if (sent !== undefined && !isErrorCode(sent))
    return new CountersignClientError(fallback, `${e.details || e.message} [${sent}]`, e.code, { cause: e });
  return new CountersignClientError(sent ?? fallback, e.details || e.message, e.code, { cause: e });
}

/** Why a request yielded no credential: its state, as a stable code, and the broker's message. */
export class RequestNotApprovedError extends CountersignClientError {
  constructor(
    /** The request as last seen (state, message, request id). */
    readonly result: { state: string; requestId: string; message: string; rule?: string },
  ) {
    super(
      NOT_APPROVED_CODE[result.state] ?? 'ERR_NOT_APPROVED',
      `request ${result.requestId} is ${result.state}${result.message ? `: ${result.message}` : ''}`,
    );
  }
}

const NOT_APPROVED_CODE: Record<string, ErrorCode> = {
  DENIED: 'ERR_REQUEST_DENIED',
  EXPIRED: 'ERR_REQUEST_EXPIRED',
  CANCELLED: 'ERR_REQUEST_CANCELLED',
  PENDING_APPROVAL: 'ERR_REQUEST_PENDING',
};
