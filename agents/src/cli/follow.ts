// Waiting for a pending request from the CLI (request --wait, watch, run), with
// progress on stderr, and what Ctrl-C does: leave the request pending (request,
// watch) or withdraw it (run).
import { constants } from 'node:os';
import type { CountersignClient, OperationResult } from '../sdk/client.js';
import { CountersignClientError } from '../sdk/errors.js';
import { liveProgress, WaitProgress } from './progress.js';

/** Every signal that would end the CLI (SIGUSR1 is left to Node: it starts the inspector). */
export const INTERRUPT_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR2'] as const;
export type InterruptSignal = (typeof INTERRUPT_SIGNALS)[number];

/** 128 + the signal's number: what a shell reports for a process a signal ended. */
export const SIGNAL_EXIT = Object.fromEntries(
  INTERRUPT_SIGNALS.map((signal) => [signal, 128 + constants.signals[signal]]),
) as Record<InterruptSignal, number>;

export type FollowOutcome =
  { ended: OperationResult } | { interrupted: InterruptSignal; cancelled: boolean; error?: CountersignClientError };

export interface FollowOptions {
  /** What an interrupt (Ctrl-C, SIGTERM, SIGHUP) does to the request: leave it pending, or cancel it. */
  onInterrupt: 'leave' | 'cancel';
  /** The request as first answered, when known (request --wait, run); watch learns it from the broker. */
  start?: OperationResult | undefined;
  /** What the hint line under "pending approval" says. */
  hint: string;
  stderr?: NodeJS.WriteStream;
  env?: NodeJS.ProcessEnv;
}

export async function followRequest(
  client: CountersignClient,
  requestId: string,
  options: FollowOptions,
): Promise<FollowOutcome> {
  const stderr = options.stderr ?? process.stderr;
  const progress = new WaitProgress(stderr, { live: liveProgress(stderr, options.env) });
  const abort = new AbortController();
  let interrupted: InterruptSignal | undefined;
  const handlers = INTERRUPT_SIGNALS.map((signal) => {
    const handler = () => {
      if (interrupted !== undefined) return;
      interrupted = signal;
      abort.abort(new Error(`received ${signal}`));
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  let started = false;
  const startOnce = (result: OperationResult) => {
    if (started || result.state !== 'PENDING_APPROVAL') return;
    started = true;
    progress.start(result, options.hint);
  };
  try {
    if (options.start) startOnce(options.start);
    const ended = await client.waitForApproval(options.start ?? requestId, {
      signal: abort.signal,
      cancelOnAbort:
        options.onInterrupt === 'cancel' ? 'interrupted while waiting (countersign run was stopped)' : false,
      onUpdate: (update) => {
        startOnce(update);
        progress.update(update);
      },
      onReconnect: (e, attempt) => progress.reconnect(e, attempt),
    });
    return { ended };
  } catch (e) {
    if (interrupted === undefined) throw e;
    if (e instanceof CountersignClientError && e.code === 'ERR_CANCEL_FAILED')
      return { interrupted, cancelled: false, error: e };
    return { interrupted, cancelled: options.onInterrupt === 'cancel' };
  } finally {
    progress.stop();
    for (const [signal, handler] of handlers) process.off(signal, handler);
  }
}
