export {
  ACTIONS_BLOCK_ID,
  APPROVE_ACTION_ID,
  CONSOLE_SIGN_IN_ACTION_ID,
  DENY_ACTION_ID,
  OPEN_CONSOLE_ACTION_ID,
  buildOutcomeNotice,
  buildRequestCard,
  buildVoteReply,
  formatParameters,
  type SlackMessage,
} from './card.js';
export { SlackChannel } from './channel.js';
export { SLACK_QUEUE, SlackDelivery, type SlackJobData } from './delivery.js';
export { SLACK_CHANNEL_NAME, SLACK_EMAIL_CHANNEL_NAME } from './identity.js';
export type { AuditSink } from './audit-sink.js';
export type { SlackKeys } from './keys.js';
export { SLACK_LIMITS } from './limits.js';
export type { SlackLogger } from './logger.js';
export {
  CONFIRM_CALLBACK_ID,
  DENY_CALLBACK_ID,
  INPUT_ACTION_ID,
  REASON_BLOCK_ID,
  RESOURCE_BLOCK_ID,
} from './modals.js';
export { MAX_SLACK_BODY_BYTES, type HttpHandler } from './receiver.js';
export {
  resolveSlackSettings,
  SLACK_DEFAULT_API_URL,
  SlackSettingsError,
  type SlackMode,
  type SlackSettings,
  type SlackSettingsInput,
} from './settings.js';
export { SIGNATURE_MAX_AGE_SECONDS, signSlackRequest, slackSignature, verifySlackSignature } from './signature.js';
export {
  createSlackApprover,
  createSlackUsergroups,
  SLACK_EVENTS_PATH,
  type SlackApprover,
  type SlackApproverDeps,
} from './slack.js';
export type { SlackUsergroups } from './usergroups.js';
