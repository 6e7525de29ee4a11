// The Slack Web API client, configured so that retries are ours (BullMQ jobs,
// which survive a crash) rather than hidden in-process sleeps; and the one place
// that decides whether a failed call is worth retrying.
import { webApi } from '@slack/bolt';
import { sdkLogger, type SlackLogger } from './logger.js';
import type { SlackSettings } from './settings.js';

export type WebClient = InstanceType<typeof webApi.WebClient>;

/** Per-call timeout: a hung connection must not hold a worker or a click. */
export const SLACK_CALL_TIMEOUT_MS = 10_000;

export function createWebClient(settings: Pick<SlackSettings, 'botToken' | 'apiUrl'>, logger: SlackLogger): WebClient {
  return new webApi.WebClient(settings.botToken, {
    slackApiUrl: settings.apiUrl,
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    timeout: SLACK_CALL_TIMEOUT_MS,
    logger: sdkLogger(logger),
    allowAbsoluteUrls: false,
  });
}

/** Platform errors that will fail the same way however often they are retried. */
const PERMANENT = new Set([
  'not_authed',
  'invalid_auth',
  'account_inactive',
  'token_revoked',
  'token_expired',
  'no_permission',
  'missing_scope',
  'not_allowed_token_type',
  'channel_not_found',
  'not_in_channel',
  'is_archived',
  'user_not_found',
  'user_not_in_channel',
  'cant_update_message',
  'message_not_found',
  'edit_window_closed',
  'invalid_blocks',
  'invalid_blocks_format',
  'msg_too_long',
  'too_many_attachments',
  'invalid_arguments',
  'invalid_arg_name',
  'no_text',
  'restricted_action',
  'cannot_dm_bot',
  'no_such_subteam',
  'invalid_trigger_id',
  'trigger_exchanged',
  'trigger_expired',
  'view_too_large',
]);

export type SlackFailure =
  | { kind: 'rate_limited'; retryAfterMs: number; message: string }
  | { kind: 'permanent'; error: string; message: string }
  | { kind: 'transient'; message: string };

export function classifySlackError(e: unknown): SlackFailure {
  const err = e as {
    code?: string;
    retryAfter?: number;
    statusCode?: number;
    data?: { error?: string; response_metadata?: { messages?: string[] } };
  };
  if (err?.code === webApi.ErrorCode.RateLimitedError) {
    const seconds = typeof err.retryAfter === 'number' && Number.isFinite(err.retryAfter) ? err.retryAfter : 1;
    return {
      kind: 'rate_limited',
      retryAfterMs: Math.min(Math.max(seconds, 1), 3600) * 1000,
      message: `rate limited; Slack asked to retry after ${seconds} s`,
    };
  }
  if (err?.code === webApi.ErrorCode.PlatformError) {
    const error = err.data?.error ?? 'unknown_error';
    const details = err.data?.response_metadata?.messages?.join('; ');
    const message = `Slack answered ${error}${details ? ` (${details})` : ''}`;
    return PERMANENT.has(error) ? { kind: 'permanent', error, message } : { kind: 'transient', message };
  }
  if (err?.code === webApi.ErrorCode.HTTPError)
    return { kind: 'transient', message: `Slack answered HTTP ${err.statusCode ?? '?'}` };
  if (err?.code === webApi.ErrorCode.RequestError)
    return { kind: 'transient', message: `cannot reach Slack: ${(e as Error).message}` };
  return { kind: 'transient', message: (e as Error)?.message ?? String(e) };
}
