// Typed errors for SDK users: a stable code to branch on, the gRPC status, and
// the broker's message.
import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';

export const ERROR_CODE_TRAILER = 'countersign-error-code';

export class CountersignClientError extends Error {
  override readonly name = 'CountersignClientError';
  constructor(
    /** Stable code, e.g. ERR_INVALID_FIELD, ERR_SVID_UNTRUSTED, ERR_BROKER_UNAVAILABLE. */
    readonly code: string,
    message: string,
    /** The gRPC status, when the error came from the broker. */
    readonly grpcStatus?: GrpcStatus,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

const FALLBACK_CODE: Partial<Record<GrpcStatus, string>> = {
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
  const code = metadata?.get(ERROR_CODE_TRAILER)[0]?.toString() ?? FALLBACK_CODE[e.code] ?? 'ERR_BROKER';
  return new CountersignClientError(code, e.details || e.message, e.code, { cause: e });
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

const NOT_APPROVED_CODE: Record<string, string> = {
  DENIED: 'ERR_REQUEST_DENIED',
  EXPIRED: 'ERR_REQUEST_EXPIRED',
  CANCELLED: 'ERR_REQUEST_CANCELLED',
  PENDING_APPROVAL: 'ERR_REQUEST_PENDING',
};
