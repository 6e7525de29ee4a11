// The request card: one Block Kit message that shows an approver everything they
// are approving, and later how it ended. Pure: the same request renders the same
// card, so any replica can (re)build it from Redis at any time.
import type { types } from '@slack/bolt';
import type { ApprovalRequestView, BreakGlassNotice, VoteView } from '../port.js';
import { SLACK_LIMITS } from './limits.js';
import { codeBlockText, escapeMrkdwn, inlineCode, slackDate, truncate } from './text.js';

type KnownBlock = types.KnownBlock;

export const APPROVE_ACTION_ID = 'countersign_approve';
export const DENY_ACTION_ID = 'countersign_deny';
/** Step-up webauthn: Approve is a link to the request's page in the approver console (Slack still reports the click). */
export const OPEN_CONSOLE_ACTION_ID = 'countersign_open_console';
/** Step-up webauthn: sends the clicker (only) a one-time sign-in link to the console. */
export const CONSOLE_SIGN_IN_ACTION_ID = 'countersign_console_sign_in';
export const ACTIONS_BLOCK_ID = 'countersign_actions';

export interface SlackMessage {
  /** Notification and accessibility fallback. */
  text: string;
  blocks: KnownBlock[];
}

export interface ParameterDisplayOptions {
  /** Longest string value shown in full. */
  maxValueChars: number;
  /** Characters per section block, fences excluded (Slack allows 3,000 per text). */
  chunkChars: number;
  /** Section blocks the parameters may take. */
  maxChunks: number;
}

export const DEFAULT_PARAMETER_DISPLAY: ParameterDisplayOptions = {
  maxValueChars: 400,
  chunkChars: 2800,
  maxChunks: 4,
};

export interface FormattedParameters {
  /** Escaped text for ``` blocks, one per section. */
  chunks: string[];
  /** Whether anything (a long value, or whole lines) is not shown. */
  shortened: boolean;
  shortenedValues: number;
  omittedLines: number;
  totalChars: number;
}

function shortenValues(value: unknown, max: number, counter: { n: number }): unknown {
  if (typeof value === 'string') {
    if (value.length <= max) return value;
    counter.n += 1;
    const kept = truncate(value, max, '');
    return `${kept}…[+${value.length - kept.length} characters not shown]`;
  }
  if (Array.isArray(value)) return value.map((v) => shortenValues(v, max, counter));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [truncate(k, max), shortenValues(v, max, counter)]),
    );
  }
  return value;
}

/**
 * Pretty-prints the canonical parameters for people: long string values are cut
 * (and marked), and output beyond the block budget is left out (and counted).
 * JSON keeps every value unambiguous: a string cannot pose as another key.
 */
export function formatParameters(
  parametersJson: string,
  options: ParameterDisplayOptions = DEFAULT_PARAMETER_DISPLAY,
): FormattedParameters {
  let parsed: unknown;
  try {
    parsed = JSON.parse(parametersJson);
  } catch {
    parsed = parametersJson;
  }
  const counter = { n: 0 };
  const pretty = JSON.stringify(shortenValues(parsed, options.maxValueChars, counter), null, 2) ?? 'null';
  const lines = pretty.split('\n');
  const chunks: string[] = [];
  let current = '';
  let shown = 0;
  for (const line of lines) {
    const text = truncate(codeBlockText(line), options.chunkChars);
    const joined = current === '' ? text : `${current}\n${text}`;
    if (joined.length <= options.chunkChars) {
      current = joined;
      shown += 1;
      continue;
    }
    chunks.push(current);
    if (chunks.length >= options.maxChunks) {
      current = '';
      break;
    }
    current = text;
    shown += 1;
  }
  if (current !== '') chunks.push(current);
  const omittedLines = lines.length - shown;
  return {
    chunks,
    shortened: counter.n > 0 || omittedLines > 0,
    shortenedValues: counter.n,
    omittedLines,
    totalChars: parametersJson.length,
  };
}

const mrkdwn = (text: string, max: number = SLACK_LIMITS.text) => ({
  type: 'mrkdwn' as const,
  text: truncate(text, max),
});
const plain = (text: string, max: number) => ({ type: 'plain_text' as const, text: truncate(text, max), emoji: false });
const field = (label: string, value: string) => mrkdwn(`*${label}*\n${value}`, SLACK_LIMITS.sectionFieldText);

