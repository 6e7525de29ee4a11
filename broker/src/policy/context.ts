// What a CEL condition sees besides the request itself: the caller's SVID
// freshness and the context (local time in the policy's zone, change-freeze
// windows, the caller's request rate). Built once per evaluation, and only when
// a rule that could match has a condition.
import { CelCaller, CelContext, CelRequest, celMap, type CelActivation } from './cel.js';
import type { PolicyInput } from './decision.js';
import type { FreezeWindow } from './schema.js';

export interface LocalTime {
  hour: number;
  minute: number;
  /** "Mon" .. "Sun". */
  weekday: string;
  /** "HH:MM", 24-hour. */
  time: string;
  /** "YYYY-MM-DD". */
  date: string;
}

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

  at(ms: number): LocalTime {
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

export function buildActivation(input: PolicyInput, clock: ZonedClock, freezeWindows: readonly FreezeWindow[]): CelActivation {
  const local = clock.at(input.now);
  const freezes = activeFreezes(freezeWindows, input.now);
  const seconds = (ms: number) => BigInt(Math.floor(ms / 1000));
  return {
    request: new CelRequest(input.operation, input.resource, celMap(input.parameters), input.reason, input.ticket, input.onBehalfOf),
    caller: new CelCaller(
      input.workload.spiffeId,
      input.workload.trustDomain,
      input.workload.path,
      seconds(Math.max(0, input.now - input.workload.notBefore)),
      seconds(Math.max(0, input.workload.notAfter - input.now)),
    ),
    context: new CelContext(
      new Date(input.now),
      clock.timeZone,
      BigInt(local.hour),
      BigInt(local.minute),
      local.weekday,
      local.time,
      local.date,
      freezes.length > 0,
      freezes,
      input.requestRate,
    ),
  };
}
