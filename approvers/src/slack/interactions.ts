// What happens when someone clicks Approve or Deny, or submits a modal. Slack is
// acknowledged first (it gives 3 s); then the person is identified, and every
// vote goes through ApprovalWorkflow.vote, which decides and audits. Answers go
// back as ephemeral messages only the clicker sees.
import { z } from 'zod';
import type {
  ApprovalRequestView,
  ApprovalWorkflow,
  ApproverConsole,
  PrincipalDirectory,
  VoteDecisionName,
  VoteOutcome,
} from '../port.js';
import type { AuditSink } from './audit-sink.js';
import type { SlackDelivery } from './delivery.js';
import type { SlackIdentities } from './identity.js';
import type { SlackLogger } from './logger.js';
import {
  buildConfirmModal,
  buildDenyModal,
  CHANNEL_ID,
  decodeModalContext,
  inputValue,
  MAX_MODAL_REASON,
  REASON_BLOCK_ID,
  REQUEST_ID,
  RESOURCE_BLOCK_ID,
} from './modals.js';
import { escapeMrkdwn, inlineCode } from './text.js';
import { classifySlackError, type WebClient } from './web-api.js';

const slackUserId = z.string().regex(/^[UW][A-Z0-9]{2,30}$/, 'expected a Slack user id');
const teamId = z.string().max(64);
const user = z.object({ id: slackUserId, team_id: teamId.optional() });

const blockActionsSchema = z.object({
  type: z.literal('block_actions'),
  user,
  team: z.object({ id: teamId }).nullish(),
  trigger_id: z.string().min(1).max(255),
  container: z
    .object({ channel_id: z.string().regex(CHANNEL_ID).optional() })
    .partial()
    .optional(),
  channel: z.object({ id: z.string().regex(CHANNEL_ID) }).optional(),
  actions: z
    .array(
      z.object({
        action_id: z.string().max(255),
        value: z.string().regex(REQUEST_ID, 'expected a request id').optional(),
      }),
    )
    .min(1)
    .max(25),
});

const viewSubmissionSchema = z.object({
  type: z.literal('view_submission'),
  user,
  team: z.object({ id: teamId }).nullish(),
  view: z.object({
    id: z.string().min(1).max(64),
    callback_id: z.string().max(255),
    private_metadata: z.string().max(3000),
    state: z
      .object({
        values: z.record(z.string(), z.record(z.string(), z.object({ value: z.string().max(4000).nullish() }).loose())),
      })
      .loose(),
  }),
});

type AckFn = (response?: unknown) => Promise<void>;

/** Refusals that mean the card may be out of date: refresh it. */
const ENDED = new Set(['ERR_REQUEST_RESOLVED', 'ERR_REQUEST_EXPIRED', 'ERR_REQUEST_CANCELLED']);

const describe = (r: ApprovalRequestView): string => `${inlineCode(r.operation)} on ${inlineCode(r.resource)}`;
const approvals = (r: ApprovalRequestView): number => r.votes.filter((v) => v.decision === 'approve').length;

export class SlackInteractions {
  constructor(
    private readonly deps: {
      workflow: ApprovalWorkflow;
      directory: PrincipalDirectory;
      identities: SlackIdentities;
      delivery: SlackDelivery;
      client: WebClient;
      audit: AuditSink;
      clock: { now(): number };
      logger: SlackLogger;
      /** Re-renders every card of a request (after a click on a request that already ended). */
      refreshCards: (requestId: string, why: string) => Promise<void>;
      /** The approver console, when on (sign-in links for step-up webauthn). */
      console?: ApproverConsole | undefined;
    },
  ) {}

