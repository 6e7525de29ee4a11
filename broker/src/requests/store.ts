// Approval requests in Redis. Redis is the source of truth; every state change
// is one Lua script so that replicas can never both decide.
import { createHash } from 'node:crypto';
import type { Clock } from '../clock.js';
import { newRequestId } from '../ids.js';
import { CountersignError } from '../errors.js';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import type { ScriptRunner } from './scripts.js';
import type { OperationRequest } from './validate.js';

export type RequestStatus = 'PENDING_APPROVAL' | 'APPROVED' | 'DENIED' | 'EXPIRED' | 'CANCELLED';

/** One approval request as stored. Times are ms since the epoch. */
export interface StoredRequest {
  id: string;
  state: RequestStatus;
  requester: string;
  requesterTrustDomain: string;
  certificateThumbprint: string;
  svidNotAfter: number;
  operation: string;
  resource: string;
  parametersJson: string;
  parametersDigest: string;
  reason: string;
  onBehalfOf: string;
  ticket: string;
  audience: string;
  requestedTtlMs: number | undefined;
  ttlCapMs: number | undefined;
  rule: string;
  policyDigest: string;
  approvers: string[];
  approvalsRequired: number;
  createdAt: number;
  expiresAt: number;
  resolvedAt: number | undefined;
  resolutionMessage: string;
}

export interface NewRequest {
  requester: { spiffeId: string; trustDomain: string; thumbprint: string; notAfter: number };
  operation: OperationRequest;
  rule: string;
  policyDigest: string;
  approvers: string[];
  approvalsRequired: number;
  timeoutMs: number;
  ttlCapMs: number | undefined;
}

export const IDEMPOTENCY_WINDOW_MS = 24 * 3600_000;

const sha256 = (text: string): string => createHash('sha256').update(text).digest('base64url');

function toFields(r: StoredRequest): Record<string, string> {
  return {
    id: r.id,
    state: r.state,
    requester: r.requester,
    requester_trust_domain: r.requesterTrustDomain,
    certificate_thumbprint: r.certificateThumbprint,
    svid_not_after: String(r.svidNotAfter),
    operation: r.operation,
    resource: r.resource,
    parameters_json: r.parametersJson,
    parameters_digest: r.parametersDigest,
    reason: r.reason,
    on_behalf_of: r.onBehalfOf,
    ticket: r.ticket,
    audience: r.audience,
    requested_ttl_ms: r.requestedTtlMs === undefined ? '' : String(r.requestedTtlMs),
    ttl_cap_ms: r.ttlCapMs === undefined ? '' : String(r.ttlCapMs),
    rule: r.rule,
    policy_digest: r.policyDigest,
    approvers: JSON.stringify(r.approvers),
    approvals_required: String(r.approvalsRequired),
    created_at: String(r.createdAt),
    expires_at: String(r.expiresAt),
    resolved_at: r.resolvedAt === undefined ? '' : String(r.resolvedAt),
    resolution_message: r.resolutionMessage,
  };
}

const optionalNumber = (v: string | undefined): number | undefined => (v === undefined || v === '' ? undefined : Number(v));

function fromFields(h: Record<string, string>): StoredRequest {
  return {
    id: h.id ?? '',
    state: (h.state ?? 'PENDING_APPROVAL') as RequestStatus,
    requester: h.requester ?? '',
    requesterTrustDomain: h.requester_trust_domain ?? '',
    certificateThumbprint: h.certificate_thumbprint ?? '',
    svidNotAfter: Number(h.svid_not_after ?? 0),
    operation: h.operation ?? '',
    resource: h.resource ?? '',
    parametersJson: h.parameters_json ?? '{}',
    parametersDigest: h.parameters_digest ?? '',
    reason: h.reason ?? '',
    onBehalfOf: h.on_behalf_of ?? '',
    ticket: h.ticket ?? '',
    audience: h.audience ?? '',
    requestedTtlMs: optionalNumber(h.requested_ttl_ms),
    ttlCapMs: optionalNumber(h.ttl_cap_ms),
    rule: h.rule ?? '',
    policyDigest: h.policy_digest ?? '',
    approvers: JSON.parse(h.approvers ?? '[]') as string[],
    approvalsRequired: Number(h.approvals_required ?? 1),
    createdAt: Number(h.created_at ?? 0),
    expiresAt: Number(h.expires_at ?? 0),
    resolvedAt: optionalNumber(h.resolved_at),
    resolutionMessage: h.resolution_message ?? '',
  };
}

export interface CreateResult {
  request: StoredRequest;
  /** False when an idempotent retry returned an existing request. */
  created: boolean;
}

export class RequestStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly scripts: ScriptRunner,
    private readonly clock: Clock,
  ) {}

  async create(input: NewRequest): Promise<CreateResult> {
    const now = this.clock.now();
    const op = input.operation;
    const request: StoredRequest = {
      id: newRequestId(),
      state: 'PENDING_APPROVAL',
      requester: input.requester.spiffeId,
      requesterTrustDomain: input.requester.trustDomain,
      certificateThumbprint: input.requester.thumbprint,
      svidNotAfter: input.requester.notAfter,
      operation: op.operation,
      resource: op.resource,
      parametersJson: op.parametersCanonical,
      parametersDigest: op.parametersDigest,
      reason: op.reason,
      onBehalfOf: op.onBehalfOf,
      ticket: op.ticket,
      audience: op.audience,
      requestedTtlMs: op.requestedTtlMs,
      ttlCapMs: input.ttlCapMs,
      rule: input.rule,
      policyDigest: input.policyDigest,
      approvers: input.approvers,
      approvalsRequired: input.approvalsRequired,
      createdAt: now,
      expiresAt: now + input.timeoutMs,
      resolvedAt: undefined,
      resolutionMessage: '',
    };
    // What a retry must repeat exactly to be "the same request".
    const contentHash = sha256(
      JSON.stringify([op.operation, op.resource, op.parametersDigest, op.reason, op.onBehalfOf, op.ticket, op.audience, op.requestedTtlMs ?? 0]),
    );
    const idempotencyKey = op.clientRequestId === '' ? '' : this.keys.idempotency(sha256(request.requester), op.clientRequestId);
    const [code, id] = (await redisCall('create request', () =>
      this.scripts(
        'create',
        [this.keys.request(request.id), idempotencyKey, this.keys.pending()],
        [request.id, JSON.stringify(toFields(request)), contentHash, request.expiresAt, IDEMPOTENCY_WINDOW_MS],
      ),
    )) as [number, string];
    if (code === 1) return { request, created: true };
    if (code === -1) {
      throw new CountersignError(
        'already_exists',
        'ERR_IDEMPOTENCY_KEY_REUSED',
        `client_request_id ${JSON.stringify(op.clientRequestId)} was already used for a different request (${id}); use a new id for new content`,
        { requestId: id },
      );
    }
    const existing = await this.get(id);
    if (existing === undefined) throw new CountersignError('internal', 'ERR_REQUEST_MISSING', `request ${id} named by an idempotency key is missing`);
    return { request: existing, created: false };
  }

  async get(id: string): Promise<StoredRequest | undefined> {
    const hash = await redisCall('read request', () => this.redis.hgetall(this.keys.request(id)));
    return Object.keys(hash).length === 0 ? undefined : fromFields(hash);
  }
}
