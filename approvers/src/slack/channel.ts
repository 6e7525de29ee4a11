// The Slack ApproverChannel: the broker calls it (from its own BullMQ jobs) when
// a request is created, a vote is counted and a request ends. It only decides
// where messages go and queues them; SlackDelivery makes the calls.
import type { ApprovalRequestView, ApproverChannel, BreakGlassNotice, PrincipalDirectory, VoteView } from '../port.js';
import type { SlackDelivery } from './delivery.js';
import type { SlackLogger } from './logger.js';
import type { MessageRefs } from './message-refs.js';
import { breakGlassTargets, targetsFor, type Target } from './targets.js';

export class SlackChannel implements ApproverChannel {
  readonly name = 'slack';

  constructor(
    private readonly deps: {
      delivery: SlackDelivery;
      refs: MessageRefs;
      directory: PrincipalDirectory;
      logger: SlackLogger;
    },
    private readonly options: { defaultChannel: string | undefined },
  ) {}

  /** The targets chosen at creation; chosen now if the creation event was never handled. */
  private async targets(r: ApprovalRequestView): Promise<Target[]> {
    const stored = await this.deps.refs.targets(r.id);
    if (stored !== undefined) return stored;
    return this.deps.refs.setTargets(
      r.id,
      await targetsFor(r, this.deps.directory, this.options.defaultChannel),
      r.expiresAt,
    );
  }

  async requestCreated(r: ApprovalRequestView): Promise<void> {
    const targets = await this.targets(r);
    if (targets.length === 0) {
      this.deps.logger.warn(
        { requestId: r.id, rule: r.rule },
        'no Slack destination for this request: the rule names no Slack channel, no default channel is set, and no approver has a slack_user_id',
      );
    }
    await this.deps.delivery.cards(r.id, targets, 'created');
  }

  async voteRecorded(r: ApprovalRequestView, vote: VoteView): Promise<void> {
    const targets = await this.targets(r);
    await this.deps.delivery.cards(r.id, targets, `vote.${vote.principal}`);
    await this.deps.delivery.replies(r.id, targets, `vote.${vote.principal}`);
  }

  async requestResolved(r: ApprovalRequestView): Promise<void> {
    const targets = await this.targets(r);
    await this.deps.delivery.cards(r.id, targets, `end.${r.state}`);
    await this.deps.delivery.replies(r.id, targets, 'end');
    // The human an agent acted for hears how it ended, wherever the cards went.
    if (r.onBehalfOf !== '') {
      const human = this.deps.directory.byName(r.onBehalfOf) ?? this.deps.directory.byEmail(r.onBehalfOf);
      if (human?.slackUserId !== undefined) await this.deps.delivery.notice(r.id, human.slackUserId);
    }
  }

  async breakGlassUsed(n: BreakGlassNotice): Promise<void> {
    const targets = await breakGlassTargets(n, this.deps.directory, this.options.defaultChannel);
    if (targets.length === 0) {
      this.deps.logger.warn(
        { requestId: n.requestId, rule: n.rule },
        'a break-glass use has no Slack destination: the rule names no Slack channel, no default channel is set, and no approver has a slack_user_id',
      );
    }
    await this.deps.delivery.breakGlass(n, targets);
  }

  /** Re-renders every card of a request, e.g. after a click on a card that was out of date. */
  async refresh(requestId: string, why: string): Promise<void> {
    const targets = await this.deps.refs.targets(requestId);
    if (targets !== undefined) await this.deps.delivery.cards(requestId, targets, why);
  }
}
