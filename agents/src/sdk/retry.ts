// Retrying calls the broker never saw or could not finish (UNAVAILABLE), with
// exponential backoff and jitter, abortable; and the idempotency keys that make
// retrying a RequestOperation safe.
import { randomUUID } from 'node:crypto';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { CountersignClientError } from './errors.js';

export interface RetryOptions {
  /** Attempts in all, the first included. Default 6 (about 8 s of backoff). */
  attempts?: number | undefined;
  /** First pause (ms); doubles after each failure. Default 250. */
  initialBackoffMs?: number | undefined;
  /** Longest pause (ms). Default 5000. */
  maxBackoffMs?: number | undefined;
  /** Called before each retry with the error that caused it. */
  onRetry?: ((error: CountersignClientError, attempt: number, delayMs: number) => void) | undefined;
}

/** A fresh idempotency key: one per logical request, reused by each of its retries. */
export function newClientRequestId(): string {
  return `cs-${randomUUID()}`;
}

/** Only UNAVAILABLE is retried: the broker was unreachable, or Redis was (it answers nothing then). */
export function isRetryable(e: unknown): e is CountersignClientError {
  // A broker certificate the client cannot trust is reported as UNAVAILABLE too; waiting does not fix it.
  return (
    e instanceof CountersignClientError && e.grpcStatus === GrpcStatus.UNAVAILABLE && e.code !== 'ERR_BROKER_UNTRUSTED'
  );
}

/** The error an aborted wait or retry ends with. */
export function abortError(signal: AbortSignal, what: string): CountersignClientError {
  return new CountersignClientError(
    'ERR_ABORTED',
    `${what} was aborted${signal.reason instanceof Error ? ` (${signal.reason.message})` : ''}`,
    undefined,
    {
      cause: signal.reason,
    },
  );
}

/** Resolves after ms, or as soon as the signal aborts (without throwing). */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The pause before retry number `attempt` (1-based): exponential, capped, with up to 20 % jitter. */
export function backoffMs(attempt: number, initialMs: number, maxMs: number): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt - 1, 20));
  return Math.round(base * (0.8 + Math.random() * 0.2));
}

/** Runs fn until it succeeds, fails with a non-retryable error, runs out of attempts, or the signal aborts. */
export async function withRetry<T>(
  what: string,
  fn: () => Promise<T>,
  options: RetryOptions & { signal?: AbortSignal | undefined } = {},
): Promise<T> {
  const attempts = Math.max(1, options.attempts ?? 6);
  const { signal } = options;
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw abortError(signal, what);
    try {
      return await fn();
    } catch (e) {
      if (!isRetryable(e) || attempt >= attempts) throw e;
      const delay = backoffMs(attempt, options.initialBackoffMs ?? 250, options.maxBackoffMs ?? 5000);
      options.onRetry?.(e, attempt, delay);
      await pause(delay, signal);
    }
  }
}
