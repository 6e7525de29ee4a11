// Refused identities come from anyone who can open a TCP connection to the
// broker. Each one is counted in a metric, but only so many a second are written
// to the audit trail and the log: a flood of bad handshakes must not fill Redis
// (which runs with noeviction for BullMQ, so a full Redis stops everything) or
// drown the logs. What is held back is said in the next record that is written
// (`suppressed`: refusals not recorded since the one before it).
import type { Clock } from '../clock.js';

export interface RefusalRecorderSettings {
  /** Refusals recorded per second, sustained. */
  perSecond: number;
  /** Refusals recorded in a burst. */
  burst: number;
}

export const DEFAULT_REFUSAL_RECORDING: RefusalRecorderSettings = { perSecond: 10, burst: 100 };

export type RefusalAdmission = { record: true; suppressed: number } | { record: false };

/** A token bucket over the injected clock. */
export class RefusalRecorder {
  private tokens: number;
  private last: number;
  private suppressed = 0;

  constructor(
    private readonly clock: Clock,
    private readonly settings: RefusalRecorderSettings = DEFAULT_REFUSAL_RECORDING,
  ) {
    this.tokens = settings.burst;
    this.last = clock.now();
  }

  /** Whether to record this refusal, and how many were held back before it. */
  admit(): RefusalAdmission {
    const now = this.clock.now();
    this.tokens = Math.min(this.settings.burst, this.tokens + (Math.max(0, now - this.last) / 1000) * this.settings.perSecond);
    this.last = now;
    if (this.tokens < 1) {
      this.suppressed += 1;
      return { record: false };
    }
    this.tokens -= 1;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    return { record: true, suppressed };
  }
}
