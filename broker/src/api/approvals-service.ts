// The Approvals gRPC service: people, authenticated by their own SVID, list and
// decide pending requests. The SVID's SPIFFE ID is mapped to a principal through
// the principals directory; the vote itself goes through the approval workflow
// like every other channel's.
import type { Metadata } from '@grpc/grpc-js';
import { VoteDecision, type ApprovalsServer } from '@countersign/proto';
import type { PrincipalDirectory } from '@countersign/approvers';
import type { Logger } from 'pino';
import { CountersignError } from '../errors.js';
import type { PeerAuthenticator } from '../identity/peer-authenticator.js';
import type { Metrics } from '../observability/metrics.js';
import type { Tracing } from '../observability/tracing.js';
import { VOTE_REFUSALS, type BrokerApprovalWorkflow } from '../requests/workflow.js';
import { requestIdField } from './broker-service.js';
import { toRequest } from './convert.js';
import { unary } from './status.js';

/**
 * The channel votes cast over this service carry: "cli" when the `countersign` CLI says it is
 * the caller (metadata countersign-channel: cli), "grpc" for any other client (the SDK,
 * grpcurl). The label only tells where a vote came from; who voted is the caller's SVID.
 */
export const CLI_CHANNEL = 'cli';
export const GRPC_CHANNEL = 'grpc';
export const CHANNEL_METADATA = 'countersign-channel';

const channelOf = (metadata: Metadata): string =>
  metadata.get(CHANNEL_METADATA)[0] === CLI_CHANNEL ? CLI_CHANNEL : GRPC_CHANNEL;
const MAX_CONFIRM_RESOURCE_LENGTH = 512;

export function createApprovalsService(deps: {
  peers: PeerAuthenticator;
  workflow: BrokerApprovalWorkflow;
  directory: PrincipalDirectory;
  logger: Logger;
  metrics: Metrics;
  tracing?: Tracing;
}): ApprovalsServer {
  const principalOf = async (peer: string, metadata: Metadata): Promise<string> => {
    const identity = await deps.peers.authenticate(peer, metadata);
    const principal = deps.directory.bySpiffeId(identity.spiffeId);
    if (principal === undefined) {
      throw new CountersignError(
        'permission_denied',
        'ERR_NOT_AN_APPROVER',
        `${identity.spiffeId} is not a principal: add it to a person's spiffe_ids in the principals file to let them approve`,
      );
    }
    return principal.name;
  };

  return {
    listPending: unary(deps, 'ListPending', async (call) => {
      const principal = await principalOf(call.getPeer(), call.metadata);
      const pending = await deps.workflow.pendingFor(principal);
      return { requests: pending.map(({ request, votes }) => toRequest(request, votes)) };
    }),

    decide: unary(deps, 'Decide', async (call) => {
      const principal = await principalOf(call.getPeer(), call.metadata);
      const { request } = call;
      const requestId = requestIdField(request.requestId);
      if (
        request.decision !== VoteDecision.VOTE_DECISION_APPROVE &&
        request.decision !== VoteDecision.VOTE_DECISION_DENY
      ) {
        throw new CountersignError(
          'invalid_argument',
          'ERR_INVALID_FIELD',
          `decision: must be VOTE_DECISION_APPROVE or VOTE_DECISION_DENY, got ${request.decision}`,
          {
            field: 'decision',
          },
        );
      }
      if (request.confirmResource.length > MAX_CONFIRM_RESOURCE_LENGTH) {
        throw new CountersignError(
          'invalid_argument',
          'ERR_INVALID_FIELD',
          `confirm_resource: is ${request.confirmResource.length} characters long, at most ${MAX_CONFIRM_RESOURCE_LENGTH} are allowed`,
          {
            field: 'confirm_resource',
          },
        );
      }
      const confirmed = request.confirmResource !== '';
      const outcome = await deps.workflow.vote({
        requestId,
        principal,
        channel: channelOf(call.metadata),
        decision: request.decision === VoteDecision.VOTE_DECISION_APPROVE ? 'approve' : 'deny',
        reason: request.reason,
        stepUp: confirmed ? 'confirm' : 'click',
        confirmedResource: confirmed ? request.confirmResource : undefined,
      });
      if (!outcome.counted) {
        const kind = VOTE_REFUSALS[outcome.code as keyof typeof VOTE_REFUSALS] ?? 'failed_precondition';
        throw new CountersignError(kind, outcome.code, outcome.message, { requestId });
      }
      const loaded = await deps.workflow.load(requestId);
      return { request: loaded === undefined ? undefined : toRequest(loaded.request, loaded.votes) };
    }),
  };
}
