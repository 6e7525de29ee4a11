// Approval requests in Redis. Redis is the source of truth; every state change
// is one Lua script (./lua) so that replicas can never both decide. This module
// only moves data: who may do what is decided in workflow.ts.
import { displayedClaims } from '../identity/workload-claims.js';
import type { JsonObject } from '@countersign/proto';
import { sha256 as sha256Of } from '../digest.js';
import type { PasskeyAssertion } from '../audit/passkey-assertion.js';
import type { Clock } from '../clock.js';
import { CountersignError } from '../errors.js';
import { newRequestId } from '../ids.js';
import type { ApprovalRequirement, NotifyTargets, StepUp } from '../policy/decision.js';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { ScriptCode, scriptReply, type ScriptReply } from './script-codes.js';
import type { ScriptRunner } from './scripts.js';
import type { OperationRequest } from './validate.js';

export type RequestStatus = 'PENDING_APPROVAL' | 'APPROVED' | 'DENIED' | 'EXPIRED' | 'CANCELLED';
export const END_STATES: readonly RequestStatus[] = ['APPROVED', 'DENIED', 'EXPIRED', 'CANCELLED'];
export const isEndState = (state: RequestStatus): boolean => state !== 'PENDING_APPROVAL';

/** One approval request as stored. Times are ms since the epoch. */
export interface StoredRequest {
  id: string;
  state: RequestStatus;
  /** Increases with every change (creation, each vote, the end). */
  version: number;
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
  /** Every approve rule that matched and was combined. */
  rules: string[];
  policyDigest: string;
  approvers: string[];
  groups: string[];
  approvalsRequired: number;
  denyThreshold: number;
  allowSelfApproval: boolean;
  stepUp: StepUp;
  /** Step-up webauthn: a passkey sign-in this recent counts instead of an assertion per vote. */
  stepUpMaxAgeMs: number | undefined;
  notify: NotifyTargets;
  approvals: number;
  denials: number;
  createdAt: number;
  expiresAt: number;
  resolvedAt: number | undefined;
  resolutionMessage: string;
  /** The requester's exchanged OIDC token, as approvers see it (issuer name, displayed claims); undefined for other SVIDs. */
  workloadClaims?: { issuer: string; claims: Record<string, string> } | undefined;
}

/** One recorded vote. */
export interface StoredVote {
  principal: string;
  decision: 'approve' | 'deny';
  channel: string;
  at: number;
  stepUp: StepUp;
  reason: string;
  /** The channel's id for the interaction, so a redelivery counts once; "" when none. */
  deliveryId: string;
  /** Step-up webauthn: the assertion that made this vote count, kept for the audit trail. */
  passkey?: PasskeyAssertion | undefined;
}

export interface NewRequest {
  requester: {
    spiffeId: string;
    trustDomain: string;
    thumbprint: string;
    notAfter: number;
    oidc?: { issuer: string; claims: JsonObject } | undefined;
  };
  operation: OperationRequest;
  rule: string;
  rules: string[];
  policyDigest: string;
  approval: ApprovalRequirement;
  ttlCapMs: number | undefined;
}

/** The credential minted for an approved request, as stored until its collection window closes. */
export interface StoredCredential {
  token: string;
  jti: string;
  expiresAt: number;
  /** Its credential_issued audit record is durable. */
  audited: boolean;
}

export const IDEMPOTENCY_WINDOW_MS = 24 * 3600_000;

const sha256 = (text: string): string => sha256Of(text, 'base64url');

/** The key under which one workload's limits and indexes live. */
export const workloadHash = (spiffeId: string): string => sha256(spiffeId);

