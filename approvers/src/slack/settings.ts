// Slack settings, in two stages like the broker's config: what the operator
// wrote (config keys and environment), then checked and resolved (secrets read
// from files) into SlackSettings. Secrets come from the environment or files,
// never from the config file itself, and are never logged.
import { readFile } from 'node:fs/promises';

export type SlackMode = 'http' | 'socket';

/** What the broker config's `slack:` section says (paths already resolved). */
export interface SlackSettingsInput {
  /** true: on (fail if no token); false: off; undefined: on when a bot token is given. */
  enabled?: boolean | undefined;
  mode?: SlackMode | undefined;
  botTokenFile?: string | undefined;
  signingSecretFile?: string | undefined;
  appTokenFile?: string | undefined;
  apiUrl?: string | undefined;
  defaultChannel?: string | undefined;
  matchByEmail?: boolean | undefined;
  usergroupCacheTtlMs?: number | undefined;
  teamId?: string | undefined;
  /** Attempts per Slack call that fails with a 5xx or a network error (429s do not count). */
  attempts?: number | undefined;
  /** First retry delay; doubles each attempt, capped at 5 minutes. */
  backoffMs?: number | undefined;
}

export interface SlackSettings {
  mode: SlackMode;
  botToken: string;
  /** Required in HTTP mode. */
  signingSecret: string | undefined;
  /** Required in Socket Mode. */
  appToken: string | undefined;
  /** Web API base URL ending in "/", e.g. https://slack.com/api/ (SLACK_API_URL points it at a fake). */
  apiUrl: string;
  /** Where cards go when a rule names no Slack channel. */
  defaultChannel: string | undefined;
  /** Map a Slack user to a principal by e-mail (users.info) when their user id is not listed. Weaker; off by default. */
  matchByEmail: boolean;
  usergroupCacheTtlMs: number;
  /** Refuse clicks from users of other workspaces (Slack Connect) when set. */
  teamId: string | undefined;
  attempts: number;
  backoffMs: number;
}

export class SlackSettingsError extends Error {
  override readonly name = 'SlackSettingsError';
  readonly code = 'ERR_SLACK_CONFIG';
}

export const SLACK_DEFAULT_API_URL = 'https://slack.com/api/';
/** Where Slack's interactivity requests arrive on the broker's HTTP listener (the app's Request URL path). */
export const SLACK_EVENTS_PATH = '/slack/events';

type Env = Record<string, string | undefined>;

async function secret(
  env: Env,
  variable: string,
  configFile: string | undefined,
  configKey: string,
  pattern: RegExp,
  expected: string,
): Promise<string | undefined> {
  const value = env[variable] === '' ? undefined : env[variable];
  const envFile = env[`${variable}_FILE`] === '' ? undefined : env[`${variable}_FILE`];
  const sources = [value && variable, envFile && `${variable}_FILE`, configFile && `slack.${configKey}`].filter(
    Boolean,
  );
  if (sources.length > 1)
    throw new SlackSettingsError(`slack: ${sources.join(' and ')} are both set; give the secret one way only`);
  let text = value;
  const file = envFile ?? configFile;
  let where = variable;
  if (file !== undefined) {
    where = envFile !== undefined ? `${variable}_FILE (${file})` : `slack.${configKey} (${file})`;
    try {
      text = (await readFile(file, 'utf8')).trim();
    } catch (e) {
      throw new SlackSettingsError(`slack: cannot read ${where}: ${(e as Error).message}`);
    }
  }
  if (text === undefined) return undefined;
  if (!pattern.test(text)) throw new SlackSettingsError(`slack: ${where} is not ${expected}`);
  return text;
}

