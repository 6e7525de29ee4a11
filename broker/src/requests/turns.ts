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
 * 0.62-0.66 of the echo's throughput against 0.46-0.52 without a bound; 24 and 32 did
 * about as well (docs/performance.md, "Sixth round").
 */
export const REQUESTS_PER_TURN = 16;

/** Schedules a callback for the next turn of the event loop (setImmediate; tests may pass their own). */
export type NextTurn = (callback: () => void) => void;

export class TurnSlots {
  /** Let through without waiting since the last turn callback: in this turn, before its I/O was done. */
  private sinceTurn = 0;
  /** Released by the last turn callback: the start of the current turn. */
  private released = 0;
  private readonly waiting: (() => void)[] = [];
  private scheduled = false;

  constructor(
    /** Requests let through per turn. */
    private readonly perTurn: number,
    /** Must defer the callback past the event loop's next poll for I/O (setImmediate does). */
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
    // Behind anyone already waiting (first come, first served), even with a slot free.
    if (this.waiting.length === 0 && this.released + this.sinceTurn < this.perTurn) {
      this.sinceTurn += 1;
      return undefined;
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Requests waiting for a later turn (tests). */
  get queued(): number {
    return this.waiting.length;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.nextTurn(() => this.turn());
  }

  /**
   * The check phase of the event loop, after its poll for I/O. Those let through
   * without waiting since the last callback went on in this same turn (a burst read
   * in this poll, say), so they count against it: right after a burst of 64 this
   * releases nobody, and the next 16 go on only after the next poll.
   */
  private turn(): void {
    this.scheduled = false;
    const free = Math.max(0, this.perTurn - this.sinceTurn);
    const released = this.waiting.splice(0, free);
    this.released = released.length;
    this.sinceTurn = 0;
    for (const resolve of released) resolve();
    if (this.waiting.length > 0 || this.released > 0) this.schedule();
  }
}
