// The audit trail. Every decision is appended before the caller hears about it;
// a failed append means the caller gets UNAVAILABLE, never an unaudited answer.
import type { Clock } from '../clock.js';
import type { Redis } from '../redis/connection.js';
import { fromRedisError, redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';

export interface AuditEvent {
  type: string;
  [field: string]: unknown;
}

export interface AuditRecord {
  /** Position in the log (Redis stream id). */
  id: string;
  at: number;
  event: AuditEvent;
}

export interface AuditLog {
  append(event: AuditEvent): Promise<AuditRecord>;
  /** Appends several events atomically and in order, in one round trip. */
  appendAll(events: AuditEvent[]): Promise<AuditRecord[]>;
}

export const MAX_AUDIT_EVENT_BYTES = 256 * 1024;

/** Appends JSON events to a Redis stream. */
export class RedisAuditLog implements AuditLog {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly clock: Clock,
  ) {}

  async append(event: AuditEvent): Promise<AuditRecord> {
    return (await this.appendAll([event]))[0] as AuditRecord;
  }

  async appendAll(events: AuditEvent[]): Promise<AuditRecord[]> {
    const at = this.clock.now();
    const multi = this.redis.multi();
    for (const event of events) multi.xadd(this.keys.audit(), '*', 'event', JSON.stringify({ at, ...event }));
    const replies = await redisCall('audit append', () => multi.exec());
    return events.map((event, i) => {
      const [error, id] = replies?.[i] ?? [new Error('no reply'), null];
      if (error) throw fromRedisError(error, 'audit append');
      return { id: id as string, at, event };
    });
  }
}
