// The Broker gRPC service: authenticates the caller, hands the request to the
// domain, and translates the outcome. Errors are mapped in status.ts only.
import type { Metadata, ServerUnaryCall } from '@grpc/grpc-js';
import { RequestState, type BrokerServer, type RequestOperationResponse } from '@countersign/proto';
import type { Logger } from 'pino';
import { CountersignError } from '../errors.js';
import type { RedemptionService } from '../credentials/redemption.js';
import type { PeerAuthenticator } from '../identity/peer-authenticator.js';
import type { OidcExchange } from '../exchange/oidc-exchange.js';
import type { Metrics } from '../observability/metrics.js';
import { whoCanApprove } from '../policy/index.js';
import type { Tracing } from '../observability/tracing.js';
import type { RequestDelivery } from '../requests/delivery.js';
import type { WatchStreamSlots } from '../requests/limits.js';
import type { RequestService } from '../requests/request-service.js';
import type { BrokerApprovalWorkflow } from '../requests/workflow.js';
import { toCredential, toDuration, toRequest } from './convert.js';
import { serverStream, unary } from './status.js';

export interface BrokerServiceDeps {
  peers: PeerAuthenticator;
  /** Finds the token claims behind SVIDs issued by Identity.ExchangeToken (absent: none are). */
  exchange?: OidcExchange | undefined;
  requests: RequestService;
  redemptions: RedemptionService;
  delivery: RequestDelivery;
  workflow: BrokerApprovalWorkflow;
  logger: Logger;
  metrics: Metrics;
  pollIntervalMs: number;
  /** Open WatchRequest streams per workload (requests.limits.max_watch_streams_per_workload). */
  watchSlots: WatchStreamSlots;
  /** Aborted when the broker stops: open watches end with UNAVAILABLE so clients reconnect to another replica. */
  shutdown?: AbortSignal;
  tracing?: Tracing;
}

export const MAX_REQUEST_ID_LENGTH = 64;

export function requestIdField(value: string): string {
  if (value === '')
    throw new CountersignError('invalid_argument', 'ERR_INVALID_FIELD', 'request_id: is required', {
      field: 'request_id',
    });
  if (value.length > MAX_REQUEST_ID_LENGTH || !/^[A-Za-z0-9_-]+$/.test(value)) {
    throw new CountersignError(
      'invalid_argument',
      'ERR_INVALID_FIELD',
      `request_id: ${JSON.stringify(value.slice(0, MAX_REQUEST_ID_LENGTH))} is not a request id`,
      {
        field: 'request_id',
      },
    );
  }
  return value;
}

export function createBrokerService(deps: BrokerServiceDeps): BrokerServer {
  const ctx = { logger: deps.logger, metrics: deps.metrics, tracing: deps.tracing };
  const identityOf = (call: ServerUnaryCall<unknown, unknown> | { getPeer(): string; metadata: Metadata }) =>
    deps.peers.authenticate(call.getPeer(), call.metadata);

  return {
    requestOperation: unary(
      ctx,
      'RequestOperation',
      async (call): Promise<RequestOperationResponse> => {
        const identity = await identityOf(call);
        const oidc = await deps.exchange?.claimsOf(identity);
        const outcome = await deps.requests.requestOperation(
          oidc === undefined ? identity : { ...identity, oidc },
          call.request,
        );
        const base: RequestOperationResponse = {
          requestId: outcome.requestId,
          state: RequestState.REQUEST_STATE_UNSPECIFIED,
          credential: undefined,
          message: '',
          rule: outcome.rule ?? '',
          expiresAt: undefined,
          pollInterval: undefined,
          request: undefined,
        };
        switch (outcome.state) {
          case 'APPROVED':
            return {
              ...base,
              state: RequestState.REQUEST_STATE_APPROVED,
              credential: toCredential(outcome.credential),
            };
          case 'DENIED':
            return { ...base, state: RequestState.REQUEST_STATE_DENIED, message: outcome.message };
          case 'PENDING_APPROVAL': {
            const r = outcome.request;
            const who = whoCanApprove(r.approvers, r.groups, outcome.excluded);
            return {
              ...base,
              state: RequestState.REQUEST_STATE_PENDING_APPROVAL,
              message: `waiting for ${r.approvalsRequired} approval(s) from ${who}`,
              expiresAt: new Date(r.expiresAt),
              pollInterval: toDuration(outcome.pollIntervalMs),
              request: toRequest(r),
            };
          }
        }
      },
      (res) => ({
        'countersign.request_id': res.requestId,
        'countersign.state': RequestState[res.state] ?? String(res.state),
        'countersign.rule': res.rule,
      }),
    ),

    getRequest: unary(ctx, 'GetRequest', async (call) => {
      const identity = await identityOf(call);
      const snapshot = await deps.delivery.get(identity, requestIdField(call.request.requestId));
      return {
        request: toRequest(snapshot.request, snapshot.votes),
        credential: snapshot.credential === undefined ? undefined : toCredential(snapshot.credential),
        pollInterval: toDuration(deps.pollIntervalMs),
      };
    }),

    watchRequest: serverStream(ctx, 'WatchRequest', async (call) => {
      const identity = await identityOf(call);
      const id = requestIdField(call.request.requestId);
      const release = deps.watchSlots.acquire(identity.spiffeId);
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      call.on('close', () => abort.abort());
      // The identity may have been awaited while the client gave up.
      if (call.cancelled) abort.abort();
      const onShutdown = () => abort.abort();
      deps.shutdown?.addEventListener('abort', onShutdown, { once: true });
      deps.metrics.watchStreams.inc();
      let ended = false;
      try {
        await deps.delivery.watch(
          identity,
          id,
          (snapshot) => {
            ended = snapshot.request.state !== 'PENDING_APPROVAL';
            call.write({
              request: toRequest(snapshot.request, snapshot.votes),
              credential: snapshot.credential === undefined ? undefined : toCredential(snapshot.credential),
            });
          },
          abort.signal,
        );
      } finally {
        release();
        deps.metrics.watchStreams.dec();
        deps.shutdown?.removeEventListener('abort', onShutdown);
      }
      if (!ended && deps.shutdown?.aborted && !call.cancelled) {
        throw new CountersignError(
          'unavailable',
          'ERR_SHUTTING_DOWN',
          'the broker is shutting down; watch again (another replica answers)',
        );
      }
    }),

    cancelRequest: unary(ctx, 'CancelRequest', async (call) => {
      const identity = await identityOf(call);
      const request = await deps.workflow.cancel(
        identity.spiffeId,
        requestIdField(call.request.requestId),
        call.request.reason,
      );
      return { request: toRequest(request) };
    }),

    redeemCredential: unary(ctx, 'RedeemCredential', async (call) => {
      const identity = await identityOf(call);
      const redemption = await deps.redemptions.redeem(call.request.token, identity);
      return { credentialId: redemption.jti, requestId: redemption.requestId, redeemedAt: new Date(redemption.at) };
    }),
  };
}
