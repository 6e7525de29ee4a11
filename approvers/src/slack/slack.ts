// Assembles the Slack approver: the Bolt app with its receiver (on the broker's
// HTTP listener, or Socket Mode), the click handlers, the delivery queue and
// the ApproverChannel. The broker creates it only when Slack is configured.
import type { Redis } from 'ioredis';
import bolt from '@slack/bolt';
import type { ApprovalWorkflow, ApproverConsole, PrincipalDirectory } from '../port.js';
import { APPROVE_ACTION_ID, CONSOLE_SIGN_IN_ACTION_ID, DENY_ACTION_ID, OPEN_CONSOLE_ACTION_ID } from './card.js';
import { SlackChannel } from './channel.js';
import { SlackDelivery } from './delivery.js';
import { SlackIdentities } from './identity.js';
import type { AuditSink } from './audit-sink.js';
import { SlackInteractions } from './interactions.js';
import type { SlackKeys } from './keys.js';
import { sdkLogger, type SlackLogger } from './logger.js';
import { MessageRefs } from './message-refs.js';
import { CONFIRM_CALLBACK_ID, DENY_CALLBACK_ID } from './modals.js';
import { BrokerHttpReceiver, type HttpHandler } from './receiver.js';
import type { SlackSettings } from './settings.js';
import { SlackUsergroups } from './usergroups.js';
import { createWebClient } from './web-api.js';

const { App, SocketModeReceiver } = bolt;

export { SLACK_EVENTS_PATH } from './settings.js';

export interface SlackApproverDeps {
  settings: SlackSettings;
  workflow: ApprovalWorkflow;
  directory: PrincipalDirectory;
  /** For commands (message references, caches). */
  redis: Redis;
  /** For BullMQ (maxRetriesPerRequest: null). */
  connection: Redis;
  keys: SlackKeys;
  audit: AuditSink;
  clock: { now(): number };
  logger: SlackLogger;
  /** Called with the code of each refused HTTP request (bad signature, stale timestamp...). */
  onRefusedRequest?: (code: string) => void;
  /** Called for each failed Slack Web API call made by a job. */
  onCallFailure?: (kind: 'rate_limited' | 'transient' | 'permanent') => void;
  /** Process Slack jobs in this process (default true; false for an API-only replica). */
  runWorker?: boolean;
  /** Take clicks in this process (default true; false for a worker-only process: no Socket Mode connection). */
  receive?: boolean;
  /** The approver console, when on: "Sign in to approve" sends a one-time link from it. */
  console?: ApproverConsole | undefined;
  /** Slack user group members, when built beforehand (createSlackUsergroups) for the directory; else built here. */
  usergroups?: SlackUsergroups | undefined;
}

/**
 * Slack user group members (usergroups.users.list, cached in Redis), on their own: the
 * broker builds them before its principal directory, which the approver then takes.
 */
export function createSlackUsergroups(deps: {
  settings: SlackSettings;
  redis: Redis;
  keys: SlackKeys;
  logger: SlackLogger;
}): SlackUsergroups {
  const { settings, redis, keys, logger } = deps;
  return new SlackUsergroups(
    { client: createWebClient(settings, logger), redis, keys, logger },
    settings.usergroupCacheTtlMs,
  );
}

