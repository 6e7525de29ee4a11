// Wakes WatchRequest streams on any replica: every transition script publishes
// the request id on one pub/sub channel; each broker process holds one
// subscription and wakes the streams watching that id, which then re-read the
// request from Redis. A message lost while the subscription was down is made up
// for on reconnect (every stream re-reads) and by each stream's periodic re-read.
import type { Logger } from '../observability/logger.js';
import type { Redis } from '../redis/connection.js';

export type Wake = () => void;

export class RequestEvents {
  private readonly listeners = new Map<string, Set<Wake>>();

  private constructor(
    private readonly subscriber: Redis,
    private readonly logger: Logger,
  ) {}

  /** Subscribes on a connection of its own (a subscribed connection can do nothing else). */
  static async start(subscriber: Redis, channel: string, logger: Logger): Promise<RequestEvents> {
    const events = new RequestEvents(subscriber, logger);
    subscriber.on('message', (_channel: string, id: string) => events.wake(id));
    let connectedBefore = false;
    subscriber.on('ready', () => {
      // After a reconnect some announcements may have been missed: everyone re-reads.
      if (connectedBefore) events.wakeAll();
      connectedBefore = true;
    });
    if (subscriber.status === 'wait') await subscriber.connect();
    connectedBefore = true;
    await subscriber.subscribe(channel);
    return events;
  }

  private wake(id: string): void {
    for (const listener of this.listeners.get(id) ?? []) listener();
  }

  private wakeAll(): void {
    this.logger.debug({ streams: this.watching }, 'request events resubscribed; waking every watcher');
    for (const set of this.listeners.values()) for (const listener of set) listener();
  }

  /** Calls `wake` whenever the request may have changed; returns the unsubscribe function. */
  subscribe(id: string, wake: Wake): () => void {
    let set = this.listeners.get(id);
    if (set === undefined) this.listeners.set(id, (set = new Set()));
    set.add(wake);
    return () => {
      set.delete(wake);
      if (set.size === 0) this.listeners.delete(id);
    };
  }

  get watching(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }

  close(): void {
    this.subscriber.disconnect();
  }
}

/** A wake-up flag a loop can wait on: a wake while nobody waits is kept for the next wait. */
export class WakeSignal {
  private pending = false;
  private resolve: (() => void) | undefined;

  wake = (): void => {
    this.pending = true;
    this.resolve?.();
  };

  /** Resolves on a wake, after timeoutMs, or when aborted. */
  wait(timeoutMs: number, abort: AbortSignal): Promise<void> {
    if (this.pending || abort.aborted) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        abort.removeEventListener('abort', done);
        this.resolve = undefined;
        this.pending = false;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      abort.addEventListener('abort', done, { once: true });
      this.resolve = done;
    });
  }
}
