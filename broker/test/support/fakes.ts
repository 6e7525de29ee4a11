// In-memory fakes of the approval orchestrators' ports (broker/src/requests/ports.ts),
// for unit tests that run without Redis. Each one behaves as the real thing does:
// - FakeRequestStore replays the transition scripts of broker/src/requests/lua
//   (create, decide, expire, cancel, collect, audited) with the same replies, the
//   same limits (pending per workload, idempotency window, retention, collection
//   window) and the same atomicity: each call's change happens in one synchronous
//   step, so concurrent callers interleave between calls, never inside one; every
//   transition writes its outbox entry in that same step. Its expiries (retention,
//   the credential's, the idempotency window) run on the injected clock where Redis's
//   run on real time; in production the two are the same time.
// - FakeAuditLog validates events as the Redis audit log does (normalizeEvent) and
//   chains them with the same hash chain; appendAll is all or nothing.
// - FakeJobs keeps BullMQ's "a job id already queued is not added twice".
// Each has `faults`, to make a call fail as Redis does (UNAVAILABLE,
// ERR_REDIS_UNAVAILABLE), before its change or after it (the change made, the reply lost).
import type { BreakGlassNotice } from '@countersign/approvers';
import type { AuditEvent, AuditLog, AuditRecord } from '../../src/audit/audit-log.js';
import { chainNormalized, EMPTY_HEAD, type ChainHead } from '../../src/audit/chain.js';
import { normalizeEventText } from '../../src/audit/events.js';
import type { Clock } from '../../src/clock.js';
import { generateSigningKeyPem, Keyring, parseSigningKey } from '../../src/credentials/keys.js';
import { CredentialMinter, type MintedCredential, type MintInput } from '../../src/credentials/mint.js';
import { CountersignError, unavailable } from '../../src/errors.js';
import { Keys } from '../../src/redis/keys.js';
import type { ScriptRunner } from '../../src/redis/scripts.js';
import type { NotifyEvent } from '../../src/requests/jobs.js';
import type { ApprovalJobsPort, MinterPort, OutboxHash, RequestStorePort, Waiter } from '../../src/requests/ports.js';
import { ScriptCode, type ScriptReply } from '../../src/requests/script-codes.js';
import {
  fromFields,
  IDEMPOTENCY_WINDOW_MS,
  idempotencyKeyReused,
  newStoredRequest,
  requestContentHash,
  toFields,
  tooManyPending,
  voteFromJson,
  voteToJson,
  workloadHash,
  type CreateResult,
  type NewRequest,
  type StoredCredential,
  type StoredRequest,
  type StoredVote,
  type StoreOptions,
} from '../../src/requests/store.js';

/** Failures to inject, per operation name: once (or `times`), before the change or after it. */
export class Faults {
  private readonly armed = new Map<string, { times: number; after: boolean; error: Error | undefined }>();
  /** Calls of each operation, failed ones included. */
  readonly calls = new Map<string, number>();

  fail(op: string, options: { times?: number; after?: boolean; error?: Error } = {}): void {
    this.armed.set(op, { times: options.times ?? 1, after: options.after ?? false, error: options.error });
  }

  /** Called by a fake at the start (phase before) and end (phase after) of an operation. */
  check(op: string, phase: 'before' | 'after'): void {
    if (phase === 'before') this.calls.set(op, (this.calls.get(op) ?? 0) + 1);
    const armed = this.armed.get(op);
    if (armed === undefined || armed.after !== (phase === 'after')) return;
    if (--armed.times <= 0) this.armed.delete(op);
    throw armed.error ?? unavailable('ERR_REDIS_UNAVAILABLE', `${op}: Redis is unavailable`);
  }

  count(op: string): number {
    return this.calls.get(op) ?? 0;
  }
}

/** Lets other callers run first, as a round trip to Redis does. */
const roundTrip = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface StoredEntry {
  hash: Record<string, string>;
  /** principal -> vote JSON */
  votes: Map<string, string>;
  /** Retention: gone from then on (ms, by the clock). */
  deleteAt?: number;
}

