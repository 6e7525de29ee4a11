// The two modals: step-up "confirm" (re-type the resource, give a reason) and
// Deny (give a reason). private_metadata carries which request and where the
// card was clicked, so the answer can be posted next to it.
import type { types } from '@slack/bolt';
import type { ApprovalRequestView } from '../port.js';
import { formatParameters } from './card.js';
import { SLACK_LIMITS } from './limits.js';
import { escapeMrkdwn, inlineCode, truncate } from './text.js';

export const CONFIRM_CALLBACK_ID = 'countersign_confirm_approve';
export const DENY_CALLBACK_ID = 'countersign_deny_reason';
export const RESOURCE_BLOCK_ID = 'resource';
export const REASON_BLOCK_ID = 'reason';
export const INPUT_ACTION_ID = 'value';
/** Longest reason the modal accepts (the broker's own limit may be lower and is checked when the vote is cast). */
export const MAX_MODAL_REASON = 2000;

export interface ModalContext {
  requestId: string;
  /** Where the card that was clicked lives, for the ephemeral answer. */
  channel: string | undefined;
}

export function encodeModalContext(ctx: ModalContext): string {
  return truncate(JSON.stringify({ r: ctx.requestId, c: ctx.channel ?? '' }), SLACK_LIMITS.privateMetadata, '');
}

export function decodeModalContext(text: unknown): ModalContext | undefined {
  if (typeof text !== 'string' || text.length > SLACK_LIMITS.privateMetadata) return undefined;
  try {
    const v = JSON.parse(text) as { r?: unknown; c?: unknown };
    if (typeof v.r !== 'string' || !REQUEST_ID.test(v.r)) return undefined;
    if (typeof v.c !== 'string' || (v.c !== '' && !CHANNEL_ID.test(v.c))) return undefined;
    return { requestId: v.r, channel: v.c === '' ? undefined : v.c };
  } catch {
    return undefined;
  }
}

export const REQUEST_ID = /^[A-Za-z0-9_-]{1,128}$/;
export const CHANNEL_ID = /^[CGDU][A-Z0-9]{2,30}$/;

const plain = (text: string, max: number) => ({ type: 'plain_text' as const, text: truncate(text, max), emoji: false });
const mrkdwn = (text: string) => ({ type: 'mrkdwn' as const, text: truncate(text, SLACK_LIMITS.text) });

function summary(r: ApprovalRequestView): types.KnownBlock[] {
  const params = formatParameters(r.parametersJson);
  const blocks: types.KnownBlock[] = [
    {
      type: 'section',
      text: mrkdwn(
        `${inlineCode(r.operation)} on ${inlineCode(r.resource)}\nrequested by ${inlineCode(r.requester)}` +
          (r.onBehalfOf === '' ? '' : ` on behalf of ${inlineCode(r.onBehalfOf)}`) +
          (r.reason === '' ? '' : `\n*Reason:* ${escapeMrkdwn(r.reason)}`),
      ),
    },
  ];
  for (const chunk of params.chunks) blocks.push({ type: 'section', text: mrkdwn(`\`\`\`${chunk}\`\`\``) });
  blocks.push({
    type: 'context',
    elements: [
      mrkdwn(
        `Parameters digest ${inlineCode(r.parametersDigest)}` +
          (params.shortened ? ' · :warning: parameters shortened for Slack; the digest covers all of them' : ''),
      ),
    ],
  });
  return blocks;
}

function reasonInput(label: string, hint: string): types.KnownBlock {
  return {
    type: 'input',
    block_id: REASON_BLOCK_ID,
    label: plain(label, SLACK_LIMITS.inputLabel),
    hint: plain(hint, SLACK_LIMITS.inputHint),
    element: { type: 'plain_text_input', action_id: INPUT_ACTION_ID, multiline: true, max_length: MAX_MODAL_REASON },
  };
}

export function buildConfirmModal(r: ApprovalRequestView, ctx: ModalContext): types.ModalView {
  return {
    type: 'modal',
    callback_id: CONFIRM_CALLBACK_ID,
    private_metadata: encodeModalContext(ctx),
    title: plain('Approve request', SLACK_LIMITS.modalTitle),
    submit: plain('Approve', SLACK_LIMITS.modalButton),
    close: plain('Cancel', SLACK_LIMITS.modalButton),
    blocks: [
      ...summary(r),
      {
        type: 'input',
        block_id: RESOURCE_BLOCK_ID,
        label: plain('Type the resource to confirm', SLACK_LIMITS.inputLabel),
        hint: plain(`Rule ${r.rule} asks each approver to re-type it exactly: ${r.resource}`, SLACK_LIMITS.inputHint),
        element: { type: 'plain_text_input', action_id: INPUT_ACTION_ID, max_length: 512 },
      },
      reasonInput('Reason for approving', 'Recorded with your approval and in the audit trail.'),
    ],
  };
}

export function buildDenyModal(r: ApprovalRequestView, ctx: ModalContext): types.ModalView {
  return {
    type: 'modal',
    callback_id: DENY_CALLBACK_ID,
    private_metadata: encodeModalContext(ctx),
    title: plain('Deny request', SLACK_LIMITS.modalTitle),
    submit: plain('Deny', SLACK_LIMITS.modalButton),
    close: plain('Cancel', SLACK_LIMITS.modalButton),
    blocks: [...summary(r), reasonInput('Reason for denying', 'The requester sees it.')],
  };
}

/** A plain_text_input's value from a view_submission's state, "" when absent. */
export function inputValue(state: unknown, blockId: string): string {
  const values = (state as { values?: Record<string, Record<string, { value?: unknown }>> } | undefined)?.values;
  const value = values?.[blockId]?.[INPUT_ACTION_ID]?.value;
  return typeof value === 'string' ? value : '';
}