// The stored form of a request (docs/approvals.md, "Storage"): one Redis hash that
// stays in Redis's compact listpack encoding, which holds only while every value is
// at most hash-max-listpack-value (64) bytes and there are at most 128 fields. So:
// - fields the Lua scripts read keep their names (state, version, approvals, denials,
//   approvals_required, deny_threshold, expires_at, resolved_at, resolution_message,
//   certificate_thumbprint, collected_at); the others have short internal names;
// - what can be derived is not stored: the id (the key), the trust domain (the
//   requester's SPIFFE ID), rules when it is just [rule];
// - empty and default values are left out (read back as their defaults);
// - the policy digest is stored as base64url (43 bytes, not 71), and the canonical
//   parameters, stored once, are cut into pieces of at most 64 bytes (p, p1, p2 ...).
// Hashes written before this format (long field names) are still read.
const LISTPACK_VALUE_BYTES = 64;

/** Cuts text into pieces of at most 64 UTF-8 bytes, never inside a character. */
export function listpackPieces(text: string): string[] {
  if (Buffer.byteLength(text, 'utf8') === text.length) {
    const out: string[] = [];
    for (let i = 0; i < text.length; i += LISTPACK_VALUE_BYTES) out.push(text.slice(i, i + LISTPACK_VALUE_BYTES));
    return out.length === 0 ? [''] : out;
  }
  const out: string[] = [];
  let current = '';
  let bytes = 0;
  for (const ch of text) {
    const size = Buffer.byteLength(ch, 'utf8');
    if (bytes + size > LISTPACK_VALUE_BYTES) {
      out.push(current);
      current = '';
      bytes = 0;
    }
    current += ch;
    bytes += size;
  }
  out.push(current);
  return out;
}

const SHA256_HEX_DIGEST = /^sha256:([0-9a-f]{64})$/;
const compactDigest = (digest: string): string => {
  const m = SHA256_HEX_DIGEST.exec(digest);
  return m === null ? digest : Buffer.from(m[1] as string, 'hex').toString('base64url');
};
const fullDigest = (stored: string): string =>
  /^[A-Za-z0-9_-]{43}$/.test(stored) ? `sha256:${Buffer.from(stored, 'base64url').toString('hex')}` : stored;
const trustDomainOf = (spiffeId: string): string => /^spiffe:\/\/([^/]+)/.exec(spiffeId)?.[1] ?? '';

export function toFields(r: StoredRequest): Record<string, string> {
  const f: Record<string, string> = {
    state: r.state,
    version: String(r.version),
    rq: r.requester,
    certificate_thumbprint: r.certificateThumbprint,
    sn: String(r.svidNotAfter),
    op: r.operation,
    rs: r.resource,
    pd: r.parametersDigest,
    au: r.audience,
    ru: r.rule,
    po: compactDigest(r.policyDigest),
    ap: JSON.stringify(r.approvers),
    approvals_required: String(r.approvalsRequired),
    ca: String(r.createdAt),
    expires_at: String(r.expiresAt),
  };
  listpackPieces(r.parametersJson).forEach((piece, i) => (f[i === 0 ? 'p' : `p${i}`] = piece));
  // An exchanged SVID's claims as approvers see them (issue 18), in pieces too: wc, wc1 ...
  if (r.workloadClaims !== undefined)
    listpackPieces(JSON.stringify(r.workloadClaims)).forEach((piece, i) => (f[i === 0 ? 'wc' : `wc${i}`] = piece));
  if (r.requesterTrustDomain !== trustDomainOf(r.requester)) f.td = r.requesterTrustDomain;
  if (r.reason !== '') f.rn = r.reason;
  if (r.onBehalfOf !== '') f.ob = r.onBehalfOf;
  if (r.ticket !== '') f.tk = r.ticket;
  if (r.requestedTtlMs !== undefined) f.rt = String(r.requestedTtlMs);
  if (r.ttlCapMs !== undefined) f.tc = String(r.ttlCapMs);
  if (!(r.rules.length === 1 && r.rules[0] === r.rule)) f.rl = JSON.stringify(r.rules);
  if (r.groups.length > 0) f.gr = JSON.stringify(r.groups);
  if (r.denyThreshold !== 1) f.deny_threshold = String(r.denyThreshold);
  if (r.allowSelfApproval) f.sa = '1';
  if (r.stepUp !== 'click') f.su = r.stepUp;
  if (r.stepUpMaxAgeMs !== undefined) f.sm = String(r.stepUpMaxAgeMs);
  if (r.notify.slackChannels.length > 0 || r.notify.directMessages) f.nt = JSON.stringify(r.notify);
  if (r.approvals !== 0) f.approvals = String(r.approvals);
  if (r.denials !== 0) f.denials = String(r.denials);
  if (r.resolvedAt !== undefined) f.resolved_at = String(r.resolvedAt);
  if (r.resolutionMessage !== '') f.resolution_message = r.resolutionMessage;
  return f;
}

