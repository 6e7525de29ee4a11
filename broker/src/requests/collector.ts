// Turning an approved request into its credential, when the requester collects
// it. One approval yields exactly one credential: the first collection mints it
// and stores it (collect-2.lua decides which collector wins); every later
// collection, on any replica, returns the same token, until the collection
// window closes or the credential expires. Only the workload that asked, with
// the very certificate it asked with, can collect, and the token leaves the
// broker only once its credential_issued record is durable.
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { CountersignError } from '../errors.js';
import type { SvidIdentity } from '../identity/x509-svid.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { credentialIssuedEvent } from '../credentials/issued-event.js';
import { approvalEvidence } from './audit-events.js';
import { ScriptCode } from './script-codes.js';
import type { Effect, OutboxPort } from './outbox.js';
import { realWaiter, type MinterPort, type RequestStorePort, type Waiter } from './ports.js';
import type { StoredCredential, StoredRequest, StoredVote } from './store.js';

export interface CollectedCredential {
  token: string;
  jti: string;
  expiresAt: number;
}

export interface CollectorOptions {
  /** How long after approval the credential can be collected. */
  collectionWindowMs: number;
  /** Credential lifetime when the rule sets none. */
  defaultTtlMs: number;
}

/** How long a collector waits for another one to finish auditing the credential it stored. */
export const PEER_AUDIT_WAIT_MS = 2000;

export class CredentialCollector {
  constructor(
    private readonly deps: {
      store: RequestStorePort;
      outbox: OutboxPort;
      minter: MinterPort;
      audit: AuditLog;
      clock: Clock;
      metrics: Metrics;
      logger: Logger;
      /** Real time for waiting on a peer's audit records (default: the system's). */
      waiter?: Waiter;
    },
    private readonly options: CollectorOptions,
  ) {}

  private windowClosed(r: StoredRequest, closesAt: number): CountersignError {
    return new CountersignError(
      'failed_precondition',
      'ERR_COLLECTION_WINDOW_CLOSED',
      `request ${r.id} was approved at ${new Date(r.resolvedAt ?? 0).toISOString()}, but its credential could only be collected until ${new Date(closesAt).toISOString()} (requests.collection_window); make a new request`,
    );
  }

  private certificateMismatch(r: StoredRequest): CountersignError {
    return new CountersignError(
      'failed_precondition',
      'ERR_CERTIFICATE_MISMATCH',
      `the credential of request ${r.id} is bound to the certificate that made the request (x5t#S256 ${r.certificateThumbprint}); collect it with that certificate, or make a new request`,
    );
  }

