// The one place where errors become gRPC statuses. A CountersignError keeps its
// message and travels with its code in the "countersign-error-code" trailer;
// anything else is masked as INTERNAL with an id that is logged.
import { randomBytes } from 'node:crypto';
import {
  Metadata,
  status as GrpcStatus,
  type ServiceError,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CountersignError, type ErrorKind } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { endSpan, type Tracing } from '../observability/tracing.js';
import type { Attributes } from '@opentelemetry/api';
import { UndecodableRequest } from './decode.js';

/** What every RPC wrapper needs: where to log, where to count failures, where to trace. */
export interface RpcContext {
  logger: Logger;
  metrics: Metrics;
  tracing?: Tracing | undefined;
}

/** Span attributes for a successful answer: what was decided, about which request. */
export type Describe<Res> = (response: Res) => Attributes;

const errorCodeOf = (error: unknown): string =>
  error instanceof CountersignError && error.kind !== 'internal' ? error.code : 'ERR_INTERNAL';

import { ERROR_CODE_TRAILER } from '@countersign/proto';

export { ERROR_CODE_TRAILER };

const STATUS_FOR_KIND: Record<ErrorKind, GrpcStatus> = {
  invalid_argument: GrpcStatus.INVALID_ARGUMENT,
  unauthenticated: GrpcStatus.UNAUTHENTICATED,
  permission_denied: GrpcStatus.PERMISSION_DENIED,
  not_found: GrpcStatus.NOT_FOUND,
  already_exists: GrpcStatus.ALREADY_EXISTS,
  failed_precondition: GrpcStatus.FAILED_PRECONDITION,
  resource_exhausted: GrpcStatus.RESOURCE_EXHAUSTED,
  unavailable: GrpcStatus.UNAVAILABLE,
  unimplemented: GrpcStatus.UNIMPLEMENTED,
  internal: GrpcStatus.INTERNAL,
};

export function toServiceError(error: unknown, { logger, metrics }: RpcContext, method: string): Partial<ServiceError> {
  const metadata = new Metadata();
  if (error instanceof CountersignError && error.kind !== 'internal') {
    metrics.rpcErrors.inc({ method, code: error.code });
    metadata.set(ERROR_CODE_TRAILER, error.code);
    const level = error.kind === 'unavailable' ? 'warn' : 'info';
    logger[level](
      { method, code: error.code, err: error.kind === 'unavailable' ? error.cause : undefined },
      error.message,
    );
    return { code: STATUS_FOR_KIND[error.kind], details: error.message, metadata };
  }
  const errorId = randomBytes(6).toString('hex');
  metrics.rpcErrors.inc({ method, code: 'ERR_INTERNAL' });
  metadata.set(ERROR_CODE_TRAILER, 'ERR_INTERNAL');
  logger.error({ method, errorId, err: error }, 'internal error');
  return {
    code: GrpcStatus.INTERNAL,
    details: `internal error (id ${errorId}); the broker log has the details`,
    metadata,
  };
}

/** The handler's promise, or the refusal of a request whose bytes could not be decoded (decode.ts). */
function run<C extends { request: unknown }, R>(call: C, handler: (call: C) => Promise<R>): Promise<R> {
  const request: unknown = call.request;
  return request instanceof UndecodableRequest ? Promise.reject(request.error) : handler(call);
}

/** Wraps a promise-returning unary handler: its result or its error, mapped once. */
export function unary<Req, Res>(
  ctx: RpcContext,
  method: string,
  handler: (call: ServerUnaryCall<Req, Res>) => Promise<Res>,
  describe?: Describe<Res>,
) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const span = ctx.tracing?.serverSpan(method, call.metadata);
    run(call, handler).then(
      (response) => {
        // The span's attributes are made only when there is a span (tracing on): not on every call.
        if (span !== undefined) endSpan(span, describe ? { attributes: describe(response) } : {});
        callback(null, response);
      },
      (error: unknown) => {
        const status = toServiceError(error, ctx, method);
        endSpan(span, { errorCode: errorCodeOf(error), ...(status.details ? { message: status.details } : {}) });
        callback(status);
      },
    );
  };
}

/** Wraps a server-streaming handler: a thrown error ends the stream with its mapped status. */
export function serverStream<Req, Res>(
  ctx: RpcContext,
  method: string,
  handler: (call: ServerWritableStream<Req, Res>) => Promise<void>,
) {
  return (call: ServerWritableStream<Req, Res>): void => {
    const span = ctx.tracing?.serverSpan(method, call.metadata);
    run(call, handler).then(
      () => {
        endSpan(span, {});
        call.end();
      },
      (error: unknown) => {
        const status = toServiceError(error, ctx, method);
        endSpan(span, { errorCode: errorCodeOf(error), ...(status.details ? { message: status.details } : {}) });
        // grpc-js sends a stream's status from its 'error' handler; destroy() would drop it.
        call.emit('error', status as ServiceError);
      },
    );
  };
}

export function unimplemented(what: string): CountersignError {
  return new CountersignError(
    'unimplemented',
    'ERR_UNIMPLEMENTED',
    `${what} is not available in this version of the broker`,
  );
}
