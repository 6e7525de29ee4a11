// Bounded work per turn of the event loop. Requests arrive in bursts: a client's
// calls come in one socket read, and the rate limiter answers a whole burst with one
// Redis reply. Without a bound, every request of the burst is decided, signed and
// canonicalised in one run of the event loop before any Redis reply is read or any
// answer leaves, so the broker and its callers take turns instead of working at the
// same time (docs/performance.md, "Sixth round"). TurnSlots lets a fixed number of
// requests through per turn and the rest in the turns that follow, first come,
// first served; between them, I/O runs.

/**
 * Requests decided per turn in the broker. At 64 concurrent calls, 16 per turn split a
 * burst into waves that the broker, Redis and the callers work on at the same time:
 * 0.59-0.67 of the echo's throughput against 0.48-0.52 without a bound; 8 and 12 did
 * about as well, 32 no better than none, 4 worse (more appends and head signatures).
 */
export const REQUESTS_PER_TURN = 16;

/** Schedules a callback for the next turn of the event loop (setImmediate; tests may pass their own). */
export type NextTurn = (callback: () => void) => void;

export class TurnSlots {
  private used = 0;
  private readonly waiting: (() => void)[] = [];
  private scheduled = false;

  constructor(
    /** Requests let through per turn. */
    private readonly perTurn: number,
    private readonly nextTurn: NextTurn = setImmediate,
  ) {
    if (!Number.isSafeInteger(perTurn) || perTurn < 1) {
      throw new RangeError(`TurnSlots: perTurn must be a positive integer, got ${perTurn}`);
    }
  }

  /**
   * Undefined when the caller may go on in this turn; otherwise a promise that
   * resolves in the turn its slot comes up. Callers that got undefined go on
   * synchronously, so a lone request never waits.
   */
  take(): Promise<void> | undefined {
    this.schedule();
    if (this.waiting.length === 0 && this.used < this.perTurn) {
      this.used += 1;
      return undefined;
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Requests waiting for a later turn (metrics, tests). */
  get queued(): number {
    return this.waiting.length;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.nextTurn(() => this.turn());
  }

  private turn(): void {
    this.scheduled = false;
    this.used = 0;
    const released = this.waiting.splice(0, this.perTurn);
    this.used = released.length;
    for (const resolve of released) resolve();
    if (this.waiting.length > 0 || this.used > 0) this.schedule();
  }
}