/** The request store of broker/src/requests/store.ts and its Lua scripts, in memory. */
export class FakeRequestStore implements RequestStorePort {
  readonly faults = new Faults();
  private readonly requests = new Map<string, StoredEntry>();
  /** The pending set: id -> deadline. */
  private readonly pendingSet = new Map<string, number>();
  private readonly idempotency = new Map<string, { value: string; deleteAt: number }>();
  private readonly credentials = new Map<string, StoredCredential & { deleteAt: number }>();
  private readonly approvedNotes = new Map<string, { value: string; deleteAt: number }>();
  /** The outbox hash: "<id>|<effect>" -> when written. */
  readonly outbox = new Map<string, string>();
  /** Request ids announced on the change channel (every transition PUBLISHes one). */
  readonly published: string[] = [];
  private readonly listeners = new Map<string, Set<() => void>>();
  readonly keys = { outbox: () => 'fake:outbox' };
  readonly options: StoreOptions;

  constructor(
    private readonly clock: Clock,
    options: Partial<StoreOptions> = {},
  ) {
    this.options = { maxPendingPerWorkload: 100, retentionMs: 24 * 3600_000, ...options };
  }

  private publish(id: string): void {
    this.published.push(id);
    // Subscribers hear it after the script's reply, as over pub/sub.
    for (const wake of this.listeners.get(id) ?? []) setImmediate(wake);
  }

  /** RequestEvents.subscribe: wake is called whenever a transition announces the request. */
  subscribe(id: string, wake: () => void): () => void {
    let set = this.listeners.get(id);
    if (set === undefined) this.listeners.set(id, (set = new Set()));
    set.add(wake);
    return () => {
      set.delete(wake);
      if (set.size === 0) this.listeners.delete(id);
    };
  }

  /** Open subscriptions (RequestEvents.watching). */
  get watching(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }

  private async enter(op: string): Promise<void> {
    await roundTrip();
    this.faults.check(op, 'before');
  }

  private leave<T>(op: string, value: T): T {
    this.faults.check(op, 'after');
    return value;
  }

  private live(id: string): StoredEntry | undefined {
    const entry = this.requests.get(id);
    if (entry?.deleteAt !== undefined && this.clock.now() >= entry.deleteAt) {
      this.requests.delete(id);
      return undefined;
    }
    return entry;
  }

  /** A request as stored (its hash fields), or undefined; for assertions. */
  fields(id: string): Record<string, string> | undefined {
    return this.live(id)?.hash;
  }

  /** Outbox entries of one request, sorted; for assertions. */
  outboxOf(id: string): string[] {
    return [...this.outbox.keys()].filter((f) => f.startsWith(`${id}|`)).sort();
  }

  /** The outbox hash as the Outbox reads it (HEXISTS, HMGET, HDEL, HSCAN). */
  readonly outboxHash: OutboxHash = {
    hexists: async (_key, field) => {
      await this.enter('outbox');
      return this.outbox.has(field) ? 1 : 0;
    },
    hmget: async (_key, ...fields) => {
      await this.enter('outbox');
      return fields.map((f) => this.outbox.get(f) ?? null);
    },
    hdel: async (_key, ...fields) => {
      await this.enter('outbox');
      let n = 0;
      for (const f of fields) if (this.outbox.delete(f)) n++;
      return n;
    },
    hscan: async (_key, cursor, _count, n) => {
      await this.enter('outbox');
      const all = [...this.outbox.entries()];
      const start = Number(cursor);
      const page = all.slice(start, start + n);
      const next = start + n >= all.length ? '0' : String(start + n);
      return [next, page.flat()];
    },
  };

  /** Adds an entry as a transition script would (tests: an entry a dead process left). */
  addOutboxEntry(field: string, at = this.clock.now()): void {
    this.outbox.set(field, String(at));
  }

  async create(input: NewRequest): Promise<CreateResult> {
    await this.enter('create');
    const now = this.clock.now();
    const op = input.operation;
    const request = newStoredRequest(input, now);
    const contentHash = requestContentHash(op);
    const requesterHash = workloadHash(request.requester);
    // create-5.lua, in one step.
    const idemKey = op.clientRequestId === '' ? '' : `${requesterHash}:${op.clientRequestId}`;
    if (idemKey !== '') {
      const held = this.idempotency.get(idemKey);
      if (held !== undefined && now < held.deleteAt) {
        const [existingId = '', existingHash] = held.value.split(' ');
        if (existingHash !== contentHash) throw idempotencyKeyReused(op.clientRequestId, existingId);
        const existing = this.live(existingId);
        if (existing === undefined)
          throw new CountersignError(
            'internal',
            'ERR_REQUEST_MISSING',
            `request ${existingId} named by an idempotency key is missing`,
          );
        return this.leave('create', { request: fromFields(existingId, existing.hash), created: false });
      }
    }
    const pendingOfWorkload = [...this.pendingSet].filter(
      ([id, deadline]) => deadline > now && this.requests.get(id)?.hash.rq === request.requester,
    ).length;
    if (pendingOfWorkload >= this.options.maxPendingPerWorkload)
      throw tooManyPending(request.requester, String(pendingOfWorkload), this.options.maxPendingPerWorkload);
    this.requests.set(request.id, { hash: toFields(request), votes: new Map() });
    this.pendingSet.set(request.id, request.expiresAt);
    this.outbox.set(`${request.id}|created`, String(now));
    if (idemKey !== '')
      this.idempotency.set(idemKey, {
        value: `${request.id} ${contentHash}`,
        deleteAt: now + IDEMPOTENCY_WINDOW_MS,
      });
    this.publish(request.id);
    return this.leave('create', { request, created: true });
  }