const optionalNumber = (v: string | undefined): number | undefined =>
  v === undefined || v === '' ? undefined : Number(v);
const jsonList = (v: string | undefined): string[] => (v ? (JSON.parse(v) as string[]) : []);

/** A value stored in pieces (name, name1, name2 ...), joined; undefined when there is none. */
function joinedPieces(h: Record<string, string>, name: string): string | undefined {
  if (h[name] === undefined) return undefined;
  let text = h[name];
  for (let i = 1; h[`${name}${i}`] !== undefined; i++) text += h[`${name}${i}`];
  return text;
}

function workloadClaimsOf(h: Record<string, string>): Pick<StoredRequest, 'workloadClaims'> {
  const text = joinedPieces(h, 'wc');
  return text === undefined ? {} : { workloadClaims: JSON.parse(text) as StoredRequest['workloadClaims'] };
}

function parametersOf(h: Record<string, string>): string {
  return joinedPieces(h, 'p') ?? h.parameters_json ?? '{}';
}

/** A stored request from its hash (this format, or the long field names written before it). */
export function fromFields(id: string, h: Record<string, string>): StoredRequest {
  const requester = h.rq ?? h.requester ?? '';
  const rule = h.ru ?? h.rule ?? '';
  const rules = h.rl ?? h.rules;
  const notify = h.nt ?? h.notify;
  return {
    id,
    state: (h.state ?? 'PENDING_APPROVAL') as RequestStatus,
    version: Number(h.version ?? 1),
    requester,
    requesterTrustDomain: h.td ?? h.requester_trust_domain ?? trustDomainOf(requester),
    certificateThumbprint: h.certificate_thumbprint ?? '',
    svidNotAfter: Number(h.sn ?? h.svid_not_after ?? 0),
    operation: h.op ?? h.operation ?? '',
    resource: h.rs ?? h.resource ?? '',
    parametersJson: parametersOf(h),
    parametersDigest: h.pd ?? h.parameters_digest ?? '',
    reason: h.rn ?? h.reason ?? '',
    onBehalfOf: h.ob ?? h.on_behalf_of ?? '',
    ticket: h.tk ?? h.ticket ?? '',
    audience: h.au ?? h.audience ?? '',
    requestedTtlMs: optionalNumber(h.rt ?? h.requested_ttl_ms),
    ttlCapMs: optionalNumber(h.tc ?? h.ttl_cap_ms),
    rule,
    rules: rules === undefined ? (h.ru !== undefined ? [rule] : []) : jsonList(rules),
    policyDigest: h.po !== undefined ? fullDigest(h.po) : (h.policy_digest ?? ''),
    approvers: jsonList(h.ap ?? h.approvers),
    groups: jsonList(h.gr ?? h.groups),
    approvalsRequired: Number(h.approvals_required ?? 1),
    denyThreshold: Number(h.deny_threshold ?? 1),
    allowSelfApproval: (h.sa ?? h.allow_self_approval) === '1',
    stepUp: (h.su ?? h.step_up ?? 'click') as StepUp,
    stepUpMaxAgeMs: optionalNumber(h.sm ?? h.step_up_max_age_ms),
    notify: notify ? (JSON.parse(notify) as NotifyTargets) : { slackChannels: [], directMessages: false },
    approvals: Number(h.approvals ?? 0),
    denials: Number(h.denials ?? 0),
    createdAt: Number(h.ca ?? h.created_at ?? 0),
    expiresAt: Number(h.expires_at ?? 0),
    resolvedAt: optionalNumber(h.resolved_at),
    resolutionMessage: h.resolution_message ?? '',
    ...workloadClaimsOf(h),
  };
}