  /**
   * "Sign in to approve" on a passkey rule's card: a one-time console link, sent
   * as an ephemeral message only the clicker sees, and only to someone who may
   * approve this request. Such a session can approve only with a passkey, and
   * cannot register one (docs/console.md, "Threat model").
   */
  async onConsoleSignIn(body: unknown): Promise<void> {
    const parsed = blockActionsSchema.safeParse(body);
    if (!parsed.success) {
      this.deps.logger.warn(
        { issues: parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.')}: ${i.message}`) },
        'ignored a malformed Slack button payload',
      );
      return;
    }
    const p = parsed.data;
    const requestId = p.actions[0]?.value;
    const channel = p.container?.channel_id ?? p.channel?.id;
    const deliveryId = `slack.action.${p.trigger_id}`;
    const reply = (text: string) => this.reply(channel, p.user.id, text, deliveryId);
    if (requestId === undefined) return;
    try {
      const who = await this.deps.identities.resolve(p.user.id, p.user.team_id ?? p.team?.id);
      if (!who.ok) {
        await reply(`:no_entry_sign: ${escapeMrkdwn(who.message)}`);
        return;
      }
      const console = this.deps.console;
      const request = await this.deps.workflow.get(requestId);
      if (console === undefined || request === undefined) {
        await reply(':warning: The approver console is not available for this request.');
        return;
      }
      if (!(await this.needsModal(request, who.principal.name, 'deny'))) {
        await reply(
          `:no_entry_sign: You cannot approve ${describe(request)} (it ended, you voted already, or the rule does not name you).`,
        );
        return;
      }
      const link = await console.signInLink(who.principal.name, requestId, 'slack');
      if (link === undefined) {
        await reply(
          `:information_source: Sign-in links are not sent through Slack here: open ${request.consoleUrl ?? 'the approver console'} and sign in with your identity provider.`,
        );
        return;
      }
      await reply(
        `:key: Your one-time sign-in link for ${describe(request)}: <${link}|sign in to approve>. It works once, for a few minutes; do not share it. You will confirm the approval with your passkey.`,
      );
    } catch (e) {
      await this.failed(e, requestId, reply);
    }
  }

  /** Approve / Deny button. Call after ack(). */
  async onButton(body: unknown, decision: VoteDecisionName): Promise<void> {
    const parsed = blockActionsSchema.safeParse(body);
    if (!parsed.success) {
      this.deps.logger.warn(
        { issues: parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.')}: ${i.message}`) },
        'ignored a malformed Slack button payload',
      );
      return;
    }
    const p = parsed.data;
    const requestId = p.actions[0]?.value;
    const channel = p.container?.channel_id ?? p.channel?.id;
    const deliveryId = `slack.action.${p.trigger_id}`;
    const reply = (text: string) => this.reply(channel, p.user.id, text, deliveryId);
    if (requestId === undefined) return;
    try {
      const who = await this.deps.identities.resolve(p.user.id, p.user.team_id ?? p.team?.id);
      if (!who.ok) {
        await this.auditRefusal(requestId, p.user.id, decision, who.code, who.message);
        await reply(`:no_entry_sign: ${escapeMrkdwn(who.message)}`);
        return;
      }
      const request = await this.deps.workflow.get(requestId);
      if (request !== undefined && (await this.needsModal(request, who.principal.name, decision))) {
        const ctx = { requestId, channel };
        const view = decision === 'approve' ? buildConfirmModal(request, ctx) : buildDenyModal(request, ctx);
        try {
          await this.deps.client.views.open({ trigger_id: p.trigger_id, view });
        } catch (e) {
          const failure = classifySlackError(e);
          // Another replica already opened the form for this same click (a duplicate delivery).
          if (failure.kind === 'permanent' && failure.error === 'trigger_exchanged') return;
          this.deps.logger.warn({ requestId, err: failure.message }, 'views.open failed');
          await reply(
            `:warning: Slack did not open the form (${escapeMrkdwn(failure.message)}). Nothing was recorded; click again.`,
          );
        }
        return;
      }
      // Everything else is for the workflow to decide (and audit), including refusals.
      const outcome = await this.deps.workflow.vote({
        requestId,
        principal: who.principal.name,
        channel: who.channel,
        decision,
        reason: '',
        stepUp: 'click',
        deliveryId,
      });
      await this.answer(outcome, decision, reply, requestId, deliveryId);
    } catch (e) {
      await this.failed(e, requestId, reply);
    }
  }

  /** Step-up confirm modal submitted: the resource re-typed and a reason. */
  async onConfirmSubmit(body: unknown, ack: AckFn): Promise<void> {
    await this.onSubmit(body, ack, 'approve');
  }

  /** Deny modal submitted: the reason. */
  async onDenySubmit(body: unknown, ack: AckFn): Promise<void> {
    await this.onSubmit(body, ack, 'deny');
  }

  private async onSubmit(body: unknown, ack: AckFn, decision: VoteDecisionName): Promise<void> {
    const parsed = viewSubmissionSchema.safeParse(body);
    const ctx = parsed.success ? decodeModalContext(parsed.data.view.private_metadata) : undefined;
    if (!parsed.success || ctx === undefined) {
      this.deps.logger.warn({}, 'ignored a malformed Slack view submission');
      await ack({
        response_action: 'errors',
        errors: { [REASON_BLOCK_ID]: 'This form is damaged; close it and click the button on the card again.' },
      });
      return;
    }
    const p = parsed.data;
    const deliveryId = `slack.view.${p.view.id}`;
    const reply = (text: string) => this.reply(ctx.channel, p.user.id, text, deliveryId);
    const reason = inputValue(p.view.state, REASON_BLOCK_ID).trim();
    const typed = inputValue(p.view.state, RESOURCE_BLOCK_ID).trim();
    const errors: Record<string, string> = {};
    if (reason === '') errors[REASON_BLOCK_ID] = 'Give a reason: it is recorded with your vote.';
    if (reason.length > MAX_MODAL_REASON) errors[REASON_BLOCK_ID] = `At most ${MAX_MODAL_REASON} characters.`;
    let request: ApprovalRequestView | undefined;
    try {
      if (decision === 'approve') {
        request = await this.deps.workflow.get(ctx.requestId);
        if (request !== undefined && typed !== request.resource) {
          errors[RESOURCE_BLOCK_ID] =
            `That is not the resource of this request. Type exactly: ${request.resource}`.slice(0, 2000);
        }
      }
    } catch (e) {
      await ack();
      await this.failed(e, ctx.requestId, reply);
      return;
    }
    if (Object.keys(errors).length > 0) {
      await ack({ response_action: 'errors', errors });
      return;
    }
    await ack();
    try {
      const who = await this.deps.identities.resolve(p.user.id, p.user.team_id ?? p.team?.id);
      if (!who.ok) {
        await this.auditRefusal(ctx.requestId, p.user.id, decision, who.code, who.message);
        await reply(`:no_entry_sign: ${escapeMrkdwn(who.message)}`);
        return;
      }
      const outcome = await this.deps.workflow.vote({
        requestId: ctx.requestId,
        principal: who.principal.name,
        channel: who.channel,
        decision,
        reason,
        stepUp: decision === 'approve' ? 'confirm' : 'click',
        ...(decision === 'approve' ? { confirmedResource: typed } : {}),
        deliveryId,
      });
      await this.answer(outcome, decision, reply, ctx.requestId, deliveryId);
    } catch (e) {
      await this.failed(e, ctx.requestId, reply);
    }
  }

  /**
   * A modal first when the vote needs more than a click (a deny reason, or the
   * step-up confirm) and the person could cast it. Whoever could not is sent
   * straight to the workflow, whose refusal says exactly why.
   */
  private async needsModal(r: ApprovalRequestView, principal: string, decision: VoteDecisionName): Promise<boolean> {
    if (decision === 'approve' && r.stepUp !== 'confirm') return false;
    if (r.state !== 'PENDING_APPROVAL' || this.deps.clock.now() >= r.expiresAt) return false;
    if (r.votes.some((v) => v.principal === principal)) return false;
    if (r.approvers.includes(principal)) return true;
    for (const group of r.groups) if ((await this.deps.directory.groupMembers(group)).includes(principal)) return true;
    return false;
  }

  private async answer(
    outcome: VoteOutcome,
    decision: VoteDecisionName,
    reply: (t: string) => Promise<void>,
    requestId: string,
    deliveryId: string,
  ): Promise<void> {
    if (!outcome.counted) {
      await reply(`:no_entry_sign: Not recorded: ${escapeMrkdwn(outcome.message)}`);
      if (ENDED.has(outcome.code)) await this.deps.refreshCards(requestId, `refused.${deliveryId}`);
      return;
    }
    const r = outcome.request;
    const verb = decision === 'approve' ? 'approval' : 'denial';
    if (r.state === 'APPROVED')
      await reply(`:white_check_mark: Your ${verb} of ${describe(r)} is recorded; the request is now *approved*.`);
    else if (r.state === 'DENIED')
      await reply(`:no_entry: Your ${verb} of ${describe(r)} is recorded; the request is now *denied*.`);
    else
      await reply(
        `:ballot_box_with_check: Your ${verb} of ${describe(r)} is recorded: ${approvals(r)} of ${r.approvalsRequired} approval(s) given so far.`,
      );
  }

  private async failed(e: unknown, requestId: string, reply: (t: string) => Promise<void>): Promise<void> {
    const coded = e as { code?: unknown; message?: string };
    this.deps.logger.error({ requestId, code: coded?.code, err: coded?.message }, 'Slack interaction failed');
    const why = coded?.code === 'ERR_SLACK_USERGROUP_UNAVAILABLE' ? `: ${escapeMrkdwn(coded.message ?? '')}` : '';
    await reply(
      `:warning: Countersign could not process your click${why}. Your vote may not be recorded: check the card, and click again if it does not show it.`,
    ).catch(() => undefined);
  }

  private async reply(channel: string | undefined, user: string, text: string, deliveryId: string): Promise<void> {
    try {
      await this.deps.delivery.ephemeral(channel, user, text, deliveryId);
    } catch (e) {
      this.deps.logger.warn({ user, err: (e as Error).message }, 'could not queue an answer to a Slack user');
    }
  }

  private async auditRefusal(
    requestId: string,
    slackUser: string,
    decision: VoteDecisionName,
    code: string,
    message: string,
  ): Promise<void> {
    try {
      // No principal is known for this person: the record names them by their Slack user id.
      await this.deps.audit.append({
        type: 'vote_refused',
        request_id: requestId,
        principal: `slack:${slackUser}`,
        slack_user: slackUser,
        channel: 'slack',
        decision,
        code,
        message,
      });
    } catch (e) {
      this.deps.logger.warn({ requestId, err: (e as Error).message }, 'could not audit a refused Slack vote');
    }
  }
}
