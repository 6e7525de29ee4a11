// Approver groups backed by Slack user groups: members come from
// usergroups.users.list, cached in Redis (shared by replicas) for a TTL. When
// Slack cannot answer and the cache is cold, membership is unknown and the
// check fails closed: nobody is taken to be a member.
import type { Redis } from 'ioredis';
import type { SlackKeys } from './keys.js';
import type { SlackLogger } from './logger.js';
import { classifySlackError, type WebClient } from './web-api.js';

export class SlackUsergroupError extends Error {
  override readonly name = 'SlackUsergroupError';
  readonly code = 'ERR_SLACK_USERGROUP_UNAVAILABLE';
}

const MAX_MEMBERS = 10_000;

export class SlackUsergroups {
  constructor(
    private readonly deps: { client: WebClient; redis: Redis; keys: SlackKeys; logger: SlackLogger },
    private readonly ttlMs: number,
  ) {}

  /** Slack user ids in the user group (S...). */
  async members(usergroupId: string): Promise<string[]> {
    const key = this.deps.keys.slackUsergroup(usergroupId);
    const cached = await this.deps.redis.get(key);
    if (cached !== null) return JSON.parse(cached) as string[];
    let users: string[];
    try {
      const result = await this.deps.client.usergroups.users.list({ usergroup: usergroupId });
      users = (result.users ?? [])
        .filter((u): u is string => typeof u === 'string' && /^[UW][A-Z0-9]{2,20}$/.test(u))
        .slice(0, MAX_MEMBERS);
    } catch (e) {
      const failure = classifySlackError(e);
      this.deps.logger.warn({ usergroup: usergroupId, err: failure.message }, 'cannot read Slack user group members');
      throw new SlackUsergroupError(`cannot read the members of Slack user group ${usergroupId}: ${failure.message}`, {
        cause: e,
      });
    }
    await this.deps.redis.set(key, JSON.stringify(users), 'PX', this.ttlMs);
    return users;
  }
}
