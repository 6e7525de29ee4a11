// Slack, as the broker runs it: settings from the config file's `slack:` section
// and SLACK_* variables, and the Slack approver itself, loaded only when Slack is
// on (so a broker without Slack never loads Bolt).
import type { ApprovalWorkflow, PrincipalDirectory } from '@countersign/approvers';
import type { SlackApprover } from '@countersign/approvers/slack';
import { resolveSlackSettings, SlackSettingsError, type SlackSettings } from '@countersign/approvers/slack/settings';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { configPath, type BrokerConfig } from '../config/config.js';
import { CountersignError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Redis } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';

/** The Slack settings, or undefined when Slack is off; a bad combination is a configuration error. */
export async function loadSlackSettings(config: BrokerConfig, env: NodeJS.ProcessEnv = process.env): Promise<SlackSettings | undefined> {
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
    if (e instanceof SlackSettingsError) throw new CountersignError('invalid_argument', 'ERR_CONFIG_INVALID', e.message, { key: 'slack' });
    throw e;
  }
}

export interface SlackDeps {
  workflow: ApprovalWorkflow;
  directory: PrincipalDirectory & { setSlackUsergroupResolver?(resolver: (id: string) => Promise<string[]>): void };
  redis: Redis;
  /** A connection for BullMQ (blocking commands, no per-command retry limit). */
  bullmq: Redis;
  keys: Keys;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  onRefusedRequest?: (code: string) => void;
  runWorker?: boolean;
}

/** Creates and starts the Slack approver; Slack user groups then resolve through it. */
export async function startSlack(settings: SlackSettings, deps: SlackDeps): Promise<SlackApprover> {
  const { createSlackApprover } = await import('@countersign/approvers/slack');
  const slack = createSlackApprover({
    settings,
    workflow: deps.workflow,
    directory: deps.directory,
    redis: deps.redis,
    connection: deps.bullmq,
    keys: deps.keys,
    audit: deps.audit,
    clock: deps.clock,
    logger: deps.logger.child({ component: 'slack' }),
    ...(deps.onRefusedRequest ? { onRefusedRequest: deps.onRefusedRequest } : {}),
    ...(deps.runWorker === undefined ? {} : { runWorker: deps.runWorker }),
  });
  deps.directory.setSlackUsergroupResolver?.((id) => slack.usergroupMembers(id));
  await slack.start();
  return slack;
}
