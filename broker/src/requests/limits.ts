// Fairness between workloads: a request rate per workload (token bucket in Redis,
// shared by every replica) and a minimum interval between polls of one request
// (the OpenID CIBA "slow_down" answer). The per-workload pending limit lives in
// create-5.lua, atomically with the creation it limits.
import type { Clock } from '../clock.js';
import { CountersignError } from '../errors.js';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { ScriptCode, scriptReply } from './script-codes.js';
import type { ScriptRunner } from './scripts.js';
import { workloadHash } from './store.js';

export interface RateLimit {
  /** Sustained requests per second per workload. */
  perSecond: number;
  /** Requests a workload may make at once after being idle. */
  burst: number;
}

interface Taker {
  resolve(): void;
  reject(error: unknown): void;
}

/** Most requests one script call takes tokens for. */
const MAX_TAKE_BATCH = 256;

export class RequestRateLimiter {
  /** Per workload: requests waiting while a call for that workload is in flight. */
  private readonly queues = new Map<string, Taker[]>();

  constructor(
    private readonly keys: Keys,
    private readonly scripts: ScriptRunner,
    private readonly clock: Clock,
    private readonly limit: RateLimit,
  ) {}

  /**
   * Takes one request from the workload's allowance, or refuses with RESOURCE_EXHAUSTED.
   * Requests of one workload that arrive while its previous call to Redis is in flight
   * go together in the next one (first come, first served), as audit appends do: one
   * script call for many concurrent requests instead of one each.
   */
  take(spiffeId: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiting = this.queues.get(spiffeId);
      if (waiting !== undefined) {
        waiting.push({ resolve, reject });
        return;
      }
      this.queues.set(spiffeId, [{ resolve, reject }]);
      // The first call waits for the end of this turn of the event loop: the requests that
      // arrived with this one (a client's burst, read from one socket read) go in it too,
      // instead of the first alone and the rest one round trip later.
      setImmediate(() => void this.drain(spiffeId));
    });
  }

  private async drain(spiffeId: string): Promise<void> {
    let batch = (this.queues.get(spiffeId) as Taker[]).splice(0, MAX_TAKE_BATCH);
    for (;;) {
      try {
        const [code, retryAfter = '0', granted = '1'] = scriptReply(
          await redisCall('rate limit', () =>
            this.scripts(
              'ratelimit',
              [this.keys.rateLimit(workloadHash(spiffeId))],
              [this.clock.now(), this.limit.perSecond, this.limit.burst, batch.length],
            ),
          ),
        );
        const allowed = code === ScriptCode.Allowed ? Number(granted) : 0;
        batch.forEach((t, i) => (i < allowed ? t.resolve() : t.reject(this.refusal(spiffeId, Number(retryAfter)))));
      } catch (e) {
        for (const t of batch) t.reject(e);
      }
      const waiting = this.queues.get(spiffeId) as Taker[];
      if (waiting.length === 0) {
        this.queues.delete(spiffeId);
        return;
      }
      batch = waiting.splice(0, MAX_TAKE_BATCH);
    }
  }

  private refusal(spiffeId: string, retryAfterMs: number): CountersignError {
    const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    return new CountersignError(
      'resource_exhausted',
      'ERR_RATE_LIMITED',
      `${spiffeId} is sending requests faster than allowed (limit requests.limits.requests_per_second = ${this.limit.perSecond}, burst ${this.limit.burst}); retry in ${seconds}s`,
      { limit: 'requests.limits.requests_per_second', retryAfterMs },
    );
  }
}

/** At most one GetRequest per poll interval for a pending request. */
export class PollGate {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly intervalMs: number,
  ) {}

  async pass(requestId: string): Promise<void> {
    // A little slack, so a client that waits exactly poll_interval is never told to slow down.
    const gateMs = Math.max(1, Math.floor(this.intervalMs * 0.8));
    const ok = await redisCall('poll gate', () =>
      this.redis.set(this.keys.pollGate(requestId), '1', 'PX', gateMs, 'NX'),
    );
    if (ok === null) {
      throw new CountersignError(
        'resource_exhausted',
        'ERR_SLOW_DOWN',
        `slow_down: request ${requestId} was polled less than ${this.intervalMs} ms ago; poll at most every ${this.intervalMs} ms (requests.poll_interval) or use WatchRequest`,
        { limit: 'requests.poll_interval', pollIntervalMs: this.intervalMs },
      );
    }
  }
}

/**
 * Open WatchRequest streams per workload on this replica. A stream holds a
 * subscription and periodic re-reads for as long as the request is pending, so
 * one workload opening thousands of them slows every other caller of the
 * replica; past the limit a new watch is refused (the SDK then polls).
 */
export class WatchStreamSlots {
  private readonly open = new Map<string, number>();

  constructor(private readonly perWorkload: number) {}

  /** Takes a slot for this workload, or refuses with RESOURCE_EXHAUSTED; the returned function gives it back (once). */
  acquire(spiffeId: string): () => void {
    const held = this.open.get(spiffeId) ?? 0;
    if (held >= this.perWorkload) {
      throw new CountersignError(
        'resource_exhausted',
        'ERR_TOO_MANY_WATCHES',
        `${spiffeId} already has ${held} WatchRequest streams open on this replica (limit requests.limits.max_watch_streams_per_workload = ${this.perWorkload}); close one, or poll with GetRequest`,
        { limit: 'requests.limits.max_watch_streams_per_workload', max: this.perWorkload },
      );
    }
    this.open.set(spiffeId, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const now = (this.open.get(spiffeId) ?? 1) - 1;
      if (now <= 0) this.open.delete(spiffeId);
      else this.open.set(spiffeId, now);
    };
  }

  /** Streams open for this workload (metrics, tests). */
  held(spiffeId: string): number {
    return this.open.get(spiffeId) ?? 0;
  }
}