const OUTCOME: Record<ApprovalRequestView['state'], { title: string; icon: string }> = {
  PENDING_APPROVAL: { title: 'Approval needed', icon: ':hourglass_flowing_sand:' },
  APPROVED: { title: 'Approved', icon: ':white_check_mark:' },
  DENIED: { title: 'Denied', icon: ':no_entry:' },
  EXPIRED: { title: 'Expired', icon: ':alarm_clock:' },
  CANCELLED: { title: 'Cancelled', icon: ':heavy_multiplication_x:' },
};

const approvalsGiven = (r: ApprovalRequestView): number => r.votes.filter((v) => v.decision === 'approve').length;

const who = (votes: VoteView[], decision: VoteView['decision']): string =>
  votes
    .filter((v) => v.decision === decision)
    .map((v) => escapeMrkdwn(v.principal))
    .join(', ');

/** One line saying how the request ended and who decided. */
export function outcomeLine(r: ApprovalRequestView): string {
  const { icon, title } = OUTCOME[r.state];
  const at = r.resolvedAt === undefined ? '' : ` ${slackDate(r.resolvedAt)}`;
  const message = r.resolutionMessage === '' ? '' : `: ${escapeMrkdwn(r.resolutionMessage)}`;
  switch (r.state) {
    case 'APPROVED':
      return `${icon} *${title}* by ${who(r.votes, 'approve')}${at}`;
    case 'DENIED':
      return `${icon} *${title}* by ${who(r.votes, 'deny') || 'policy'}${at}${message}`;
    case 'EXPIRED':
      return `${icon} *${title}*${at} with ${approvalsGiven(r)} of ${r.approvalsRequired} approval(s); no one can approve it now`;
    case 'CANCELLED':
      return `${icon} *${title}*${at}${message}`;
    default:
      return `${icon} *${title}*: ${approvalsGiven(r)} of ${r.approvalsRequired} approval(s) so far`;
  }
}

export function voteLine(v: VoteView): string {
  const verb = v.decision === 'approve' ? ':heavy_check_mark: approved' : ':x: denied';
  const stepUp =
    v.stepUp === 'confirm' ? ', confirmed the resource' : v.stepUp === 'webauthn' ? ', with a passkey' : '';
  const reason = v.reason === '' ? '' : `: ${escapeMrkdwn(truncate(v.reason, 300))}`;
  return `*${escapeMrkdwn(v.principal)}* ${verb} ${slackDate(v.at)} (${escapeMrkdwn(v.channel)}${stepUp})${reason}`;
}

/** The parameter blocks and the digest context shared by request cards and break-glass notices. */
function parameterBlocks(
  parametersJson: string,
  parametersDigest: string,
  requestId: string,
  display: ParameterDisplayOptions,
  label: string,
  readInFull: string,
): KnownBlock[] {
  const blocks: KnownBlock[] = [];
  const params = formatParameters(parametersJson, display);
  params.chunks.forEach((chunk, i) => {
    const heading = i === 0 ? `*Parameters* (${label})\n` : '';
    blocks.push({ type: 'section', text: mrkdwn(`${heading}\`\`\`${chunk}\`\`\``) });
  });
  const digest = `Parameters digest (SHA-256 of RFC 8785 JSON): ${inlineCode(parametersDigest)}  ·  Request ${inlineCode(requestId)}`;
  const context = [mrkdwn(digest)];
  if (params.shortened) {
    const parts = [
      params.shortenedValues > 0 ? `${params.shortenedValues} long value(s) cut` : '',
      params.omittedLines > 0 ? `${params.omittedLines} line(s) left out` : '',
    ].filter((p) => p !== '');
    context.push(
      mrkdwn(
        `:warning: *Parameters shortened for Slack* (${parts.join(', ')}; ${params.totalChars} characters in full). ${readInFull}`,
      ),
    );
  }
  blocks.push({ type: 'context', elements: context });
  return blocks;
}

/**
 * The announcement of a break-glass use: who acted, on what, why, and until when
 * the credential is valid. No buttons: nothing is pending. Approvers review it
 * afterwards (and find it in the audit log by its request id).
 */