export function voteToJson(v: StoredVote): string {
  return JSON.stringify({
    principal: v.principal,
    decision: v.decision,
    channel: v.channel,
    at: v.at,
    step_up: v.stepUp,
    reason: v.reason,
    delivery_id: v.deliveryId,
    ...(v.passkey === undefined ? {} : { webauthn: v.passkey }),
  });
}

const STEP_UPS: readonly StepUp[] = ['click', 'confirm', 'webauthn'];

export function voteFromJson(text: string): StoredVote {
  const v = JSON.parse(text) as Record<string, unknown>;
  return {
    principal: String(v.principal),
    decision: v.decision === 'deny' ? 'deny' : 'approve',
    channel: String(v.channel),
    at: Number(v.at),
    stepUp: STEP_UPS.includes(v.step_up as StepUp) ? (v.step_up as StepUp) : 'click',
    reason: typeof v.reason === 'string' ? v.reason : '',
    deliveryId: typeof v.delivery_id === 'string' ? v.delivery_id : '',
    ...(v.webauthn !== null && typeof v.webauthn === 'object' ? { passkey: v.webauthn as PasskeyAssertion } : {}),
  };
}

/** A new pending request as create stores it (a fresh id; times from now). */
export function newStoredRequest(input: NewRequest, now: number): StoredRequest {
  const op = input.operation;
  const a = input.approval;
  return {
    id: newRequestId(),
    state: 'PENDING_APPROVAL',
    version: 1,
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
    ...(input.requester.oidc ? { workloadClaims: displayedClaims(input.requester.oidc) } : {}),
    ticket: op.ticket,
    audience: op.audience,
    requestedTtlMs: op.requestedTtlMs,
    ttlCapMs: input.ttlCapMs,
    rule: input.rule,
    rules: input.rules,
    policyDigest: input.policyDigest,
    approvers: a.approvers,
    groups: a.groups,
    approvalsRequired: a.required,
    denyThreshold: Math.max(1, a.denyThreshold),
    allowSelfApproval: a.allowSelfApproval,
    stepUp: a.stepUp,
    stepUpMaxAgeMs: a.stepUpMaxAgeMs,
    notify: a.notify,
    approvals: 0,
    denials: 0,
    createdAt: now,
    expiresAt: now + a.timeoutMs,
    resolvedAt: undefined,
    resolutionMessage: '',
  };
}

/** What a retry must repeat exactly to be "the same request" (compared under its client_request_id). */
export function requestContentHash(op: OperationRequest): string {
  return sha256(
    JSON.stringify([
      op.operation,
      op.resource,
      op.parametersDigest,
      op.reason,
      op.onBehalfOf,
      op.ticket,
      op.audience,
      op.requestedTtlMs ?? 0,
    ]),
  );
}

export const idempotencyKeyReused = (clientRequestId: string, existingId: string): CountersignError =>
  new CountersignError(
    'already_exists',
    'ERR_IDEMPOTENCY_KEY_REUSED',
    `client_request_id ${JSON.stringify(clientRequestId)} was already used for a different request (${existingId}); use a new id for new content`,
    { requestId: existingId },
  );

export const tooManyPending = (requester: string, count: string, max: number): CountersignError =>
  new CountersignError(
    'resource_exhausted',
    'ERR_TOO_MANY_PENDING',
    `${requester} already has ${count} requests waiting for approval, the most allowed (limit requests.limits.max_pending_per_workload = ${max}); wait for one to end or cancel one`,
    { limit: 'requests.limits.max_pending_per_workload', value: max },
  );

export interface CreateResult {
  request: StoredRequest;
  /** False when an idempotent retry returned an existing request. */
  created: boolean;
}