  async get(id: string): Promise<StoredRequest | undefined> {
    await this.enter('get');
    const entry = this.live(id);
    return this.leave('get', entry === undefined ? undefined : fromFields(id, entry.hash));
  }

  async getWithVotes(id: string): Promise<{ request: StoredRequest; votes: StoredVote[] } | undefined> {
    await this.enter('getWithVotes');
    const entry = this.live(id);
    if (entry === undefined) return this.leave('getWithVotes', undefined);
    return this.leave('getWithVotes', {
      request: fromFields(id, entry.hash),
      votes: [...entry.votes.values()]
        .map(voteFromJson)
        .sort((a, b) => a.at - b.at || a.principal.localeCompare(b.principal)),
    });
  }

  async getMany(ids: string[]): Promise<StoredRequest[]> {
    await this.enter('getMany');
    const found: StoredRequest[] = [];
    for (const id of ids) {
      const entry = this.live(id);
      if (entry !== undefined) found.push(fromFields(id, entry.hash));
    }
    return this.leave('getMany', found);
  }

  async pendingIds(options: { dueBy?: number; offset?: number; limit: number }): Promise<string[]> {
    await this.enter('pendingIds');
    const sorted = [...this.pendingSet]
      .filter(([, deadline]) => options.dueBy === undefined || deadline <= options.dueBy)
      // A sorted set orders equal scores by member.
      .sort(([a, x], [b, y]) => x - y || (a < b ? -1 : a > b ? 1 : 0))
      .map(([id]) => id);
    const offset = options.offset ?? 0;
    return this.leave('pendingIds', sorted.slice(offset, offset + options.limit));
  }

  async pendingCount(): Promise<number> {
    await this.enter('pendingCount');
    return this.leave('pendingCount', this.pendingSet.size);
  }

  /** include/resolve.lua */
  private resolve(id: string, entry: StoredEntry, state: string, message: string, now: number): void {
    Object.assign(entry.hash, { state, resolved_at: String(now), resolution_message: message });
    this.pendingSet.delete(id);
    this.outbox.set(`${id}|resolved`, String(now));
    entry.deleteAt = now + this.options.retentionMs;
  }

  private bumpVersion(entry: StoredEntry): number {
    const version = Number(entry.hash.version ?? 1) + 1;
    entry.hash.version = String(version);
    return version;
  }

  async vote(request: StoredRequest, vote: StoredVote): Promise<ScriptReply> {
    await this.enter('vote');
    return this.leave('vote', this.decide(request.id, vote));
  }

  /** decide-5.lua */
  private decide(id: string, vote: StoredVote): ScriptReply {
    const now = this.clock.now();
    const entry = this.live(id);
    if (entry === undefined) return [ScriptCode.NotFound, ''];
    const h = entry.hash;
    if (h.state !== 'PENDING_APPROVAL') return [ScriptCode.Resolved, h.state ?? ''];
    if (now >= Number(h.expires_at)) return [ScriptCode.ExpiryDue, ''];
    const earlier = entry.votes.get(vote.principal);
    if (earlier !== undefined) return [ScriptCode.AlreadyVoted, earlier];
    entry.votes.set(vote.principal, voteToJson(vote));
    let approvals = Number(h.approvals ?? 0);
    let denials = Number(h.denials ?? 0);
    if (vote.decision === 'approve') h.approvals = String(++approvals);
    else h.denials = String(++denials);
    const version = this.bumpVersion(entry);
    this.outbox.set(`${id}|vote|${vote.principal}`, String(now));
    let code = ScriptCode.Counted;
    if (vote.decision === 'approve' && approvals >= Number(h.approvals_required)) {
      const names = [...entry.votes.values()]
        .map(voteFromJson)
        .filter((v) => v.decision === 'approve')
        .sort((a, b) => a.at - b.at)
        .map((v) => `${v.principal} (${v.channel})`);
      this.resolve(id, entry, 'APPROVED', `approved by ${names.join(', ')}`, now);
      code = ScriptCode.Approved;
    } else if (vote.decision === 'deny' && denials >= Number(h.deny_threshold ?? 1)) {
      const message = `denied by ${vote.principal} (${vote.channel})${vote.reason !== '' ? `: ${vote.reason}` : ''}`;
      this.resolve(id, entry, 'DENIED', message, now);
      code = ScriptCode.Denied;
    }
    this.publish(id);
    return [code, String(version)];
  }