export function buildBreakGlassNotice(
  n: BreakGlassNotice,
  display: ParameterDisplayOptions = DEFAULT_PARAMETER_DISPLAY,
): SlackMessage {
  const blocks: KnownBlock[] = [];
  blocks.push({
    type: 'header',
    text: plain(`Break-glass used: ${n.operation} ${n.resource}`, SLACK_LIMITS.headerText),
  });
  blocks.push({
    type: 'section',
    text: mrkdwn(
      `:rotating_light: ${inlineCode(n.requester)} used break-glass rule ${inlineCode(n.rule)} ${slackDate(n.issuedAt)}: ` +
        `it was given a credential without waiting for approval, valid until ${slackDate(n.credentialExpiresAt)}. ` +
        `You are told because the rule names you; review it now.`,
    ),
  });
  blocks.push({
    type: 'section',
    fields: [
      field('Requested by', inlineCode(n.requester)),
      field('On behalf of', n.onBehalfOf === '' ? '_nobody (the workload itself)_' : inlineCode(n.onBehalfOf)),
      field('Operation', inlineCode(n.operation)),
      field('Resource', inlineCode(n.resource)),
      field('Rule', inlineCode(n.rule)),
      field('Ticket', n.ticket === '' ? '_none_' : inlineCode(n.ticket)),
      field('Credential', `${inlineCode(n.credentialId)}, expires ${slackDate(n.credentialExpiresAt)}`),
    ],
  });
  blocks.push({ type: 'section', text: mrkdwn(`*Reason given*\n${escapeMrkdwn(n.reason)}`) });
  blocks.push(
    ...parameterBlocks(
      n.parametersJson,
      n.parametersDigest,
      n.requestId,
      display,
      'exactly what the credential is bound to',
      `The credential is bound to the full parameters with the digest above; the audit log (\`countersign-broker audit export\`) has the request.`,
    ),
  );
  const fallback = `Break-glass used: ${n.operation} ${n.resource} by ${n.requester} (rule ${n.rule}, request ${n.requestId})`;
  return { text: truncate(escapeMrkdwn(fallback), SLACK_LIMITS.text), blocks };
}

/**
 * What the requester's OIDC token said (repository, workflow, ref, run, actor...),
 * each value in inline code: inert text, never a link or markup.
 */
function workloadClaimsBlock(w: NonNullable<ApprovalRequestView['workload']>): KnownBlock {
  const lines = Object.entries(w.claims).map(([name, value]) => `${escapeMrkdwn(name)}: ${inlineCode(value)}`);
  return {
    type: 'section',
    text: mrkdwn(
      `*Identity from an OIDC token* (issuer ${inlineCode(w.issuer)})\n${lines.join('\n') || '_no claims to show_'}`,
    ),
  };
}

