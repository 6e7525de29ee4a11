// Who clicked: a Slack user mapped to a principal, by user id (listed in the
// principals file), or, only when enabled, by the e-mail address Slack holds
// for them. E-mail matching is weaker (it trusts whoever controls the Slack
// profile's address), so votes it allows are recorded on channel "slack-email".
import type { Principal, PrincipalDirectory } from '../port.js';
import type { SlackLogger } from './logger.js';
import { classifySlackError, type WebClient } from './web-api.js';

export const SLACK_CHANNEL_NAME = 'slack';
export const SLACK_EMAIL_CHANNEL_NAME = 'slack-email';

export type SlackIdentity =
  | { ok: true; principal: Principal; channel: typeof SLACK_CHANNEL_NAME | typeof SLACK_EMAIL_CHANNEL_NAME }
  | {
      ok: false;
      code: 'ERR_SLACK_UNKNOWN_USER' | 'ERR_SLACK_WRONG_WORKSPACE' | 'ERR_SLACK_USER_LOOKUP_FAILED';
      message: string;
    };

export class SlackIdentities {
  constructor(
    private readonly deps: { directory: PrincipalDirectory; client: WebClient; logger: SlackLogger },
    private readonly options: { matchByEmail: boolean; teamId: string | undefined },
  ) {}

  async resolve(userId: string, teamId: string | undefined): Promise<SlackIdentity> {
    if (this.options.teamId !== undefined && teamId !== this.options.teamId) {
      return {
        ok: false,
        code: 'ERR_SLACK_WRONG_WORKSPACE',
        message: `Slack user ${userId} belongs to workspace ${teamId ?? 'unknown'}, not ${this.options.teamId}; only members of it may decide`,
      };
    }
    const byId = this.deps.directory.bySlackUserId(userId);
    if (byId !== undefined) return { ok: true, principal: byId, channel: SLACK_CHANNEL_NAME };
    const unknown = `Slack user ${userId} is not in Countersign's principals file, so they cannot decide requests (an administrator adds slack_user_id: ${userId} to a principal)`;
    if (!this.options.matchByEmail) return { ok: false, code: 'ERR_SLACK_UNKNOWN_USER', message: unknown };
    let email: string | undefined;
    try {
      const info = await this.deps.client.users.info({ user: userId });
      const user = info.user;
      if (
        user === undefined ||
        user.deleted === true ||
        user.is_bot === true ||
        user.is_restricted === true ||
        user.is_ultra_restricted === true
      ) {
        return {
          ok: false,
          code: 'ERR_SLACK_UNKNOWN_USER',
          message: `${unknown}; guests, bots and deactivated users are never matched by e-mail`,
        };
      }
      email = user.profile?.email;
    } catch (e) {
      const failure = classifySlackError(e);
      this.deps.logger.warn({ user: userId, err: failure.message }, 'users.info failed');
      return {
        ok: false,
        code: 'ERR_SLACK_USER_LOOKUP_FAILED',
        message: `could not look up Slack user ${userId} (${failure.message}); try again in a minute`,
      };
    }
    const byEmail = email === undefined ? undefined : this.deps.directory.byEmail(email);
    if (byEmail === undefined) return { ok: false, code: 'ERR_SLACK_UNKNOWN_USER', message: unknown };
    // Someone else's listed user id wins: an address cannot take over a principal that has a Slack id.
    if (byEmail.slackUserId !== undefined && byEmail.slackUserId !== userId) {
      return {
        ok: false,
        code: 'ERR_SLACK_UNKNOWN_USER',
        message: `${unknown}; the principal with that e-mail address is bound to another Slack user`,
      };
    }
    return { ok: true, principal: byEmail, channel: SLACK_EMAIL_CHANNEL_NAME };
  }
}
