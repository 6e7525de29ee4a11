// The request's journey inside the broker: rate limit, validate, decide by policy,
// then allow (mint + audit), deny (audit) or create a pending approval (store +
// audit via the outbox, which also schedules its expiry and notifications).
// Nothing reaches the caller before its audit record is appended.
import type { BreakGlassNotice } from '@countersign/approvers';
import type { RequestOperationRequest } from '@countersign/proto';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { newRequestId } from '../ids.js';
import { credentialIssuedEvent } from '../credentials/issued-event.js';
import type { MintedCredential } from '../credentials/mint.js';
import type { SvidIdentity } from '../identity/x509-svid.js';
import type { ExchangedClaims } from '../identity/workload-claims.js';
import { CountersignError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import type { MinterPort, PolicyPort, RateLimiterPort, RequestStorePort } from './ports.js';
import type { OutboxPort } from './outbox.js';
import type { StoredRequest } from './store.js';
import type { TurnSlots } from './turns.js';
import {
  DEFAULT_SIZE_LIMITS,
  policyInputOf,
  validateOperationRequest,
  type OperationRequest,
  type SizeLimits,
} from './validate.js';

export interface RequestServiceOptions {
  defaultAudience: string;
  defaultTtlMs: number;
  pollIntervalMs: number;
  sizeLimits?: SizeLimits;
}

export type OperationOutcome =
  | { state: 'APPROVED'; requestId: string; rule: string; credential: MintedCredential; breakGlass?: boolean }
  | { state: 'DENIED'; requestId: string; rule: string | null; message: string }
  | {
      state: 'PENDING_APPROVAL';
      requestId: string;
      rule: string;
      request: StoredRequest;
      pollIntervalMs: number;
      /** Approvers who may not decide it: the requester's own people. */
      excluded: string[];
    };

/** The caller: its SVID and, when that SVID was exchanged for an OIDC token, what the token said. */
export type Requester = SvidIdentity & { oidc?: ExchangedClaims };

export class RequestService {
  constructor(
    private readonly deps: {
      policy: () => PolicyPort;
      minter: MinterPort;
      audit: AuditLog;
      store: RequestStorePort;
      outbox: OutboxPort;
      limiter: RateLimiterPort;
      clock: Clock;
      metrics: Metrics;
      /** Queues the announcement of a break-glass use to every approver (durably, before the credential leaves). */
      announceBreakGlass: (notice: BreakGlassNotice) => Promise<void>;
      /** How many requests are decided per turn of the event loop (turns.ts). */
      turns: TurnSlots;
    },
    private readonly options: RequestServiceOptions,
  ) {}

  /**
   * The request's facts, as the audit records them. Absent fields are left out rather
   * than set to undefined: an event without undefined members is canonicalised without
   * a copy (audit/jcs.ts), and the record's text is the same either way.
   */
  private requestFacts(identity: SvidIdentity, op: OperationRequest) {
    const facts: {
      requester: string;
      operation: string;
      resource: string;
      parameters_digest: string;
      audience: string;
      on_behalf_of?: string;
      reason?: string;
      ticket?: string;
      certificate_thumbprint: string;
    } = {
      requester: identity.spiffeId,
      operation: op.operation,
      resource: op.resource,
      parameters_digest: op.parametersDigest,
      audience: op.audience,
      certificate_thumbprint: identity.thumbprint,
    };
    if (op.onBehalfOf) facts.on_behalf_of = op.onBehalfOf;
    if (op.reason) facts.reason = op.reason;
    if (op.ticket) facts.ticket = op.ticket;
    return facts;
  }

  async requestOperation(identity: Requester, raw: RequestOperationRequest): Promise<OperationOutcome> {
    const started = performance.now();
    await this.deps.limiter.take(identity.spiffeId);
    // A burst the limiter let through together is decided a few requests per turn, so the
    // first answers leave (and their callers send again) while the rest are being decided.
    const slot = this.deps.turns.take();
    if (slot !== undefined) await slot;
    const outcome = await this.decide(identity, raw);
    const decision =
      outcome.state === 'APPROVED'
        ? outcome.breakGlass
          ? 'break_glass'
          : 'allow'
        : outcome.state === 'DENIED'
          ? 'deny'
          : 'approve';
    this.deps.metrics.requests.inc({ decision, rule: outcome.rule ?? '(none)' });
    this.deps.metrics.decisionSeconds.observe({ decision }, (performance.now() - started) / 1000);
    if (outcome.state === 'APPROVED') this.deps.metrics.credentialsIssued.inc();
    return outcome;
  }

  private async decide(identity: Requester, raw: RequestOperationRequest): Promise<OperationOutcome> {
    const parsed = validateOperationRequest(raw, this.options.sizeLimits ?? DEFAULT_SIZE_LIMITS);
    // The person who started a CI run is who the request is for: they never count as its approver.
    const actor = identity.oidc?.onBehalfOf;
    if (
      actor !== undefined &&
      parsed.onBehalfOf !== '' &&
      !(identity.oidc?.actorNames ?? [actor]).includes(parsed.onBehalfOf)
    ) {
      throw new CountersignError(
        'permission_denied',
        'ERR_ON_BEHALF_OF_CONFLICT',
        `on_behalf_of: ${parsed.onBehalfOf} is not ${actor}, who started this run (claim ${identity.oidc?.actor?.claim} of the token this SVID was exchanged for)`,
        { field: 'on_behalf_of' },
      );
    }
    const op: OperationRequest = {
      ...parsed,
      onBehalfOf: actor ?? parsed.onBehalfOf,
      audience: parsed.audience || this.options.defaultAudience,
    };
    const policy = this.deps.policy();
    const decision = await policy.decide(policyInputOf(identity, op, this.deps.clock.now()));
    const facts = this.requestFacts(identity, op);

    if (decision.effect === 'deny') {
      const requestId = newRequestId();
      await this.deps.audit.appendAll([
        { type: 'request_received', request_id: requestId, ...facts },
        {
          type: 'decision',
          request_id: requestId,
          decision: 'deny',
          rule: decision.rule,
          policy_digest: policy.digest,
          message: decision.message,
          ...facts,
        },
      ]);
      return { state: 'DENIED', requestId, rule: decision.rule, message: decision.message };
    }

    if (decision.effect === 'allow' || decision.effect === 'break_glass') {
      const breakGlass = decision.effect === 'break_glass';
      const requestId = newRequestId();
      const credential = await this.deps.minter.mint({
        subject: identity.spiffeId,
        certificateThumbprint: identity.thumbprint,
        svidNotAfter: identity.notAfter,
        operation: op.operation,
        resource: op.resource,
        parametersDigest: op.parametersDigest,
        audience: op.audience,
        ttlCaps: [decision.ttlMs ?? this.options.defaultTtlMs, op.requestedTtlMs],
        ...(op.onBehalfOf ? { onBehalfOf: op.onBehalfOf } : {}),
      });
      // Fail closed: both records are durable before the credential leaves the broker.
      await this.deps.audit.appendAll([
        { type: 'request_received', request_id: requestId, ...facts },
        {
          type: 'decision',
          request_id: requestId,
          decision: decision.effect,
          rule: decision.rule,
          policy_digest: policy.digest,
          ...(breakGlass
            ? { break_glass: true, notified: { approvers: decision.approvers, groups: decision.groups } }
            : {}),
          ...facts,
        },
        credentialIssuedEvent(requestId, credential.token, credential),
      ]);
      if (breakGlass) {
        // "Always notifying every approver": the announcement is queued (and will be
        // retried) before the caller has its credential; if it cannot be, the call fails.
        await this.deps.announceBreakGlass({
          requestId,
          requester: identity.spiffeId,
          onBehalfOf: op.onBehalfOf,
          operation: op.operation,
          resource: op.resource,
          parametersJson: op.parametersCanonical,
          parametersDigest: op.parametersDigest,
          reason: op.reason,
          ticket: op.ticket,
          rule: decision.rule,
          approvers: decision.approvers,
          groups: decision.groups,
          notify: decision.notify,
          issuedAt: this.deps.clock.now(),
          credentialId: credential.jti,
          credentialExpiresAt: credential.expiresAt,
        });
      }
      return { state: 'APPROVED', requestId, rule: decision.rule, credential, breakGlass };
    }

    const { request, created } = await this.deps.store.create({
      requester: identity,
      operation: op,
      rule: decision.rule,
      rules: decision.rules,
      policyDigest: policy.digest,
      approval: decision.approval,
      ttlCapMs: decision.ttlMs,
    });
    // The decision record, the expiry job and the notifications, before the caller hears "pending".
    // A retry finishes them too when the first attempt died before it could.
    if (created || (await this.deps.outbox.has(request.id, { kind: 'created' }))) {
      await this.deps.outbox.complete(request.id, [{ kind: 'created' }], { request, votes: [] });
    }
    return {
      state: 'PENDING_APPROVAL',
      requestId: request.id,
      rule: decision.rule,
      request,
      pollIntervalMs: this.options.pollIntervalMs,
      excluded: decision.excluded,
    };
  }
}
