// Telling the requester how its request stands: GetRequest (polling, with a
// CIBA-style slow_down for polls that come too fast) and WatchRequest (a stream of
// every change until the end). Both hand over the credential once the request is
// APPROVED. A watcher that reconnects first gets the current state, so a
// dropped stream never loses the outcome.
import { CountersignError } from '../errors.js';
import type { SvidIdentity } from '../identity/x509-svid.js';
import type { CollectedCredential, CredentialCollector } from './collector.js';
import { WakeSignal, type RequestEvents } from './events.js';
import type { PollGate } from './limits.js';
import type { RequestStorePort } from './ports.js';
import { isEndState, type StoredRequest, type StoredVote } from './store.js';

export interface RequestSnapshot {
  request: StoredRequest;
  votes: StoredVote[];
  /** Present once APPROVED, for the requester's own certificate. */
  credential?: CollectedCredential;
}

export interface DeliveryOptions {
  /** How often a watch re-reads the request even without an announcement. */
  watchRecheckMs: number;
}

export class RequestDelivery {
  constructor(
    private readonly deps: {
      store: Pick<RequestStorePort, 'getWithVotes'>;
      collector: Pick<CredentialCollector, 'collect'>;
      events: Pick<RequestEvents, 'subscribe'>;
      pollGate: Pick<PollGate, 'pass'>;
    },
    private readonly options: DeliveryOptions,
  ) {}

  private async load(identity: SvidIdentity, id: string): Promise<RequestSnapshot> {
    const loaded = await this.deps.store.getWithVotes(id);
    if (loaded === undefined || loaded.request.requester !== identity.spiffeId) {
      throw new CountersignError(
        'not_found',
        'ERR_REQUEST_NOT_FOUND',
        `request ${id} does not exist or belongs to another workload`,
      );
    }
    return loaded;
  }

  private async withCredential(identity: SvidIdentity, snapshot: RequestSnapshot): Promise<RequestSnapshot> {
    if (snapshot.request.state !== 'APPROVED') return snapshot;
    return { ...snapshot, credential: await this.deps.collector.collect(identity, snapshot.request, snapshot.votes) };
  }

  /** GetRequest: the request now, and its credential once approved. */
  async get(identity: SvidIdentity, id: string): Promise<RequestSnapshot> {
    const snapshot = await this.load(identity, id);
    if (snapshot.request.state === 'PENDING_APPROVAL') await this.deps.pollGate.pass(id);
    return this.withCredential(identity, snapshot);
  }

  /**
   * WatchRequest: sends the current state, then every change, and returns after
   * sending an end state. Errors (unknown request, Redis down) end the stream.
   */
  async watch(
    identity: SvidIdentity,
    id: string,
    send: (snapshot: RequestSnapshot) => void,
    abort: AbortSignal,
  ): Promise<void> {
    const signal = new WakeSignal();
    // Subscribe before the first read, so a change between the two is never missed.
    const unsubscribe = this.deps.events.subscribe(id, signal.wake);
    try {
      let sentVersion = 0;
      while (!abort.aborted) {
        const snapshot = await this.load(identity, id);
        const ended = isEndState(snapshot.request.state);
        if (snapshot.request.version > sentVersion || ended) {
          let full: RequestSnapshot;
          try {
            full = await this.withCredential(identity, snapshot);
          } catch (e) {
            // Approved, but not collectable by this caller: say so, then say why.
            if (e instanceof CountersignError && e.kind === 'failed_precondition') send(snapshot);
            throw e;
          }
          send(full);
          sentVersion = snapshot.request.version;
        }
        if (ended) return;
        await signal.wait(this.options.watchRecheckMs, abort);
      }
    } finally {
      unsubscribe();
    }
  }
}