  /** expire-5.lua */
  async expire(id: string, _requester: string): Promise<ScriptReply> {
    await this.enter('expire');
    const now = this.clock.now();
    const entry = this.live(id);
    if (entry === undefined) {
      this.pendingSet.delete(id);
      return this.leave('expire', [ScriptCode.NotFound, '']);
    }
    const h = entry.hash;
    if (h.state !== 'PENDING_APPROVAL') return this.leave('expire', [ScriptCode.Resolved, h.state ?? '']);
    const expiresAt = h.expires_at ?? '0';
    if (now < Number(expiresAt)) return this.leave('expire', [ScriptCode.NotDue, expiresAt]);
    this.bumpVersion(entry);
    this.resolve(
      id,
      entry,
      'EXPIRED',
      `expired with ${h.approvals ?? '0'} of ${h.approvals_required ?? ''} approval(s)`,
      now,
    );
    this.publish(id);
    return this.leave('expire', [ScriptCode.Expired, expiresAt]);
  }

  /** cancel-5.lua */
  async cancel(request: StoredRequest, message: string): Promise<ScriptReply> {
    await this.enter('cancel');
    const now = this.clock.now();
    const entry = this.live(request.id);
    if (entry === undefined) return this.leave('cancel', [ScriptCode.NotFound, '']);
    const h = entry.hash;
    if (h.state !== 'PENDING_APPROVAL') return this.leave('cancel', [ScriptCode.Resolved, h.state ?? '']);
    if (now >= Number(h.expires_at)) return this.leave('cancel', [ScriptCode.ExpiryDue, '']);
    this.bumpVersion(entry);
    this.resolve(request.id, entry, 'CANCELLED', message, now);
    this.publish(request.id);
    return this.leave('cancel', [ScriptCode.Cancelled, '']);
  }

  /** collect-2.lua */
  async storeCredential(
    id: string,
    thumbprint: string,
    windowMs: number,
    credential: { token: string; jti: string; expiresAt: number },
  ): Promise<ScriptReply> {
    await this.enter('storeCredential');
    const now = this.clock.now();
    const h = this.live(id)?.hash;
    if (h === undefined) return this.leave('storeCredential', [ScriptCode.NotFound]);
    if (h.state !== 'APPROVED') return this.leave('storeCredential', [ScriptCode.NotApproved, h.state ?? '']);
    if (h.certificate_thumbprint !== thumbprint) return this.leave('storeCredential', [ScriptCode.CertificateMismatch]);
    const existing = this.liveCredential(id);
    if (existing !== undefined)
      return this.leave('storeCredential', [
        ScriptCode.CredentialExists,
        existing.token,
        existing.jti,
        String(existing.expiresAt),
        existing.audited ? '1' : '0',
      ]);
    const closesAt = Number(h.resolved_at) + windowMs;
    if (now >= closesAt) return this.leave('storeCredential', [ScriptCode.WindowClosed, String(closesAt)]);
    this.credentials.set(id, { ...credential, audited: false, deleteAt: Math.min(closesAt, credential.expiresAt) });
    h.collected_at = String(now);
    return this.leave('storeCredential', [ScriptCode.Stored]);
  }

  private liveCredential(id: string): (StoredCredential & { deleteAt: number }) | undefined {
    const c = this.credentials.get(id);
    if (c !== undefined && this.clock.now() >= c.deleteAt) {
      this.credentials.delete(id);
      return undefined;
    }
    return c;
  }

  async credential(id: string): Promise<StoredCredential | undefined> {
    await this.enter('credential');
    const c = this.liveCredential(id);
    return this.leave(
      'credential',
      c === undefined ? undefined : { token: c.token, jti: c.jti, expiresAt: c.expiresAt, audited: c.audited },
    );
  }

