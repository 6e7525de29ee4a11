// The transactional outbox. Every transition script also writes "<request id>|<effect>"
// into one hash, in the same atomic step. What must follow the transition (its
// audit record, notification jobs, the expiry job) is done from that entry, which
// is deleted only afterwards. The process that ran the transition does it at
// once; when that process dies first, the sweeper does it later. Nothing a
// transition implies is lost; at worst it is done twice (audit records carry the
// request id and are rebuilt from immutable data, so a repeat is recognisable).
import type { AuditEvent, AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { approvalRequestedEvent, requestReceivedEvent, resolvedEvent, voteEvent } from './audit-events.js';
import type { ApprovalJobsPort, OutboxHash, RequestStorePort } from './ports.js';
import type { StoredRequest, StoredVote } from './store.js';

export type Effect = { kind: 'created' } | { kind: 'vote'; principal: string } | { kind: 'resolved' };

const field = (requestId: string, e: Effect): string =>
  e.kind === 'vote' ? `${requestId}|vote|${e.principal}` : `${requestId}|${e.kind}`;

function parseField(text: string): { requestId: string; effect: Effect } | undefined {
  const [requestId, kind, principal] = text.split('|');
  if (!requestId) return undefined;
  if (kind === 'created' || kind === 'resolved') return { requestId, effect: { kind } };
  if (kind === 'vote' && principal) return { requestId, effect: { kind, principal } };
  return undefined;
}

const ORDER: Record<Effect['kind'], number> = { created: 0, vote: 1, resolved: 2 };

export class Outbox {
  constructor(
    private readonly deps: {
      /** The outbox hash (Redis; the transition scripts write into it). */
      redis: OutboxHash;
      keys: Pick<Keys, 'outbox'>;
      store: Pick<RequestStorePort, 'getWithVotes'>;
      audit: AuditLog;
      jobs: ApprovalJobsPort;
      clock: Clock;
      logger: Logger;
    },
  ) {}

  /** Whether this effect of a transition is still to be done. */
  async has(requestId: string, effect: Effect): Promise<boolean> {
    return (
      (await redisCall('outbox', () => this.deps.redis.hexists(this.deps.keys.outbox(), field(requestId, effect)))) ===
      1
    );
  }

  /** Which of these effects are still to be done (one HMGET). */
  async pending(requestId: string, effects: Effect[]): Promise<Effect[]> {
    if (effects.length === 0) return [];
    const fields = effects.map((e) => field(requestId, e));
    const present = await redisCall('outbox', () => this.deps.redis.hmget(this.deps.keys.outbox(), ...fields));
    return effects.filter((_, i) => present[i] != null);
  }

  /**
   * Appends the audit records of these effects, enqueues their jobs, then removes
   * them from the outbox. Throws (UNAVAILABLE) when Redis fails; the entries stay.
   */
  async complete(
    requestId: string,
    effects: Effect[],
    loaded?: { request: StoredRequest; votes: StoredVote[] },
  ): Promise<void> {
    const { store, audit, jobs, redis, keys } = this.deps;
    const fields = effects.map((e) => field(requestId, e));
    const data = loaded ?? (await store.getWithVotes(requestId));
    if (data === undefined) {
      // Retention removed the request before its effects ran; nothing left to record.
      await redisCall('outbox', () => redis.hdel(keys.outbox(), ...fields));
      return;
    }
    const { request, votes } = data;
    const sorted = [...effects].sort((a, b) => ORDER[a.kind] - ORDER[b.kind]);
    const events: AuditEvent[] = [];
    const work: (() => Promise<void>)[] = [];
    for (const effect of sorted) {
      switch (effect.kind) {
        case 'created':
          events.push(requestReceivedEvent(request), approvalRequestedEvent(request));
          work.push(
            () => jobs.scheduleExpiry(request.id, request.expiresAt),
            () => jobs.notify(request.id, 'created'),
          );
          break;
        case 'vote': {
          const vote = votes.find((v) => v.principal === effect.principal);
          if (vote !== undefined) {
            events.push(voteEvent(request, vote));
            work.push(() => jobs.notify(request.id, 'vote', vote.principal));
          }
          break;
        }
        case 'resolved':
          events.push(resolvedEvent(request, votes));
          work.push(() => jobs.notify(request.id, 'resolved'));
          // An expired request's job is the one running (or already done).
          if (request.state !== 'EXPIRED') work.push(() => jobs.cancelExpiry(request.id));
          break;
      }
    }
    if (events.length > 0) await audit.appendAll(events);
    await redisCall('enqueue jobs', () => Promise.all(work.map((w) => w())));
    await redisCall('outbox', () => redis.hdel(keys.outbox(), ...fields));
  }

  /** Completes entries older than graceMs (their transition's process died or failed). Returns how many. */
  async completeStale(graceMs: number, max = 1000): Promise<number> {
    const { redis, keys, clock, logger } = this.deps;
    const cutoff = clock.now() - graceMs;
    const byRequest = new Map<string, Effect[]>();
    let cursor = '0';
    let seen = 0;
    do {
      const [next, flat] = await redisCall('outbox scan', () => redis.hscan(keys.outbox(), cursor, 'COUNT', 500));
      cursor = next;
      for (let i = 0; i + 1 < flat.length && seen < max; i += 2) {
        const parsed = parseField(flat[i] as string);
        if (parsed === undefined) {
          await redisCall('outbox', () => redis.hdel(keys.outbox(), flat[i] as string));
          continue;
        }
        if (Number(flat[i + 1]) > cutoff) continue;
        seen++;
        byRequest.set(parsed.requestId, [...(byRequest.get(parsed.requestId) ?? []), parsed.effect]);
      }
    } while (cursor !== '0' && seen < max);
    for (const [requestId, effects] of byRequest) {
      await this.complete(requestId, effects);
      logger.warn(
        { requestId, effects: effects.map((e) => e.kind) },
        'completed what an earlier transition left undone',
      );
    }
    return seen;
  }
}

/** The transactional outbox, as its users see it (defined here, not in ports.ts, so the two do not import each other). */
export type OutboxPort = Pick<Outbox, 'has' | 'pending' | 'complete' | 'completeStale'>;
