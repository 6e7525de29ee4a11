// The Redis keys the Slack channel uses. The broker builds them (its Keys class
// in broker/src/redis/keys.ts implements this), so every key name lives in one place.
export interface SlackKeys {
  /** Hash: the cards posted for one request (target -> channel and ts) and markers of replies sent. */
  slackMessages(requestId: string): string;
  /** String with a TTL: members of one Slack user group, as Slack last reported them. */
  slackUsergroup(usergroupId: string): string;
  /** Prefix BullMQ puts before its own keys. */
  bullmqPrefix(): string;
}
