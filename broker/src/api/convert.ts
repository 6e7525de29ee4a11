// Domain values -> countersign.v1 messages.
import {
  RequestState,
  VoteDecision,
  type Credential,
  type Duration,
  type Request,
  type Vote,
} from '@countersign/proto';
import type { MintedCredential } from '../credentials/mint.js';
import type { CollectedCredential } from '../requests/collector.js';
import type { RequestStatus, StoredRequest, StoredVote } from '../requests/store.js';

export const STATE: Record<RequestStatus, RequestState> = {
  PENDING_APPROVAL: RequestState.REQUEST_STATE_PENDING_APPROVAL,
  APPROVED: RequestState.REQUEST_STATE_APPROVED,
  DENIED: RequestState.REQUEST_STATE_DENIED,
  EXPIRED: RequestState.REQUEST_STATE_EXPIRED,
  CANCELLED: RequestState.REQUEST_STATE_CANCELLED,
};

export const toDuration = (ms: number): Duration => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });

export const toCredential = (c: MintedCredential | CollectedCredential): Credential => ({
  token: c.token,
  id: c.jti,
  expiresAt: new Date(c.expiresAt),
});

export const toVote = (v: StoredVote): Vote => ({
  principal: v.principal,
  decision: v.decision === 'approve' ? VoteDecision.VOTE_DECISION_APPROVE : VoteDecision.VOTE_DECISION_DENY,
  channel: v.channel,
  at: new Date(v.at),
  stepUp: v.stepUp,
  reason: v.reason,
});

export function toRequest(r: StoredRequest, votes: StoredVote[] = []): Request {
  return {
    id: r.id,
    state: STATE[r.state],
    requester: r.requester,
    operation: r.operation,
    resource: r.resource,
    parametersJson: r.parametersJson,
    parametersDigest: r.parametersDigest,
    reason: r.reason,
    onBehalfOf: r.onBehalfOf,
    ticket: r.ticket,
    rule: r.rule,
    policyDigest: r.policyDigest,
    approvalsRequired: r.approvalsRequired,
    votes: votes.map(toVote),
    createdAt: new Date(r.createdAt),
    expiresAt: new Date(r.expiresAt),
    resolvedAt: r.resolvedAt === undefined ? undefined : new Date(r.resolvedAt),
    resolutionMessage: r.resolutionMessage,
    audience: r.audience,
    approvers: r.approvers,
    stepUp: r.stepUp,
    groups: r.groups,
    // As approvers see them in Slack and the console; undefined for a request made with a plain SVID.
    workload: r.workloadClaims && { issuer: r.workloadClaims.issuer, claims: { ...r.workloadClaims.claims } },
  };
}
