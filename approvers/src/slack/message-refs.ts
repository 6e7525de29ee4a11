// Where each request's cards were posted (channel and ts), in Redis so any
// replica can update them, and markers of the thread replies already sent so a
// retried job does not say the same thing twice.
import type { Redis } from 'ioredis';
import type { SlackKeys } from './keys.js';
import type { Target } from './targets.js';

export interface MessageRef {
  channel: string;
  ts: string;
}

/** How long after a request's deadline its message references are kept. */
export const MESSAGE_REFS_RETENTION_MS = 8 * 24 * 3600_000;

const isRef = (v: unknown): v is MessageRef =>
  typeof v === 'object' &&
  v !== null &&
  typeof (v as MessageRef).channel === 'string' &&
  typeof (v as MessageRef).ts === 'string';

export class MessageRefs {
  constructor(
    private readonly redis: Redis,
    private readonly keys: SlackKeys,
    private readonly clock: { now(): number },
  ) {}

  /** Kept for the retention after the deadline, or after now if the deadline has passed (an old request announced late). */
  private keepUntil(expiresAt: number): number {
    return Math.max(expiresAt, this.clock.now()) + MESSAGE_REFS_RETENTION_MS;
  }

  /** The targets chosen when the request was announced, so later updates reach the same places. */
  async setTargets(requestId: string, targets: Target[], expiresAt: number): Promise<Target[]> {
    const key = this.keys.slackMessages(requestId);
    const [[, set]] = (await this.redis
      .multi()
      .hsetnx(key, 'targets', JSON.stringify(targets))
      .pexpireat(key, this.keepUntil(expiresAt))
      .exec()) as [[Error | null, number]];
    return set === 1 ? targets : ((await this.targets(requestId)) ?? targets);
  }

  async targets(requestId: string): Promise<Target[] | undefined> {
    const raw = await this.redis.hget(this.keys.slackMessages(requestId), 'targets');
    return raw === null ? undefined : (JSON.parse(raw) as Target[]);
  }

  async card(requestId: string, target: string): Promise<MessageRef | undefined> {
    const raw = await this.redis.hget(this.keys.slackMessages(requestId), `card:${target}`);
    if (raw === null) return undefined;
    const parsed: unknown = JSON.parse(raw);
    return isRef(parsed) ? parsed : undefined;
  }

  async cards(requestId: string): Promise<Map<string, MessageRef>> {
    const all = await this.redis.hgetall(this.keys.slackMessages(requestId));
    const out = new Map<string, MessageRef>();
    for (const [field, raw] of Object.entries(all)) {
      if (!field.startsWith('card:')) continue;
      const parsed: unknown = JSON.parse(raw);
      if (isRef(parsed)) out.set(field.slice('card:'.length), parsed);
    }
    return out;
  }

  async setCard(requestId: string, target: string, ref: MessageRef, expiresAt: number): Promise<void> {
    const key = this.keys.slackMessages(requestId);
    await this.redis
      .multi()
      .hset(key, `card:${target}`, JSON.stringify(ref))
      .pexpireat(key, this.keepUntil(expiresAt))
      .exec();
  }

  /** Whether a reply/notice with this marker was already sent. */
  async sent(requestId: string, marker: string): Promise<boolean> {
    return (await this.redis.hexists(this.keys.slackMessages(requestId), `sent:${marker}`)) === 1;
  }

  async markSent(requestId: string, marker: string, ts: string, expiresAt: number): Promise<void> {
    const key = this.keys.slackMessages(requestId);
    await this.redis.multi().hset(key, `sent:${marker}`, ts).pexpireat(key, this.keepUntil(expiresAt)).exec();
  }
}
