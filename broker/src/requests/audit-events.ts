// The audit records of an approval request's life, built from what is stored.
// Everything they are built from is immutable once written (request content,
// votes, the end state), so a record rebuilt after a crash is the same record.
import type { ApprovalEvidence } from '@countersign/proto';
import type { AuditEvent } from '../audit/audit-log.js';
import type { StoredRequest, StoredVote } from './store.js';

function facts(r: StoredRequest) {
  return {
    request_id: r.id,
    requester: r.requester,
    operation: r.operation,
    resource: r.resource,
    parameters_digest: r.parametersDigest,
    audience: r.audience,
    on_behalf_of: r.onBehalfOf || undefined,
    reason: r.reason || undefined,
    ticket: r.ticket || undefined,
    certificate_thumbprint: r.certificateThumbprint,
  };
}

/** The request as received, before policy's answer (the same record the allow and deny paths write). */
export const requestReceivedEvent = (r: StoredRequest): AuditEvent => ({ type: 'request_received', ...facts(r) });

/** The policy decided "approve": the request now waits for people. */
export const approvalRequestedEvent = (r: StoredRequest): AuditEvent => ({
  type: 'decision',
  decision: 'approve',
  rule: r.rule,
  rules: r.rules,
  policy_digest: r.policyDigest,
  approvers: r.approvers,
  groups: r.groups,
  approvals_required: r.approvalsRequired,
  deny_threshold: r.denyThreshold,
  step_up: r.stepUp,
  step_up_max_age_ms: r.stepUpMaxAgeMs,
  expires_at: r.expiresAt,
  ...facts(r),
});

export const voteEvent = (r: StoredRequest, v: StoredVote): AuditEvent => ({
  type: 'vote',
  request_id: r.id,
  principal: v.principal,
  decision: v.decision,
  channel: v.channel,
  voted_at: v.at,
  step_up: v.stepUp,
  reason: v.reason || undefined,
  // The assertion as signed, with what its challenge was derived from: `audit verify` checks it offline.
  webauthn: v.passkey,
});

export const voteRefusedEvent = (
  requestId: string,
  principal: string,
  channel: string,
  decision: string,
  code: string,
  message: string,
): AuditEvent => ({
  type: 'vote_refused',
  request_id: requestId,
  principal,
  channel,
  decision,
  code,
  message,
});

export const resolvedEvent = (r: StoredRequest, votes: StoredVote[]): AuditEvent => ({
  type: 'resolution',
  request_id: r.id,
  state: r.state,
  message: r.resolutionMessage,
  resolved_at: r.resolvedAt,
  approvals: votes.filter((v) => v.decision === 'approve').map((v) => v.principal),
  denials: votes.filter((v) => v.decision === 'deny').map((v) => v.principal),
  rule: r.rule,
  policy_digest: r.policyDigest,
});

/** What the credential's "approval" claim says: who approved, where, when, with which step-up. */
export const approvalEvidence = (r: StoredRequest, votes: StoredVote[]): ApprovalEvidence => ({
  request_id: r.id,
  rule: r.rule,
  policy_digest: r.policyDigest,
  approvers: votes
    .filter((v) => v.decision === 'approve')
    .map((v) => ({ principal: v.principal, channel: v.channel, at: Math.floor(v.at / 1000), step_up: v.stepUp })),
});
