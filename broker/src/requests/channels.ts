// Which approver channels (Slack, ...) the deployment has. Replicas need not
// all be configured alike: a replica without Slack must still have Slack told
// about the requests it creates, and must never take Slack's work. Each replica
// that has a channel says so in Redis (and again every few minutes); a
// notification is enqueued for every channel some replica has said so of
// recently, on that channel's own queue, which only replicas having the channel
// consume. A channel no replica has mentioned for CHANNEL_HORIZON_MS is taken as
// removed from the deployment.
import type { Clock } from '../clock.js';
import type { Redis } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';

/** How long a channel counts as part of the deployment after a replica last announced it. */
export const CHANNEL_HORIZON_MS = 24 * 3600_000;
/** How often a replica announces its channels. */
export const CHANNEL_ANNOUNCE_INTERVAL_MS = 5 * 60_000;

/** BullMQ queue names may not contain ":"; channel names become part of one. */
const CHANNEL_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function checkChannelName(name: string): string {
  if (!CHANNEL_NAME.test(name))
    throw new Error(`approver channel name ${JSON.stringify(name)} must be 1-64 of [A-Za-z0-9_.-]`);
  return name;
}

export class ChannelRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly clock: Clock,
    /** The channels this replica has. */
    readonly local: readonly string[],
  ) {
    for (const name of local) checkChannelName(name);
  }

  /** Tells the deployment this replica has its channels. */
  async announce(): Promise<void> {
    if (this.local.length === 0) return;
    const now = String(this.clock.now());
    await this.redis.hset(this.keys.approverChannels(), Object.fromEntries(this.local.map((name) => [name, now])));
  }

  /** Every channel of the deployment: this replica's and those others announced within the horizon. */
  async all(): Promise<string[]> {
    const announced = await this.redis.hgetall(this.keys.approverChannels());
    const now = this.clock.now();
    const names = new Set(this.local);
    for (const [name, at] of Object.entries(announced)) {
      if (now - Number(at) <= CHANNEL_HORIZON_MS && CHANNEL_NAME.test(name)) names.add(name);
    }
    return [...names].sort();
  }
}
