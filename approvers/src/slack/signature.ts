// Slack's request signing: "v0=" + hex HMAC-SHA256 over "v0:{timestamp}:{raw body}"
// with the app's signing secret; requests more than five minutes from now are
// refused so a captured request cannot be replayed later.
// https://docs.slack.dev/authentication/verifying-requests-from-slack
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_MAX_AGE_SECONDS = 5 * 60;

export type SignatureErrorCode =
  | 'ERR_SLACK_SIGNATURE_MISSING'
  | 'ERR_SLACK_TIMESTAMP_INVALID'
  | 'ERR_SLACK_TIMESTAMP_STALE'
  | 'ERR_SLACK_SIGNATURE_INVALID';

export class SlackSignatureError extends Error {
  override readonly name = 'SlackSignatureError';
  constructor(
    readonly code: SignatureErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function slackSignature(
  signingSecret: string,
  timestampSeconds: number | string,
  body: string | Buffer,
): string {
  const hmac = createHmac('sha256', signingSecret);
  hmac.update(`v0:${timestampSeconds}:`);
  hmac.update(body);
  return `v0=${hmac.digest('hex')}`;
}

/** The two headers Slack sends with every request, for a given body and time. */
export function signSlackRequest(signingSecret: string, body: string | Buffer, nowMs: number): Record<string, string> {
  const ts = Math.floor(nowMs / 1000);
  return { 'x-slack-request-timestamp': String(ts), 'x-slack-signature': slackSignature(signingSecret, ts, body) };
}

const header = (headers: Record<string, string | string[] | undefined>, name: string): string | undefined => {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
};

/** Throws SlackSignatureError unless the request is signed with the secret and fresh. */
export function verifySlackSignature(options: {
  signingSecrets: readonly string[];
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  nowMs: number;
}): void {
  const timestamp = header(options.headers, 'x-slack-request-timestamp');
  const signature = header(options.headers, 'x-slack-signature');
  if (timestamp === undefined || signature === undefined) {
    throw new SlackSignatureError(
      'ERR_SLACK_SIGNATURE_MISSING',
      'missing X-Slack-Request-Timestamp or X-Slack-Signature header',
    );
  }
  if (!/^\d{1,12}$/.test(timestamp)) {
    throw new SlackSignatureError(
      'ERR_SLACK_TIMESTAMP_INVALID',
      'X-Slack-Request-Timestamp: expected seconds since the epoch',
    );
  }
  const ageSeconds = Math.floor(options.nowMs / 1000) - Number(timestamp);
  if (Math.abs(ageSeconds) > SIGNATURE_MAX_AGE_SECONDS) {
    throw new SlackSignatureError(
      'ERR_SLACK_TIMESTAMP_STALE',
      `X-Slack-Request-Timestamp is ${ageSeconds} s from now; at most ${SIGNATURE_MAX_AGE_SECONDS} s is accepted (replay, or a wrong clock)`,
    );
  }
  if (!/^v0=[0-9a-f]{64}$/.test(signature)) {
    throw new SlackSignatureError('ERR_SLACK_SIGNATURE_INVALID', 'X-Slack-Signature: expected v0= and 64 hex digits');
  }
  const given = Buffer.from(signature);
  // Several secrets let an operator rotate the signing secret without downtime.
  const ok = options.signingSecrets.some((secret) => {
    const expected = Buffer.from(slackSignature(secret, timestamp, options.body));
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
  if (!ok)
    throw new SlackSignatureError(
      'ERR_SLACK_SIGNATURE_INVALID',
      'X-Slack-Signature does not match the body signed with the signing secret',
    );
}