export interface StoreOptions {
  /** Most pending requests one workload may have at once. */
  maxPendingPerWorkload: number;
  /** How long a resolved request (and its votes) stays readable. */
  retentionMs: number;
}

export class RequestStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly scripts: ScriptRunner,
    private readonly clock: Clock,
    private readonly options: StoreOptions,
  ) {}

  private transitionKeys(id: string, requester: string): string[] {
    return [
      this.keys.request(id),
      this.keys.votes(id),
      this.keys.pending(),
      this.keys.pendingOfWorkload(workloadHash(requester)),
      this.keys.outbox(),
    ];
  }

  private async run(what: string, name: string, keys: string[], args: (string | number)[]): Promise<ScriptReply> {
    return scriptReply(await redisCall(what, () => this.scripts(name, keys, args)));
  }

  async create(input: NewRequest): Promise<CreateResult> {
    const now = this.clock.now();
    const op = input.operation;
    const request = newStoredRequest(input, now);
    const contentHash = requestContentHash(op);
    const requesterHash = workloadHash(request.requester);
    const idempotencyKey = op.clientRequestId === '' ? '' : this.keys.idempotency(requesterHash, op.clientRequestId);
    const [code, id = '', count = '0'] = await this.run(
      'create request',
      'create',
      [
        this.keys.request(request.id),
        idempotencyKey,
        this.keys.pending(),
        this.keys.pendingOfWorkload(requesterHash),
        this.keys.outbox(),
      ],
      [
        request.id,
        JSON.stringify(toFields(request)),
        contentHash,
        request.expiresAt,
        IDEMPOTENCY_WINDOW_MS,
        now,
        this.options.maxPendingPerWorkload,
        this.keys.requestEvents(),
      ],
    );
    if (code === ScriptCode.Created) return { request, created: true };
    if (code === ScriptCode.IdempotencyConflict) throw idempotencyKeyReused(op.clientRequestId, id);
    if (code === ScriptCode.TooManyPending)
      throw tooManyPending(request.requester, count, this.options.maxPendingPerWorkload);
    const existing = await this.get(id);
    if (existing === undefined)
      throw new CountersignError(
        'internal',
        'ERR_REQUEST_MISSING',
        `request ${id} named by an idempotency key is missing`,
      );
    return { request: existing, created: false };
  }

  async get(id: string): Promise<StoredRequest | undefined> {
    const hash = await redisCall('read request', () => this.redis.hgetall(this.keys.request(id)));
    return Object.keys(hash).length === 0 ? undefined : fromFields(id, hash);
  }

  /** The request and its votes (in the order they were cast), read together. */
  async getWithVotes(id: string): Promise<{ request: StoredRequest; votes: StoredVote[] } | undefined> {
    const replies = await redisCall('read request', () =>
      this.redis.multi().hgetall(this.keys.request(id)).hvals(this.keys.votes(id)).exec(),
    );
    const [hashError, hash] = replies?.[0] ?? [new Error('no reply'), {}];
    const [votesError, votes] = replies?.[1] ?? [new Error('no reply'), []];
    if (hashError || votesError)
      throw new CountersignError('unavailable', 'ERR_REDIS_UNAVAILABLE', 'read request: Redis is unavailable');
    if (Object.keys(hash as Record<string, string>).length === 0) return undefined;
    return {
      request: fromFields(id, hash as Record<string, string>),
      votes: (votes as string[])
        .map(voteFromJson)
        .sort((a, b) => a.at - b.at || a.principal.localeCompare(b.principal)),
    };
  }

  /** Several requests in one round trip; missing ones are left out. */
  async getMany(ids: string[]): Promise<StoredRequest[]> {
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.keys.request(id));
    const replies = await redisCall('read requests', () => pipeline.exec());
    const found: StoredRequest[] = [];
    for (const [i, [error, hash]] of (replies ?? []).entries()) {
      if (error)
        throw new CountersignError('unavailable', 'ERR_REDIS_UNAVAILABLE', 'read requests: Redis is unavailable');
      if (Object.keys(hash as Record<string, string>).length > 0)
        found.push(fromFields(ids[i] as string, hash as Record<string, string>));
    }
    return found;
  }

  /** Ids of pending requests, soonest deadline first. */
  async pendingIds(options: { dueBy?: number; offset?: number; limit: number }): Promise<string[]> {
    const max = options.dueBy === undefined ? '+inf' : String(options.dueBy);
    return redisCall('list pending', () =>
      this.redis.zrangebyscore(this.keys.pending(), '-inf', max, 'LIMIT', options.offset ?? 0, options.limit),
    );
  }

  async pendingCount(): Promise<number> {
    return redisCall('count pending', () => this.redis.zcard(this.keys.pending()));
  }

  vote(request: StoredRequest, vote: StoredVote): Promise<ScriptReply> {
    return this.run('record vote', 'decide', this.transitionKeys(request.id, request.requester), [
      request.id,
      vote.principal,
      voteToJson(vote),
      vote.decision,
      this.clock.now(),
      this.keys.requestEvents(),
      this.options.retentionMs,
    ]);
  }

  expire(id: string, requester: string): Promise<ScriptReply> {
    return this.run('expire request', 'expire', this.transitionKeys(id, requester), [
      id,
      this.clock.now(),
      this.keys.requestEvents(),
      this.options.retentionMs,
    ]);
  }

  cancel(request: StoredRequest, message: string): Promise<ScriptReply> {
    return this.run('cancel request', 'cancel', this.transitionKeys(request.id, request.requester), [
      request.id,
      this.clock.now(),
      message,
      this.keys.requestEvents(),
      this.options.retentionMs,
    ]);
  }

  /** Stores a freshly minted credential unless one is stored already (see collect-2.lua). */
  storeCredential(
    id: string,
    thumbprint: string,
    windowMs: number,
    credential: { token: string; jti: string; expiresAt: number },
  ): Promise<ScriptReply> {
    return this.run(
      'store credential',
      'collect',
      [this.keys.request(id), this.keys.requestCredential(id)],
      [thumbprint, this.clock.now(), windowMs, credential.token, credential.jti, credential.expiresAt],
    );
  }

  async credential(id: string): Promise<StoredCredential | undefined> {
    const [token, jti, expiresAt, audited] = await redisCall('read credential', () =>
      this.redis.hmget(this.keys.requestCredential(id), 'token', 'jti', 'expires_at', 'audited'),
    );
    if (!token || !jti) return undefined;
    return { token, jti, expiresAt: Number(expiresAt), audited: audited === '1' };
  }

  /** Remembers an approved request's parameters as the last approved for its operation and resource. */
  async noteApproved(r: StoredRequest): Promise<void> {
    const value = JSON.stringify({
      request_id: r.id,
      parameters_json: r.parametersJson,
      approved_at: this.clock.now(),
    });
    await redisCall('note approval', () =>
      this.redis.set(
        this.keys.lastApproved(sha256(JSON.stringify([r.operation, r.resource]))),
        value,
        'PX',
        this.options.retentionMs,
      ),
    );
  }

  /** The last approved request for this operation and resource (within requests.retention), if any. */
  async lastApproved(
    operation: string,
    resource: string,
  ): Promise<{ requestId: string; parametersJson: string; approvedAt: number } | undefined> {
    const text = await redisCall('read last approval', () =>
      this.redis.get(this.keys.lastApproved(sha256(JSON.stringify([operation, resource])))),
    );
    if (text === null) return undefined;
    const v = JSON.parse(text) as { request_id: string; parameters_json: string; approved_at: number };
    return { requestId: v.request_id, parametersJson: v.parameters_json, approvedAt: v.approved_at };
  }

  async markCredentialAudited(id: string): Promise<void> {
    await this.run('mark credential audited', 'audited', [this.keys.requestCredential(id)], []);
  }
}
