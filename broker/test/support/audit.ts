// Reading what the broker audited, for assertions. One place that knows where
// the audit log keeps its events: a hash chain list (audit:chain, one record
// {seq, at, prev, hash, event} per element) or, before that, a stream (audit).
import type { Redis } from '../../src/redis/connection.js';

export type AuditedEvent = { type: string; request_id?: string; [field: string]: unknown };

export async function auditEvents(redis: Redis, prefix: string): Promise<AuditedEvent[]> {
  const chain = `${prefix}audit:chain`;
  if ((await redis.type(chain)) === 'list') {
    return (await redis.lrange(chain, 0, -1)).map((line) => (JSON.parse(line) as { event: AuditedEvent }).event);
  }
  const entries = await redis.xrange(`${prefix}audit`, '-', '+');
  return entries.map(([, fields]) => JSON.parse(fields[1] as string) as AuditedEvent);
}