  async collect(identity: SvidIdentity, request: StoredRequest, votes: StoredVote[]): Promise<CollectedCredential> {
    const { store, clock } = this.deps;
    if (request.state !== 'APPROVED') {
      throw new CountersignError(
        'failed_precondition',
        'ERR_NOT_APPROVED',
        `request ${request.id} is ${request.state}, not APPROVED`,
      );
    }
    if (identity.spiffeId !== request.requester) {
      throw new CountersignError(
        'not_found',
        'ERR_REQUEST_NOT_FOUND',
        `request ${request.id} does not exist or belongs to another workload`,
      );
    }
    if (identity.thumbprint !== request.certificateThumbprint) throw this.certificateMismatch(request);

    let stored = await store.credential(request.id);
    if (stored === undefined) {
      const closesAt = (request.resolvedAt ?? 0) + this.options.collectionWindowMs;
      if (clock.now() >= closesAt) throw this.windowClosed(request, closesAt);
      await this.approvalAudited(request, votes);
      const minted = await this.deps.minter.mint({
        subject: request.requester,
        certificateThumbprint: request.certificateThumbprint,
        svidNotAfter: request.svidNotAfter,
        operation: request.operation,
        resource: request.resource,
        parametersDigest: request.parametersDigest,
        audience: request.audience,
        ttlCaps: [request.ttlCapMs ?? this.options.defaultTtlMs, request.requestedTtlMs],
        ...(request.onBehalfOf ? { onBehalfOf: request.onBehalfOf } : {}),
        approval: approvalEvidence(request, votes),
        ...(request.resolvedAt !== undefined ? { authTime: request.resolvedAt } : {}),
      });
      const [code, ...rest] = await store.storeCredential(
        request.id,
        identity.thumbprint,
        this.options.collectionWindowMs,
        minted,
      );
      switch (code) {
        case ScriptCode.Stored:
          // Ours won: it leaves the broker only after its record is durable.
          await this.deps.audit.append(credentialIssuedEvent(request.id, minted.token));
          await store.markCredentialAudited(request.id);
          this.deps.metrics.credentialsIssued.inc();
          this.deps.logger.info(
            { requestId: request.id, jti: minted.jti },
            'credential issued for an approved request',
          );
          return { token: minted.token, jti: minted.jti, expiresAt: minted.expiresAt };
        case ScriptCode.CredentialExists:
          stored = {
            token: rest[0] as string,
            jti: rest[1] as string,
            expiresAt: Number(rest[2]),
            audited: rest[3] === '1',
          };
          break;
        case ScriptCode.CertificateMismatch:
          throw this.certificateMismatch(request);
        case ScriptCode.WindowClosed:
          throw this.windowClosed(request, Number(rest[0]));
        case ScriptCode.NotFound:
          throw new CountersignError('not_found', 'ERR_REQUEST_NOT_FOUND', `request ${request.id} does not exist`);
        default:
          throw new CountersignError(
            'failed_precondition',
            'ERR_NOT_APPROVED',
            `request ${request.id} is ${rest[0] ?? 'not approved'}, not APPROVED`,
          );
      }
    }
    return this.deliverStored(request, stored);
  }

  /**
   * The votes and the resolution a credential rests on are in the audit chain before
   * its credential_issued record, so `audit verify` finds the evidence in order: the
   * process that ran the vote appends them (a requester watching on another replica
   * can get here first); after PEER_AUDIT_WAIT_MS, or when that process died or lost
   * Redis mid-way, they are appended here (the outbox's "at worst twice").
   */
  private async approvalAudited(request: StoredRequest, votes: StoredVote[]): Promise<void> {
    const { outbox } = this.deps;
    const effects: Effect[] = [
      { kind: 'resolved' },
      ...votes.map((v) => ({ kind: 'vote' as const, principal: v.principal })),
    ];
    const waiter = this.deps.waiter ?? realWaiter;
    const deadline = waiter.now() + PEER_AUDIT_WAIT_MS;
    let left = await outbox.pending(request.id, effects);
    while (left.length > 0 && waiter.now() < deadline) {
      await waiter.sleep(20);
      left = await outbox.pending(request.id, left);
    }
    if (left.length > 0) {
      this.deps.logger.warn(
        { requestId: request.id, effects: left.map((e) => e.kind) },
        'auditing an approval whose voter did not finish its records',
      );
      await outbox.complete(request.id, left, { request, votes });
    }
  }

  /** A credential someone stored: hand it out once its record is durable, waiting for (or finishing) the audit. */
  private async deliverStored(request: StoredRequest, first: StoredCredential): Promise<CollectedCredential> {
    let stored: StoredCredential | undefined = first;
    const waiter = this.deps.waiter ?? realWaiter;
    const deadline = waiter.now() + PEER_AUDIT_WAIT_MS;
    while (stored !== undefined && !stored.audited && waiter.now() < deadline) {
      await waiter.sleep(50);
      stored = await this.deps.store.credential(request.id);
    }
    if (stored === undefined) {
      const closesAt = (request.resolvedAt ?? 0) + this.options.collectionWindowMs;
      throw this.windowClosed(request, Math.min(closesAt, first.expiresAt));
    }
    if (!stored.audited) {
      // The collector that stored it died (or stalls) before its audit append: append it here.
      this.deps.logger.warn(
        { requestId: request.id, jti: stored.jti },
        'auditing a credential whose first collector did not',
      );
      await this.deps.audit.append(credentialIssuedEvent(request.id, stored.token));
      await this.deps.store.markCredentialAudited(request.id);
    }
    return { token: stored.token, jti: stored.jti, expiresAt: stored.expiresAt };
  }
}