  /** audited-1.lua */
  async markCredentialAudited(id: string): Promise<void> {
    await this.enter('markCredentialAudited');
    const c = this.liveCredential(id);
    if (c !== undefined) c.audited = true;
    this.leave('markCredentialAudited', undefined);
  }

  async noteApproved(r: StoredRequest): Promise<void> {
    await this.enter('noteApproved');
    const now = this.clock.now();
    this.approvedNotes.set(JSON.stringify([r.operation, r.resource]), {
      value: JSON.stringify({ request_id: r.id, parameters_json: r.parametersJson, approved_at: now }),
      deleteAt: now + this.options.retentionMs,
    });
    this.leave('noteApproved', undefined);
  }

  /** The last approval noted for this operation and resource (what lastApproved reads); for assertions. */
  noted(operation: string, resource: string): unknown {
    const note = this.approvedNotes.get(JSON.stringify([operation, resource]));
    return note === undefined || this.clock.now() >= note.deleteAt ? undefined : JSON.parse(note.value);
  }
}

/** The audit log, in memory: the same validation and hash chain as RedisAuditLog, all-or-nothing appends. */
export class FakeAuditLog implements AuditLog {
  readonly faults = new Faults();
  readonly records: AuditRecord[] = [];
  private head: ChainHead = EMPTY_HEAD;

  constructor(private readonly clock: Clock) {}

  async append(event: AuditEvent): Promise<AuditRecord> {
    return (await this.appendAll([event]))[0] as AuditRecord;
  }

  async appendAll(events: AuditEvent[]): Promise<AuditRecord[]> {
    if (events.length === 0) return [];
    const normalized = events.map(normalizeEventText);
    await roundTrip();
    this.faults.check('audit append', 'before');
    const chained = chainNormalized(this.head, normalized, this.clock.now()).map((c) => c.record);
    this.records.push(...chained);
    this.head = chained[chained.length - 1] as ChainHead;
    this.faults.check('audit append', 'after');
    return chained;
  }

  get events(): AuditEvent[] {
    return this.records.map((r) => r.event);
  }

  /** The events about one request, in order. */
  of(requestId: string): AuditEvent[] {
    return this.events.filter((e) => e.request_id === requestId);
  }

  /** Their types, in order. */
  typesOf(requestId: string): string[] {
    return this.of(requestId).map((e) => e.type);
  }
}

export interface FakeJob {
  id: string;
  kind: 'notify' | 'expiry';
  requestId: string;
  event?: NotifyEvent;
  channel?: string;
  principal?: string;
  notice?: BreakGlassNotice;
  /** Expiry: when it runs. */
  runAt?: number;
}

/** The BullMQ side (ApprovalJobs): queued jobs by id; a job id already queued is not added twice. */
export class FakeJobs implements ApprovalJobsPort {
  readonly faults = new Faults();
  /** Queued jobs by id. */
  readonly queued = new Map<string, FakeJob>();
  /** Expiry jobs removed (cancelExpiry). */
  readonly cancelled: string[] = [];

  constructor(
    private readonly clock: Clock,
    /** The deployment's approver channels (ChannelRegistry.all). */
    readonly channels: string[] = ['slack'],
  ) {}

  private add(job: FakeJob): void {
    if (!this.queued.has(job.id)) this.queued.set(job.id, job);
  }

  async notify(requestId: string, event: NotifyEvent, principal?: string): Promise<void> {
    await roundTrip();
    this.faults.check('notify', 'before');
    for (const channel of this.channels) {
      const id = [requestId, event, ...(principal === undefined ? [] : [principal]), channel].join('.');
      this.add({
        id,
        kind: 'notify',
        requestId,
        event,
        channel,
        ...(principal === undefined ? {} : { principal }),
      });
    }
  }

  async notifyBreakGlass(notice: BreakGlassNotice): Promise<number> {
    await roundTrip();
    this.faults.check('notifyBreakGlass', 'before');
    for (const channel of this.channels) {
      this.add({
        id: `${notice.requestId}.break_glass.${channel}`,
        kind: 'notify',
        requestId: notice.requestId,
        event: 'break_glass',
        channel,
        notice,
      });
    }
    return this.channels.length;
  }

  async scheduleExpiry(requestId: string, expiresAt: number): Promise<void> {
    await roundTrip();
    this.faults.check('scheduleExpiry', 'before');
    this.add({ id: requestId, kind: 'expiry', requestId, runAt: Math.max(expiresAt, this.clock.now()) });
  }