export interface SlackApprover {
  readonly channel: SlackChannel;
  /** The handler for POST /slack/events (HTTP mode); undefined in Socket Mode. */
  readonly httpHandler: HttpHandler | undefined;
  readonly delivery: SlackDelivery;
  /** Members (Slack user ids) of a Slack user group, cached. */
  usergroupMembers(usergroupId: string): Promise<string[]>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export function createSlackApprover(deps: SlackApproverDeps): SlackApprover {
  const { settings, logger } = deps;
  const client = createWebClient(settings, logger);
  const refs = new MessageRefs(deps.redis, deps.keys, deps.clock);
  const delivery = new SlackDelivery(
    {
      connection: deps.connection,
      keys: deps.keys,
      client,
      workflow: deps.workflow,
      refs,
      logger,
      audit: deps.audit,
      ...(deps.onCallFailure ? { onCallFailure: deps.onCallFailure } : {}),
    },
    { attempts: settings.attempts, backoffMs: settings.backoffMs },
  );
  const channel = new SlackChannel(
    { delivery, refs, directory: deps.directory, logger },
    { defaultChannel: settings.defaultChannel },
  );
  const usergroups =
    deps.usergroups ??
    new SlackUsergroups({ client, redis: deps.redis, keys: deps.keys, logger }, settings.usergroupCacheTtlMs);
  const identities = new SlackIdentities(
    { directory: deps.directory, client, logger },
    { matchByEmail: settings.matchByEmail, teamId: settings.teamId },
  );
  const interactions = new SlackInteractions({
    workflow: deps.workflow,
    directory: deps.directory,
    identities,
    delivery,
    client,
    audit: deps.audit,
    clock: deps.clock,
    logger,
    refreshCards: (requestId, why) => channel.refresh(requestId, why),
    console: deps.console,
  });

  const boltLogger = sdkLogger(logger);
  let httpReceiver: BrokerHttpReceiver | undefined;
  let receiver;
  if (settings.mode === 'http') {
    httpReceiver = new BrokerHttpReceiver({
      signingSecret: settings.signingSecret as string,
      clock: deps.clock,
      logger,
      ...(deps.onRefusedRequest ? { onRefused: deps.onRefusedRequest } : {}),
    });
    receiver = httpReceiver;
  } else {
    receiver = new SocketModeReceiver({
      appToken: settings.appToken as string,
      logger: boltLogger,
      installerOptions: { clientOptions: { slackApiUrl: settings.apiUrl } },
    });
  }
  const app = new App({
    token: settings.botToken,
    receiver,
    logger: boltLogger,
    // No auth.test at start-up: a Slack outage must not stop the broker.
    tokenVerificationEnabled: false,
    ignoreSelf: false,
    clientOptions: { slackApiUrl: settings.apiUrl, retryConfig: { retries: 0 }, rejectRateLimitedCalls: true },
  });
  app.action({ type: 'block_actions', action_id: APPROVE_ACTION_ID }, async ({ ack, body }) => {
    await ack();
    await interactions.onButton(body, 'approve');
  });
  app.action({ type: 'block_actions', action_id: DENY_ACTION_ID }, async ({ ack, body }) => {
    await ack();
    await interactions.onButton(body, 'deny');
  });
  // A link button: the browser opens the console; Slack reports the click too, and nothing is to be done.
  app.action({ type: 'block_actions', action_id: OPEN_CONSOLE_ACTION_ID }, async ({ ack }) => {
    await ack();
  });
  app.action({ type: 'block_actions', action_id: CONSOLE_SIGN_IN_ACTION_ID }, async ({ ack, body }) => {
    await ack();
    await interactions.onConsoleSignIn(body);
  });
  // Bolt types ack() for a view as a union of "no answer" and "errors"; a view_submission takes both.
  type ViewAck = (response?: unknown) => Promise<void>;
  app.view({ type: 'view_submission', callback_id: CONFIRM_CALLBACK_ID }, async ({ ack, body }) =>
    interactions.onConfirmSubmit(body, ack as ViewAck),
  );
  app.view({ type: 'view_submission', callback_id: DENY_CALLBACK_ID }, async ({ ack, body }) =>
    interactions.onDenySubmit(body, ack as ViewAck),
  );
  app.error(async (error) => {
    logger.error({ err: error.message, code: (error as { code?: string }).code }, 'Slack listener failed');
  });

  let started = false;
  return {
    channel,
    delivery,
    httpHandler: httpReceiver?.handler,
    usergroupMembers: (id) => usergroups.members(id),
    async start() {
      if (started) return;
      started = true;
      if (deps.runWorker !== false) delivery.start();
      if (deps.receive !== false) await app.start();
      logger.info({ mode: settings.mode, apiUrl: settings.apiUrl }, 'Slack approvals on');
    },
    async close() {
      if (started && deps.receive !== false)
        await app
          .stop()
          .catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'stopping the Slack app failed'));
      await delivery.close();
    },
  };
}
