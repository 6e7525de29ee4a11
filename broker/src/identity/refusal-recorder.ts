// Refused identities come from anyone who can open a TCP connection to the
// broker, so how much they write must not depend on how hard they try. Each
// refusal is counted in a metric at once; the audit trail gets one summary per
// reason (code) and source (IP address, and the proxy when the certificate was
// forwarded in XFCC) per interval, saying how many there were and between when.
// At most `maxSources` such pairs are kept per interval; refusals beyond them
// are summed into one record per code (source "(other sources)"). So an
// interval adds at most maxSources + (number of codes) records, however many
// handshakes an anonymous client makes: before this, ten a second, ~0.9 M a day.
// The log says the first refusal of each pair at once (bounded the same way),
// so a misconfigured client is easy to diagnose.
import type { Clock } from '../clock.js';
import type { CountersignError } from '../errors.js';
import type { RefusalContext } from './peer-authenticator.js';

export interface RefusalAggregation {
  /** Length of one summary interval (ms). */
  intervalMs: number;
  /** Distinct (code, source) pairs summarised one by one per interval; the rest are summed per code. */
  maxSources: number;
}

export const DEFAULT_REFUSAL_AGGREGATION: RefusalAggregation = { intervalMs: 60_000, maxSources: 20 };

/** The source the summary names for refusals beyond maxSources. */
export const OTHER_SOURCES = '(other sources)';

/** One audit record's worth: refusals of one code from one source in one interval. */
export interface RefusalSummary {
  code: string;
  /** IP address of the connection (the port changes with every connection, so it is left out). */
  source: string;
  /** The proxy's SPIFFE ID when the refused certificate came in its XFCC header. */
  proxy?: string;
  count: number;
  /** The first refusal's message (the same code says the same thing, up to the names in it). */
  message: string;
  /** First and last refusal (ms since the epoch). */
  firstAt: number;
  lastAt: number;
  /** For OTHER_SOURCES: how many distinct sources were summed. */
  sources?: number;
}

/** "203.0.113.7:53122" -> "203.0.113.7"; "[::1]:443" or "::1:443" -> "::1". */
export function sourceOf(peer: string): string {
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(peer);
  if (bracketed) return bracketed[1] as string;
  const i = peer.lastIndexOf(':');
  return i > 0 && /^\d+$/.test(peer.slice(i + 1)) ? peer.slice(0, i) : peer;
}

export class RefusalAggregator {
  private pairs = new Map<string, RefusalSummary>();
  private others = new Map<string, RefusalSummary & { seen: Set<string> }>();

  constructor(
    private readonly clock: Clock,
    private readonly settings: RefusalAggregation = DEFAULT_REFUSAL_AGGREGATION,
  ) {}

  /** Counts one refusal; true when it is the first of its (code, source) pair this interval (worth a log line). */
  note(error: CountersignError, peer: string, context: RefusalContext = {}): boolean {
    const now = this.clock.now();
    const source = sourceOf(peer);
    const key = `${error.code}\u0000${source}\u0000${context.proxy ?? ''}`;
    const known = this.pairs.get(key);
    if (known !== undefined) {
      known.count += 1;
      known.lastAt = Math.max(known.lastAt, now);
      return false;
    }
    if (this.pairs.size < this.settings.maxSources) {
      this.pairs.set(key, {
        code: error.code,
        source,
        ...(context.proxy ? { proxy: context.proxy } : {}),
        count: 1,
        message: error.message,
        firstAt: now,
        lastAt: now,
      });
      return true;
    }
    const other = this.others.get(error.code);
    if (other === undefined) {
      this.others.set(error.code, {
        code: error.code,
        source: OTHER_SOURCES,
        count: 1,
        message: error.message,
        firstAt: now,
        lastAt: now,
        seen: new Set([key]),
      });
    } else {
      other.count += 1;
      other.lastAt = Math.max(other.lastAt, now);
      // Bounded too: past this many, "sources" is a lower bound.
      if (other.seen.size < 10_000) other.seen.add(key);
    }
    return false;
  }

  /** The summaries of the interval that ends now (oldest first), and a fresh interval. */
  drain(): RefusalSummary[] {
    const out: RefusalSummary[] = [...this.pairs.values()];
    for (const { seen, ...other } of this.others.values()) out.push({ ...other, sources: seen.size });
    this.pairs = new Map();
    this.others = new Map();
    return out.sort((a, b) => a.firstAt - b.firstAt);
  }

  get intervalMs(): number {
    return this.settings.intervalMs;
  }
}
