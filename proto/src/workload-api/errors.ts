// Errors of the Workload API client carry a stable code, like every other
// Countersign error; the broker and the SDK wrap them in their own error types.

export type WorkloadApiErrorCode =
  /** The endpoint address is missing or malformed. */
  | 'ERR_WORKLOAD_API_ADDRESS'
  /** The Workload API answered with something that is not a usable SVID. */
  | 'ERR_WORKLOAD_API_RESPONSE'
  /** No SVID arrived in time (agent down, workload not registered, ...). */
  | 'ERR_WORKLOAD_API_TIMEOUT'
  /** The Workload API refused the call for good (e.g. missing security header). */
  | 'ERR_WORKLOAD_API_REFUSED'
  /** The client was closed. */
  | 'ERR_WORKLOAD_API_CLOSED';

export class WorkloadApiError extends Error {
  override readonly name = 'WorkloadApiError';
  constructor(
    readonly code: WorkloadApiErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
