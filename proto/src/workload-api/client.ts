// A SPIFFE Workload API client (X.509 profile): keeps one FetchX509SVID stream
// open, hands every new X.509 context (a rotation, a bundle change) to its
// watchers, and reconnects with exponential backoff when the agent is away.
// Shared by the broker (its own SVID) and the agents' SDK (the requester's SVID).
import { credentials, Metadata, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { SpiffeWorkloadAPIClient, type X509SVIDResponse } from '../gen/spiffe/workload/workload.js';
import { workloadEndpointFrom, type WorkloadEndpoint } from './endpoint.js';
import { WorkloadApiError } from './errors.js';
import { toX509Context, type X509Context } from './x509-context.js';

/** The header every Workload API call carries (SPIFFE Workload Endpoint, section 6.2). */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';

export interface BackoffOptions {
  /** First retry delay. Default 500 ms. */
  initialMs?: number;
  /** Longest delay between retries. Default 30 s. */
  maxMs?: number;
}

export interface WorkloadApiClientOptions {
  /** unix:///path or tcp://IP:port; default SPIFFE_ENDPOINT_SOCKET from env. */
  address?: string | undefined;
  env?: NodeJS.ProcessEnv;
  backoff?: BackoffOptions;
  /** Told about each failed or ended stream before the client retries (for logs and metrics). */
  onRetry?: (error: WorkloadApiError | ServiceError, retryInMs: number) => void;
  /** Told about a response that could not be used; the previous context stays in force. */
  onBadResponse?: (error: WorkloadApiError) => void;
}

export type X509ContextListener = (context: X509Context) => void;

/** Is this status worth retrying? Only a request the server deems malformed is final. */
const retryable = (code: status): boolean => code !== status.INVALID_ARGUMENT;

export class WorkloadApiClient {
  readonly endpoint: WorkloadEndpoint;
  private readonly grpc: SpiffeWorkloadAPIClient;
  private readonly listeners = new Set<X509ContextListener>();
  private readonly waiters = new Set<{ resolve: (c: X509Context) => void; reject: (e: Error) => void }>();
  private stream: ClientReadableStream<X509SVIDResponse> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private closed = false;
  private fatal: WorkloadApiError | undefined;
  private context: X509Context | undefined;
  private readonly initialMs: number;
  private readonly maxMs: number;

  constructor(private readonly options: WorkloadApiClientOptions = {}) {
    this.endpoint = workloadEndpointFrom(options.address, options.env ?? process.env);
    this.initialMs = options.backoff?.initialMs ?? 500;
    this.maxMs = options.backoff?.maxMs ?? 30_000;
    this.grpc = new SpiffeWorkloadAPIClient(this.endpoint.grpcTarget, credentials.createInsecure(), {
      // A local agent: SVIDs with many SANs and big federated bundles still fit.
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      'grpc.initial_reconnect_backoff_ms': this.initialMs,
      'grpc.max_reconnect_backoff_ms': this.maxMs,
    });
  }

  /** The latest X.509 context, once one has arrived. */
  get latest(): X509Context | undefined {
    return this.context;
  }

  /** Calls listener with every new X.509 context (and at once with the current one). Returns an unsubscribe. */
  watchX509(listener: X509ContextListener): () => void {
    this.listeners.add(listener);
    if (this.context !== undefined) listener(this.context);
    this.ensureStream();
    return () => this.listeners.delete(listener);
  }

  /** The current X.509 context, waiting up to timeoutMs for the first one. */
  fetchX509Context(timeoutMs = 30_000): Promise<X509Context> {
    if (this.context !== undefined) return Promise.resolve(this.context);
    if (this.fatal !== undefined) return Promise.reject(this.fatal);
    if (this.closed)
      return Promise.reject(new WorkloadApiError('ERR_WORKLOAD_API_CLOSED', 'workload api: client is closed'));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (c: X509Context) => {
          clearTimeout(timer);
          resolve(c);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new WorkloadApiError(
            'ERR_WORKLOAD_API_TIMEOUT',
            `workload api: no X.509-SVID from ${this.endpoint.address} within ${Math.round(timeoutMs / 1000)}s (is the agent running, and is this workload registered?)${this.lastProblem ? `; last problem: ${this.lastProblem}` : ''}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
      this.ensureStream();
    });
  }

  private lastProblem: string | undefined;

  private ensureStream(): void {
    if (this.stream !== undefined || this.retryTimer !== undefined || this.closed || this.fatal !== undefined) return;
    const metadata = new Metadata();
    metadata.set(WORKLOAD_API_HEADER, 'true');
    const stream = this.grpc.fetchX509Svid({}, metadata);
    this.stream = stream;
    stream.on('data', (response: X509SVIDResponse) => this.onResponse(response));
    stream.on('error', (e: ServiceError) => this.onStreamEnd(stream, e));
    stream.on('end', () => this.onStreamEnd(stream, undefined));
  }

  private onResponse(response: X509SVIDResponse): void {
    let context: X509Context;
    try {
      context = toX509Context(response);
    } catch (e) {
      const error =
        e instanceof WorkloadApiError
          ? e
          : new WorkloadApiError('ERR_WORKLOAD_API_RESPONSE', `workload api: ${(e as Error).message}`);
      this.lastProblem = error.message;
      this.options.onBadResponse?.(error);
      return;
    }
    this.attempt = 0;
    this.lastProblem = undefined;
    this.context = context;
    for (const waiter of this.waiters) waiter.resolve(context);
    this.waiters.clear();
    for (const listener of this.listeners) listener(context);
  }

  private onStreamEnd(stream: ClientReadableStream<X509SVIDResponse>, error: ServiceError | undefined): void {
    if (this.stream !== stream) return;
    this.stream = undefined;
    if (this.closed) return;
    if (error !== undefined && !retryable(error.code)) {
      this.fatal = new WorkloadApiError(
        'ERR_WORKLOAD_API_REFUSED',
        `workload api: ${this.endpoint.address} refused the request: ${error.details || error.message}`,
        {
          cause: error,
        },
      );
      for (const waiter of this.waiters) waiter.reject(this.fatal);
      this.waiters.clear();
      this.options.onBadResponse?.(this.fatal);
      return;
    }
    // Exponential backoff with full jitter, so many workloads do not stampede a restarting agent.
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 20));
    const delay = Math.max(this.initialMs / 2, Math.round(Math.random() * ceiling));
    this.attempt++;
    const reason =
      error ??
      new WorkloadApiError('ERR_WORKLOAD_API_RESPONSE', `workload api: ${this.endpoint.address} ended the stream`);
    this.lastProblem = 'details' in reason && reason.details ? reason.details : reason.message;
    this.options.onRetry?.(reason, delay);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.ensureStream();
    }, delay);
    this.retryTimer.unref();
  }

  /** Ends the stream; pending fetches fail with ERR_WORKLOAD_API_CLOSED. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.stream?.cancel();
    this.stream = undefined;
    for (const waiter of this.waiters)
      waiter.reject(new WorkloadApiError('ERR_WORKLOAD_API_CLOSED', 'workload api: client is closed'));
    this.waiters.clear();
    this.listeners.clear();
    this.grpc.close();
  }
}