/** The card for a request in any state; pending cards carry the Approve / Deny buttons. */
export function buildRequestCard(
  r: ApprovalRequestView,
  display: ParameterDisplayOptions = DEFAULT_PARAMETER_DISPLAY,
): SlackMessage {
  const pending = r.state === 'PENDING_APPROVAL';
  const { title } = OUTCOME[r.state];
  const blocks: KnownBlock[] = [];
  blocks.push({ type: 'header', text: plain(`${title}: ${r.operation} ${r.resource}`, SLACK_LIMITS.headerText) });
  if (!pending) blocks.push({ type: 'section', text: mrkdwn(outcomeLine(r)) });

  const stepUp =
    r.stepUp === 'confirm'
      ? ' (each approver re-types the resource)'
      : r.stepUp === 'webauthn'
        ? ' (each approver confirms with a passkey in the console)'
        : '';
  blocks.push({
    type: 'section',
    fields: [
      field('Requested by', inlineCode(r.requester)),
      field('On behalf of', r.onBehalfOf === '' ? '_nobody (the workload itself)_' : inlineCode(r.onBehalfOf)),
      field('Operation', inlineCode(r.operation)),
      field('Resource', inlineCode(r.resource)),
      field('Rule', inlineCode(r.rule)),
      field('Approvals', `${approvalsGiven(r)} of ${r.approvalsRequired} given${stepUp}`),
      field(pending ? 'Expires' : 'Expiry was', slackDate(r.expiresAt)),
      field('Ticket', r.ticket === '' ? '_none_' : inlineCode(r.ticket)),
    ],
  });
  blocks.push({
    type: 'section',
    text: mrkdwn(`*Reason*\n${r.reason === '' ? '_none given_' : escapeMrkdwn(r.reason)}`),
  });
  if (r.workload !== undefined) blocks.push(workloadClaimsBlock(r.workload));

  blocks.push(
    ...parameterBlocks(
      r.parametersJson,
      r.parametersDigest,
      r.id,
      display,
      'exactly what is approved',
      `Approving approves the full parameters with the digest above; read them in full with \`countersign approvals list\` before approving.`,
    ),
  );

  if (r.votes.length > 0) {
    blocks.push({ type: 'context', elements: [mrkdwn(r.votes.map(voteLine).join('\n'))] });
  }
  if (pending && r.stepUp === 'webauthn' && r.consoleUrl !== undefined) {
    // Approving takes a passkey assertion over this request, which only the console can ask for; Deny stays here.
    blocks.push({
      type: 'actions',
      block_id: ACTIONS_BLOCK_ID,
      elements: [
        {
          type: 'button',
          action_id: OPEN_CONSOLE_ACTION_ID,
          value: r.id,
          style: 'primary',
          url: r.consoleUrl,
          text: plain('Approve with passkey', SLACK_LIMITS.buttonText),
        },
        {
          type: 'button',
          action_id: CONSOLE_SIGN_IN_ACTION_ID,
          value: r.id,
          text: plain('Sign in to approve', SLACK_LIMITS.buttonText),
        },
        {
          type: 'button',
          action_id: DENY_ACTION_ID,
          value: r.id,
          style: 'danger',
          text: plain('Deny…', SLACK_LIMITS.buttonText),
        },
      ],
    });
  } else if (pending) {
    const confirm = r.stepUp === 'confirm';
    blocks.push({
      type: 'actions',
      block_id: ACTIONS_BLOCK_ID,
      elements: [
        {
          type: 'button',
          action_id: APPROVE_ACTION_ID,
          value: r.id,
          style: 'primary',
          text: plain(confirm ? 'Approve…' : 'Approve', SLACK_LIMITS.buttonText),
          // A click-only approval still asks "are you sure" on Slack's side.
          ...(confirm
            ? {}
            : {
                confirm: {
                  title: plain('Approve this request?', SLACK_LIMITS.confirmTitle),
                  text: plain(`${r.operation} on ${r.resource} for ${r.requester}`, SLACK_LIMITS.confirmText),
                  confirm: plain('Approve', SLACK_LIMITS.confirmButton),
                  deny: plain('Back', SLACK_LIMITS.confirmButton),
                },
              }),
        },
        {
          type: 'button',
          action_id: DENY_ACTION_ID,
          value: r.id,
          style: 'danger',
          text: plain('Deny…', SLACK_LIMITS.buttonText),
        },
      ],
    });
  }
  const fallback = pending
    ? `Approval needed: ${r.operation} ${r.resource} for ${r.requester} (${r.id})`
    : `${title}: ${r.operation} ${r.resource} for ${r.requester} (${r.id})`;
  return { text: truncate(escapeMrkdwn(fallback), SLACK_LIMITS.text), blocks };
}

/** The short thread reply for one vote. */
export function buildVoteReply(r: ApprovalRequestView, v: VoteView): SlackMessage {
  const text = `${voteLine(v)}\n${approvalsGiven(r)} of ${r.approvalsRequired} approval(s) given.`;
  return { text: truncate(text, SLACK_LIMITS.text), blocks: [{ type: 'section', text: mrkdwn(text) }] };
}

/** What the human an agent acted for (or anyone following the request) is told at the end. */
export function buildOutcomeNotice(r: ApprovalRequestView): SlackMessage {
  const text = `${outcomeLine(r)}\n${inlineCode(r.operation)} on ${inlineCode(r.resource)} requested by ${inlineCode(r.requester)} (request ${inlineCode(r.id)})`;
  return { text: truncate(text, SLACK_LIMITS.text), blocks: [{ type: 'section', text: mrkdwn(text) }] };
}
