// The Approvals gRPC service: people, authenticated by their own SVID, list and
// decide pending requests.
import type { ApprovalsServer } from '@countersign/proto';
import type { Logger } from 'pino';
import type { PeerAuthenticator } from '../identity/peer-authenticator.js';
import { unary, unimplemented } from './status.js';

export function createApprovalsService(deps: { peers: PeerAuthenticator; logger: Logger }): ApprovalsServer {
  return {
    listPending: unary(deps.logger, 'ListPending', async (call) => {
      deps.peers.authenticate(call.getPeer(), call.metadata);
      throw unimplemented('Approvals.ListPending');
    }),
    decide: unary(deps.logger, 'Decide', async (call) => {
      deps.peers.authenticate(call.getPeer(), call.metadata);
      throw unimplemented('Approvals.Decide');
    }),
  };
}
