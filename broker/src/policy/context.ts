// What a CEL condition sees besides the request itself: the caller's SVID
// freshness and the context (local time in the policy's zone, change-freeze
// windows, the caller's request rate). Built once per evaluation, only when a
// rule that could match has a condition; each fact is worked out on first read.
import { CelCaller, CelContext, CelRequest, CelWorkload, type CelActivation, type LocalTimeFacts } from './cel.js';
import type { JsonValue } from '@countersign/proto';
import type { PolicyInput } from './decision.js';
import type { FreezeWindow } from './schema.js';

/** weekday "Mon".."Sun", time "HH:MM" (24-hour), date "YYYY-MM-DD". */
export type LocalTime = LocalTimeFacts;

/** Local wall-clock facts in one IANA time zone. */
export class ZonedClock {
  private readonly format: Intl.DateTimeFormat;

  constructor(readonly timeZone: string) {
    this.format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      weekday: 'short',
    });
  }

  /** Formatting a date in a zone costs microseconds; a minute's facts are reused (zone offsets are whole minutes). */
  private readonly cache = new Map<number, LocalTime>();

  at(ms: number): LocalTime {
    const minute = Math.floor(ms / 60_000);
    let local = this.cache.get(minute);
    if (local === undefined) {
      if (this.cache.size >= 1024) this.cache.clear();
      local = this.compute(ms);
      this.cache.set(minute, local);
    }
    return local;
  }

  private compute(ms: number): LocalTime {
    const parts: Record<string, string> = {};
    for (const p of this.format.formatToParts(ms)) parts[p.type] = p.value;
    const hour = Number(parts.hour) % 24;
    const minute = Number(parts.minute);
    const time = `${String(hour).padStart(2, '0')}:${String(minute).padStart(2, '0')}`;
    return { hour, minute, weekday: parts.weekday as string, time, date: `${parts.year}-${parts.month}-${parts.day}` };
  }
}

export const activeFreezes = (windows: readonly FreezeWindow[], now: number): string[] =>
  windows.filter((w) => w.start <= now && now < w.end).map((w) => w.name);

const NO_CLAIMS: { [key: string]: JsonValue } = {};

export function buildActivation(
  input: PolicyInput,
  clock: ZonedClock,
  freezeWindows: readonly FreezeWindow[],
): CelActivation {
  // No closures here: this runs per request, and each named closure costs.
  return {
    request: new CelRequest(
      input.operation,
      input.resource,
      input.parameters,
      input.reason,
      input.ticket,
      input.onBehalfOf,
    ),
    caller: new CelCaller(
      input.workload.spiffeId,
      input.workload.trustDomain,
      input.workload.path,
      BigInt(Math.floor(Math.max(0, input.now - input.workload.notBefore) / 1000)),
      BigInt(Math.floor(Math.max(0, input.workload.notAfter - input.now) / 1000)),
    ),
    workload: new CelWorkload(input.workload.oidc?.issuer ?? '', input.workload.oidc?.claims ?? NO_CLAIMS),
    context: new CelContext(input.now, clock, freezeWindows, input.requestRate),
  };
}
