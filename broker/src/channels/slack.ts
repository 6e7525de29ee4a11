// Slack, as the broker runs it: settings from the config file's `slack:` section
// and SLACK_* variables, and the Slack approver itself, loaded only when Slack is
// on (so a broker without Slack never loads Bolt).
import type { ApprovalWorkflow, ApproverChannel, ApproverConsole, PrincipalDirectory } from '@countersign/approvers';
import type { SlackUsergroups } from '@countersign/approvers/slack';
import { resolveSlackSettings, SlackSettingsError, type SlackSettings } from '@countersign/approvers/slack/settings';

export { SLACK_EVENTS_PATH } from '@countersign/approvers/slack/settings';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { configPath, type BrokerConfig } from '../config/config.js';
import { CountersignError } from '../errors.js';
import type { HttpHandler } from '../api/http-server.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { duplicateConnection, type Redis } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';

/** The Slack settings, or undefined when Slack is off; a bad combination is a configuration error. */
export async function loadSlackSettings(
  config: BrokerConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<SlackSettings | undefined> {
  const s = config.slack;
  const file = (p: string | undefined) => (p === undefined ? undefined : configPath(config, p));
  try {
    return await resolveSlackSettings(
      {
        enabled: s.enabled,
        mode: s.mode,
        botTokenFile: file(s.bot_token_file),
        signingSecretFile: file(s.signing_secret_file),
        appTokenFile: file(s.app_token_file),
        apiUrl: s.api_url,
        defaultChannel: s.default_channel,
        matchByEmail: s.match_by_email,
        usergroupCacheTtlMs: s.usergroup_cache_ttl,
        teamId: s.team_id,
        attempts: s.delivery.attempts,
        backoffMs: s.delivery.backoff,
      },
      env,
    );
  } catch (e) {
    if (e instanceof SlackSettingsError)
      throw new CountersignError('invalid_argument', 'ERR_CONFIG_INVALID', e.message, { key: 'slack' });
    throw e;
  }
}

/** Variables that turn Slack on; tests start brokers without them so a developer's own token never leaks in. */
export const SLACK_ENV_PREFIX = 'SLACK_';

/**
 * The name the Slack approver channel goes by (SlackChannel.name). The approval
 * machinery announces its channels' names before the channels are built (Slack
 * needs the workflow that machinery builds); startWorkers checks the names match.
 */
export const SLACK_CHANNEL_NAME = 'slack';

export interface SlackDeps {
  workflow: ApprovalWorkflow;
  /** Resolves slack_usergroup groups through `usergroups` already (Principals.withSlackUsergroups). */
  directory: PrincipalDirectory;
  /** From openSlackUsergroups: built before the directory, so nothing is bound late. */
  usergroups: SlackUsergroups;
  redis: Redis;
  keys: Keys;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** "all": everything; "api": takes clicks, runs no Slack jobs; "worker": runs Slack jobs, takes no clicks. */
  role: 'all' | 'api' | 'worker';
  /** The approver console, when on: cards link to it, and "Sign in to approve" sends a link from it. */
  console?: ApproverConsole | undefined;
}

export interface BrokerSlack {
  readonly channel: ApproverChannel;
  /** POST /slack/events, in HTTP mode on roles that take clicks. */
  readonly httpHandler: HttpHandler | undefined;
  /** Jobs in the Slack queue per state (Web API calls waiting, retrying, failed). */
  depth(): Promise<{ queue: string; state: string; count: number }[]>;
  /** Starts the job worker and, in Socket Mode, the connection to Slack. Call once the workflow is bound. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Slack user group members (cached in Redis), built before the principal directory that
 * resolves slack_usergroup groups through them; createSlack then shares them.
 */
export async function openSlackUsergroups(
  settings: SlackSettings,
  deps: { redis: Redis; keys: Keys; logger: Logger },
): Promise<SlackUsergroups> {
  const { createSlackUsergroups } = await import('@countersign/approvers/slack');
  return createSlackUsergroups({
    settings,
    redis: deps.redis,
    keys: deps.keys,
    logger: deps.logger.child({ component: 'slack' }),
  });
}

/** Builds the Slack approver (loading Bolt). */
export async function createSlack(settings: SlackSettings, deps: SlackDeps): Promise<BrokerSlack> {
  const { createSlackApprover } = await import('@countersign/approvers/slack');
  // BullMQ workers block on their connection: give them one of their own.
  const bullmq = duplicateConnection(deps.redis, {
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    enableAutoPipelining: false,
  });
  bullmq.on('error', () => {
    // Connection errors surface on the jobs that fail; ioredis keeps reconnecting.
  });
  const logger = deps.logger.child({ component: 'slack' });
  const slack = createSlackApprover({
    settings,
    workflow: deps.workflow,
    directory: deps.directory,
    redis: deps.redis,
    connection: bullmq,
    keys: deps.keys,
    audit: deps.audit,
    clock: deps.clock,
    logger,
    onRefusedRequest: (code) => deps.metrics.slackRequestsRefused.inc({ code }),
    onCallFailure: (kind) => deps.metrics.slackCallFailures.inc({ kind }),
    runWorker: deps.role !== 'api',
    receive: deps.role !== 'worker',
    console: deps.console,
    usergroups: deps.usergroups,
  });
  return {
    channel: slack.channel,
    httpHandler: deps.role === 'worker' ? undefined : slack.httpHandler,
    depth: () => slack.delivery.depth(),
    start: () => slack.start(),
    async close() {
      await slack.close();
      bullmq.disconnect();
    },
  };
}