  async cancelExpiry(requestId: string): Promise<void> {
    await roundTrip();
    this.faults.check('cancelExpiry', 'before');
    if (this.queued.get(requestId)?.kind === 'expiry') {
      this.queued.delete(requestId);
      this.cancelled.push(requestId);
    }
  }

  /** Ids of the notification jobs of one request, sorted. */
  notificationsOf(requestId: string): string[] {
    return [...this.queued.values()]
      .filter((j) => j.kind === 'notify' && j.requestId === requestId)
      .map((j) => j.id)
      .sort();
  }

  expiryOf(requestId: string): FakeJob | undefined {
    const job = this.queued.get(requestId);
    return job?.kind === 'expiry' ? job : undefined;
  }
}

/** The real CredentialMinter with a fresh in-memory key; records what it was asked to mint. */
export class RecordingMinter implements MinterPort {
  readonly faults = new Faults();
  readonly inputs: MintInput[] = [];

  private constructor(private readonly minter: CredentialMinter) {}

  static async create(clock: Clock, options: { maxTtlMs?: number; issuer?: string } = {}): Promise<RecordingMinter> {
    const maxTtlMs = options.maxTtlMs ?? 3600_000;
    const key = await parseSigningKey(generateSigningKeyPem('EdDSA'), 'test-key.pem');
    return new RecordingMinter(
      new CredentialMinter(new Keyring([key], { maxTtlMs }), {
        issuer: options.issuer ?? 'spiffe://example.org/countersign/broker',
        maxTtlMs,
        clock,
      }),
    );
  }

  async mint(input: MintInput): Promise<MintedCredential> {
    this.faults.check('mint', 'before');
    this.inputs.push(input);
    return this.minter.mint(input);
  }
}

/**
 * The token bucket of ratelimit-1.lua behind a ScriptRunner, so the real
 * RequestRateLimiter runs on it: `new RequestRateLimiter(new Keys('t:'), fakeRateLimitScript(), clock, limit)`.
 */
export function fakeRateLimitScript(): ScriptRunner {
  const buckets = new Map<string, { tokens: number; updatedAt: number }>();
  return async (name, keys, args) => {
    await roundTrip();
    if (name !== 'ratelimit') throw new Error(`fakeRateLimitScript: no script ${name}`);
    const [now, rate, burst, wanted = 1] = args.map(Number) as [number, number, number, number?];
    const key = keys[0] as string;
    const bucket = buckets.get(key);
    let tokens = bucket?.tokens ?? burst;
    const updatedAt = bucket?.updatedAt ?? now;
    if (now > updatedAt) tokens = Math.min(burst, tokens + ((now - updatedAt) * rate) / 1000);
    if (tokens < 1) return [ScriptCode.RateLimited, Math.ceil(((1 - tokens) * 1000) / rate)];
    const granted = Math.min(wanted, Math.floor(tokens));
    tokens -= granted;
    buckets.set(key, { tokens, updatedAt: Math.max(now, updatedAt) });
    const retry = granted < wanted ? Math.ceil(((1 - tokens) * 1000) / rate) : 0;
    return [ScriptCode.Allowed, retry, granted];
  };
}

export const fakeKeys = new Keys('fake:');

/** PollGate (limits.ts) on the clock: SET NX PX of 80% of the poll interval, per request. */
export class FakePollGate {
  private readonly until = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
  ) {}

  async pass(requestId: string): Promise<void> {
    await roundTrip();
    const now = this.clock.now();
    if ((this.until.get(requestId) ?? 0) > now) {
      throw new CountersignError(
        'resource_exhausted',
        'ERR_SLOW_DOWN',
        `slow_down: request ${requestId} was polled less than ${this.intervalMs} ms ago; poll at most every ${this.intervalMs} ms (requests.poll_interval) or use WatchRequest`,
        { limit: 'requests.poll_interval', pollIntervalMs: this.intervalMs },
      );
    }
    this.until.set(requestId, now + Math.max(1, Math.floor(this.intervalMs * 0.8)));
  }
}

/**
 * Real time for the collector's waits, faked: sleep advances its own time at once,
 * and runs `onSleep` (a peer finishing its work meanwhile) first.
 */
export class FakeWaiter implements Waiter {
  private current = 0;
  sleeps = 0;
  onSleep: (() => Promise<void> | void) | undefined;

  now(): number {
    return this.current;
  }

  async sleep(ms: number): Promise<void> {
    this.sleeps++;
    this.current += ms;
    await this.onSleep?.();
  }
}