function apiUrl(raw: string, where: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SlackSettingsError(`slack: ${where} ${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new SlackSettingsError(`slack: ${where} must be an http(s) URL`);
  return url.href.endsWith('/') ? url.href : `${url.href}/`;
}

/**
 * Resolves the Slack settings from config and environment (SLACK_BOT_TOKEN,
 * SLACK_SIGNING_SECRET, SLACK_APP_TOKEN, each also as *_FILE, SLACK_API_URL,
 * SLACK_CHANNEL, SLACK_MODE). Returns undefined when Slack is off.
 */
export async function resolveSlackSettings(input: SlackSettingsInput, env: Env): Promise<SlackSettings | undefined> {
  if (input.enabled === false) return undefined;
  const botToken = await secret(
    env,
    'SLACK_BOT_TOKEN',
    input.botTokenFile,
    'bot_token_file',
    /^xoxb-[A-Za-z0-9-]{1,250}$/,
    'a bot token (xoxb-...)',
  );
  if (botToken === undefined) {
    if (input.enabled === true)
      throw new SlackSettingsError(
        'slack: enabled but no bot token: set SLACK_BOT_TOKEN, SLACK_BOT_TOKEN_FILE or slack.bot_token_file',
      );
    return undefined;
  }
  const signingSecret = await secret(
    env,
    'SLACK_SIGNING_SECRET',
    input.signingSecretFile,
    'signing_secret_file',
    /^[A-Za-z0-9]{16,128}$/,
    'a signing secret (16-128 letters and digits)',
  );
  const appToken = await secret(
    env,
    'SLACK_APP_TOKEN',
    input.appTokenFile,
    'app_token_file',
    /^xapp-[A-Za-z0-9-]{1,250}$/,
    'an app-level token (xapp-...)',
  );
  const envMode = env.SLACK_MODE === '' ? undefined : env.SLACK_MODE;
  if (envMode !== undefined && envMode !== 'http' && envMode !== 'socket') {
    throw new SlackSettingsError(`slack: SLACK_MODE ${JSON.stringify(envMode)}: expected http or socket`);
  }
  const mode: SlackMode = envMode ?? input.mode ?? (appToken !== undefined ? 'socket' : 'http');
  if (mode === 'http' && signingSecret === undefined) {
    throw new SlackSettingsError(
      'slack: HTTP mode needs the signing secret: set SLACK_SIGNING_SECRET, SLACK_SIGNING_SECRET_FILE or slack.signing_secret_file (or SLACK_APP_TOKEN for Socket Mode)',
    );
  }
  if (mode === 'socket' && appToken === undefined) {
    throw new SlackSettingsError(
      'slack: Socket Mode needs an app-level token: set SLACK_APP_TOKEN, SLACK_APP_TOKEN_FILE or slack.app_token_file',
    );
  }
  const envUrl = env.SLACK_API_URL === '' ? undefined : env.SLACK_API_URL;
  const envChannel = env.SLACK_CHANNEL === '' ? undefined : env.SLACK_CHANNEL;
  const defaultChannel = envChannel ?? input.defaultChannel;
  if (defaultChannel !== undefined && !/^(#?[a-z0-9._-]{1,80}|[CGD][A-Z0-9]{2,20})$/.test(defaultChannel)) {
    throw new SlackSettingsError(
      `slack: default channel ${JSON.stringify(defaultChannel)} is not a channel id (C0123ABC) or name (#approvals)`,
    );
  }
  return {
    mode,
    botToken,
    signingSecret,
    appToken,
    apiUrl:
      envUrl !== undefined
        ? apiUrl(envUrl, 'SLACK_API_URL')
        : input.apiUrl !== undefined
          ? apiUrl(input.apiUrl, 'slack.api_url')
          : SLACK_DEFAULT_API_URL,
    defaultChannel,
    matchByEmail: input.matchByEmail ?? false,
    usergroupCacheTtlMs: input.usergroupCacheTtlMs ?? 5 * 60_000,
    teamId: input.teamId,
    attempts: input.attempts ?? 20,
    backoffMs: input.backoffMs ?? 2000,
  };
}
