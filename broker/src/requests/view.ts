// What channels see of a request (the approver port's ApprovalRequestView).
import type { ApprovalRequestView, VoteView } from '@countersign/approvers';
import type { StoredRequest, StoredVote } from './store.js';

export const toVoteView = (v: StoredVote): VoteView => ({
  principal: v.principal,
  decision: v.decision,
  channel: v.channel,
  at: v.at,
  stepUp: v.stepUp,
  reason: v.reason,
});

export function toView(
  r: StoredRequest,
  votes: StoredVote[],
  consoleUrl?: (requestId: string) => string,
): ApprovalRequestView {
  return {
    id: r.id,
    state: r.state,
    requester: r.requester,
    onBehalfOf: r.onBehalfOf,
    operation: r.operation,
    resource: r.resource,
    parametersJson: r.parametersJson,
    parametersDigest: r.parametersDigest,
    reason: r.reason,
    ticket: r.ticket,
    rule: r.rule,
    approvers: r.approvers,
    groups: r.groups,
    approvalsRequired: r.approvalsRequired,
    stepUp: r.stepUp,
    stepUpMaxAgeMs: r.stepUpMaxAgeMs,
    consoleUrl: consoleUrl?.(r.id),
    votes: votes.map(toVoteView),
    notify: r.notify,
    createdAt: r.createdAt,
    expiresAt: r.expiresAt,
    resolvedAt: r.resolvedAt,
    resolutionMessage: r.resolutionMessage,
    ...(r.workloadClaims ? { workload: r.workloadClaims } : {}),
  };
}
