// A request view as the broker would hand it to a channel, for tests of the
// Slack rendering that need no broker.
import type { ApprovalRequestView } from '../../src/port.js';

export function sampleRequest(overrides: Partial<ApprovalRequestView> = {}): ApprovalRequestView {
  return {
    id: 'req_AbCdEfGhIjKlMnOp',
    state: 'PENDING_APPROVAL',
    requester: 'spiffe://example.org/ci/deployer',
    onBehalfOf: '',
    operation: 'deploy',
    resource: 'prod/payments',
    parametersJson: '{"replicas":3,"version":"1.4.2"}',
    parametersDigest: 'n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg',
    reason: 'release 1.4.2',
    ticket: 'CHG-1234',
    rule: 'prod-deploys',
    approvers: ['alice', 'bob'],
    groups: [],
    approvalsRequired: 2,
    stepUp: 'click',
    votes: [],
    notify: { slackChannels: ['C0APPROVALS'], directMessages: false },
    createdAt: Date.UTC(2026, 0, 1, 12, 0, 0),
    expiresAt: Date.UTC(2026, 0, 1, 12, 15, 0),
    resolvedAt: undefined,
    resolutionMessage: '',
    ...overrides,
  };
}
