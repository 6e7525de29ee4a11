// The approval workflow: who may vote on what, and the transitions that follow.
// Every channel (the Approvals gRPC service, Slack) goes through vote(); the
// requester's side goes through cancel(); the expiry job and the sweeper go
// through expire(). Checks on a request's immutable content (approver lists,
// separation of duties, step-up) happen here; checks on what can change (state,
// deadline, earlier votes) happen inside the Lua script, atomically.
import type {
  ApprovalRequestView,
  ApprovalWorkflow,
  PrincipalDirectory,
  VoteInput,
  VoteOutcome,
} from '@countersign/approvers';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { CountersignError, type ErrorKind } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { PasskeyAssertion } from '../audit/passkey-assertion.js';
import type { Passkeys } from '../passkeys/passkeys.js';
import { canonicalPrincipalName } from '../policy/principal-name.js';
import { voteRefusedEvent } from './audit-events.js';
import type { Effect, OutboxPort } from './outbox.js';
import type { RequestStorePort } from './ports.js';
import { ScriptCode } from './script-codes.js';
import { voteFromJson, type StoredRequest, type StoredVote } from './store.js';
import { toView } from './view.js';

/** Each refusal code and how it surfaces over gRPC. */
export const VOTE_REFUSALS = {
  ERR_REQUEST_NOT_FOUND: 'not_found',
  ERR_REQUEST_RESOLVED: 'failed_precondition',
  ERR_REQUEST_EXPIRED: 'failed_precondition',
  ERR_REQUEST_CANCELLED: 'failed_precondition',
  ERR_NOT_AN_APPROVER: 'permission_denied',
  ERR_SELF_APPROVAL: 'permission_denied',
  ERR_ALREADY_VOTED: 'already_exists',
  ERR_STEP_UP_REQUIRED: 'failed_precondition',
  ERR_STEP_UP_MISMATCH: 'invalid_argument',
  ERR_REASON_REQUIRED: 'invalid_argument',
  ERR_INVALID_FIELD: 'invalid_argument',
  // Step-up webauthn (docs/console.md): the proof did not make the vote count.
  ERR_STEP_UP_STALE: 'failed_precondition',
  ERR_PASSKEY_NONE: 'failed_precondition',
  ERR_PASSKEY_CHALLENGE_UNKNOWN: 'failed_precondition',
  ERR_PASSKEY_CHALLENGE_USED: 'failed_precondition',
  ERR_PASSKEY_CHALLENGE_EXPIRED: 'failed_precondition',
  ERR_PASSKEY_CHALLENGE_MISMATCH: 'permission_denied',
  ERR_PASSKEY_NOT_YOURS: 'permission_denied',
  ERR_PASSKEY_COUNTER_REGRESSION: 'permission_denied',
  ERR_PASSKEY_MALFORMED: 'invalid_argument',
  ERR_PASSKEY_WRONG_TYPE: 'permission_denied',
  ERR_PASSKEY_WRONG_ORIGIN: 'permission_denied',
  ERR_PASSKEY_WRONG_RP_ID: 'permission_denied',
  ERR_PASSKEY_USER_NOT_PRESENT: 'permission_denied',
  ERR_PASSKEY_USER_NOT_VERIFIED: 'permission_denied',
  ERR_PASSKEY_BAD_SIGNATURE: 'permission_denied',
  ERR_PASSKEY_REGISTRATION_INVALID: 'invalid_argument',
  ERR_PASSKEY_EXISTS: 'already_exists',
  ERR_PASSKEY_LIMIT: 'resource_exhausted',
} as const satisfies Record<string, ErrorKind>;
export type VoteRefusalCode = keyof typeof VOTE_REFUSALS;

/** Most requests listPendingFor returns (soonest deadline first). */
export const LIST_PENDING_LIMIT = 200;
const LIST_PAGE = 200;

const iso = (ms: number | undefined): string => (ms === undefined ? 'an unknown time' : new Date(ms).toISOString());
// No control characters other than tab and newline in free text.
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;

/** Why a request no longer takes votes or cancellations, for the person who tried. */
export function endedRefusal(r: StoredRequest): { code: VoteRefusalCode; message: string } {
  switch (r.state) {
    case 'EXPIRED':
      return {
        code: 'ERR_REQUEST_EXPIRED',
        message: `request ${r.id} expired at ${iso(r.expiresAt)} with ${r.approvals} of ${r.approvalsRequired} approval(s); it no longer accepts votes (the requester must ask again)`,
      };
    case 'CANCELLED':
      return {
        code: 'ERR_REQUEST_CANCELLED',
        message: `request ${r.id} was cancelled at ${iso(r.resolvedAt)} (${r.resolutionMessage}); it no longer accepts votes`,
      };
    default:
      return {
        code: 'ERR_REQUEST_RESOLVED',
        message: `request ${r.id} was already ${r.state.toLowerCase()} at ${iso(r.resolvedAt)} (${r.resolutionMessage}); it no longer accepts votes`,
      };
  }
}

export interface WorkflowOptions {
  /** Longest reason an approver (or a cancelling requester) may give. */
  maxReasonLength: number;
  /** A request's page in the approver console, when the console is on. */
  consoleUrl?: ((requestId: string) => string) | undefined;
}

export class BrokerApprovalWorkflow implements ApprovalWorkflow {
  constructor(
    private readonly deps: {
      store: RequestStorePort;
      outbox: OutboxPort;
      directory: PrincipalDirectory;
      audit: AuditLog;
      clock: Clock;
      logger: Logger;
      metrics: Metrics;
      /** Verifies the passkey proof of votes on step-up webauthn rules; absent when the console is off. */
      passkeys?: Pick<Passkeys, 'verifyVote'> | undefined;
    },
    private readonly options: WorkflowOptions,
  ) {}

  async get(requestId: string): Promise<ApprovalRequestView | undefined> {
    const loaded = await this.deps.store.getWithVotes(requestId);
    return loaded === undefined ? undefined : toView(loaded.request, loaded.votes, this.options.consoleUrl);
  }

  /** The request as stored, with its votes. */
  load(requestId: string): Promise<{ request: StoredRequest; votes: StoredVote[] } | undefined> {
    return this.deps.store.getWithVotes(requestId);
  }

  async listPendingFor(principal: string): Promise<ApprovalRequestView[]> {
    return (await this.pendingFor(principal)).map(({ request, votes }) =>
      toView(request, votes, this.options.consoleUrl),
    );
  }

  /** Pending requests this principal may still vote on, with their votes so far. */
  async pendingFor(
    name: string,
    limit = LIST_PENDING_LIMIT,
  ): Promise<{ request: StoredRequest; votes: StoredVote[] }[]> {
    const { store, directory, clock } = this.deps;
    const principal = canonicalPrincipalName(name);
    if (principal === undefined || directory.byName(principal) === undefined) return [];
    const found: { request: StoredRequest; votes: StoredVote[] }[] = [];
    for (let offset = 0; found.length < limit; offset += LIST_PAGE) {
      const ids = await store.pendingIds({ offset, limit: LIST_PAGE });
      if (ids.length === 0) break;
      const now = clock.now();
      for (const request of await store.getMany(ids)) {
        if (request.state !== 'PENDING_APPROVAL' || request.expiresAt <= now) continue;
        if ((await this.eligibility(request, principal)) !== undefined) continue;
        const loaded = await store.getWithVotes(request.id);
        if (loaded === undefined || loaded.votes.some((v) => canonicalPrincipalName(v.principal) === principal))
          continue;
        found.push(loaded);
        if (found.length >= limit) break;
      }
      if (ids.length < LIST_PAGE) break;
    }
    return found;
  }

  /** Why this principal cannot vote on this request now (it ended, who may vote, an earlier vote), or undefined when they can. */
  async whyNoVote(
    r: StoredRequest,
    votes: StoredVote[],
    name: string,
  ): Promise<{ code: VoteRefusalCode; message: string } | undefined> {
    if (r.state !== 'PENDING_APPROVAL') return endedRefusal(r);
    if (this.deps.clock.now() >= r.expiresAt) return endedRefusal({ ...r, state: 'EXPIRED' });
    const principal = canonicalPrincipalName(name) ?? name;
    const ineligible = await this.eligibility(r, principal);
    if (ineligible !== undefined) return ineligible;
    const earlier = votes.find((v) => canonicalPrincipalName(v.principal) === principal);
    if (earlier !== undefined)
      return {
        code: 'ERR_ALREADY_VOTED',
        message: `${principal} voted ${earlier.decision} at ${iso(earlier.at)} (${earlier.channel}); each person votes once`,
      };
    return undefined;
  }

  /** Whether the rule names this principal (alone or through a group), or they voted: who may see the request in the console. */
  async maySee(r: StoredRequest, votes: StoredVote[], name: string): Promise<boolean> {
    const principal = canonicalPrincipalName(name);
    if (principal === undefined) return false;
    return (
      votes.some((v) => canonicalPrincipalName(v.principal) === principal) ||
      (await this.eligibility(r, principal))?.code !== 'ERR_NOT_AN_APPROVER'
    );
  }

  /** Why this principal may not vote on this request, or undefined when they may. */
  private async eligibility(
    r: StoredRequest,
    principal: string,
  ): Promise<{ code: VoteRefusalCode; message: string } | undefined> {
    const { directory } = this.deps;
    // Names stored with a request are canonical; folding them again covers requests stored before they were.
    let named = r.approvers.some((a) => canonicalPrincipalName(a) === principal);
    for (const group of r.groups) {
      if (named) break;
      named = (await directory.groupMembers(group)).includes(principal);
    }
    if (!named || directory.byName(principal) === undefined) {
      const who = [...r.approvers, ...r.groups.map((g) => `group ${g}`)].join(', ');
      return {
        code: 'ERR_NOT_AN_APPROVER',
        message: `${principal} is not an approver of request ${r.id} (rule ${r.rule} names ${who || 'nobody'})`,
      };
    }
    if (!r.allowSelfApproval) {
      if (directory.bySpiffeId(r.requester)?.name === principal) {
        return {
          code: 'ERR_SELF_APPROVAL',
          message: `${principal} made request ${r.id} (as ${r.requester}) and cannot decide it; separation of duties requires someone else`,
        };
      }
      if (r.onBehalfOf !== '' && canonicalPrincipalName(r.onBehalfOf) === undefined) {
        return {
          code: 'ERR_SELF_APPROVAL',
          message: `request ${r.id} was made on behalf of ${JSON.stringify(r.onBehalfOf)}, which is not a principal name or e-mail address: no approver can be shown to be someone else, so separation of duties refuses every vote`,
        };
      }
      const human = r.onBehalfOf === '' ? undefined : (canonicalPrincipalName(r.onBehalfOf) as string);
      const onBehalfOf =
        human === undefined ? undefined : ((directory.byName(human) ?? directory.byEmail(human))?.name ?? human);
      if (onBehalfOf === principal) {
        return {
          code: 'ERR_SELF_APPROVAL',
          message: `request ${r.id} was made on behalf of ${principal}, who therefore cannot decide it; separation of duties requires someone else`,
        };
      }
    }
    return undefined;
  }

  private checkVoteInput(r: StoredRequest, input: VoteInput): { code: VoteRefusalCode; message: string } | undefined {
    const max = this.options.maxReasonLength;
    if (input.reason.length > max)
      return {
        code: 'ERR_INVALID_FIELD',
        message: `reason: is ${input.reason.length} characters long, at most ${max} are allowed`,
      };
    if (CONTROL.test(input.reason))
      return { code: 'ERR_INVALID_FIELD', message: 'reason: contains control characters' };
    const confirmed = input.confirmedResource ?? '';
    if (input.stepUp === 'confirm' && confirmed !== r.resource) {
      return {
        code: 'ERR_STEP_UP_MISMATCH',
        message: `step-up confirm: the resource typed (${JSON.stringify(confirmed.slice(0, 80))}) is not the request's resource; type ${r.resource} exactly`,
      };
    }
    if (input.decision === 'approve' && r.stepUp === 'webauthn' && input.passkey === undefined) {
      const where =
        this.options.consoleUrl === undefined
          ? 'the approver console, which is not configured on this broker (console.enabled)'
          : this.options.consoleUrl(r.id);
      return {
        code: 'ERR_STEP_UP_REQUIRED',
        message: `rule ${r.rule} requires step-up "webauthn": approve with your passkey in the approver console: ${where}`,
      };
    }
    if (input.decision === 'approve' && r.stepUp === 'confirm') {
      if (input.stepUp !== 'confirm') {
        return {
          code: 'ERR_STEP_UP_REQUIRED',
          message: `rule ${r.rule} requires step-up "confirm" to approve: re-type the resource (${r.resource}) and give a reason`,
        };
      }
      if (input.reason.trim() === '')
        return {
          code: 'ERR_REASON_REQUIRED',
          message: `rule ${r.rule} requires a reason with a step-up "confirm" approval`,
        };
    }
    return undefined;
  }

  private async refuse(
    input: VoteInput,
    code: VoteRefusalCode,
    message: string,
    request: StoredRequest | undefined,
  ): Promise<VoteOutcome> {
    this.deps.metrics.votesRefused.inc({ code, channel: input.channel });
    this.deps.logger.info(
      { requestId: input.requestId, principal: input.principal, channel: input.channel, code },
      `vote refused: ${message}`,
    );
    await this.deps.audit.append(
      voteRefusedEvent(input.requestId, input.principal, input.channel, input.decision, code, message),
    );
    const view = request === undefined ? undefined : await this.get(request.id);
    return { counted: false, code, message, request: view };
  }

  async vote(given: VoteInput): Promise<VoteOutcome> {
    const { store, outbox, clock, metrics } = this.deps;
    // Channels pass the directory's own (canonical) names; any other spelling is folded the same way, never trusted as is.
    const input = { ...given, principal: canonicalPrincipalName(given.principal) ?? given.principal };
    const loaded = await store.getWithVotes(input.requestId);
    if (loaded === undefined)
      return this.refuse(
        input,
        'ERR_REQUEST_NOT_FOUND',
        `request ${input.requestId} does not exist (or ended long ago)`,
        undefined,
      );
    const { request, votes } = loaded;
    if (request.state !== 'PENDING_APPROVAL') {
      const ended = endedRefusal(request);
      return this.refuse(input, ended.code, ended.message, request);
    }
    if (clock.now() >= request.expiresAt) return this.refuseExpired(input, request);

    const ineligible = await this.eligibility(request, input.principal);
    if (ineligible !== undefined) return this.refuse(input, ineligible.code, ineligible.message, request);
    // A passkey proof is checked (and spent) before anything else about the vote, so a replayed one is named as such.
    let passkey: PasskeyAssertion | undefined;
    if (request.stepUp === 'webauthn' && input.decision === 'approve' && input.passkey !== undefined) {
      const proved = await this.verifyPasskey(request, input);
      if (!proved.ok) return this.refuse(input, proved.code, proved.message, request);
      passkey = proved.assertion;
    }
    const earlier = votes.find((v) => canonicalPrincipalName(v.principal) === input.principal);
    if (earlier !== undefined) return this.repeatedVote(input, request, earlier);
    const invalid = this.checkVoteInput(request, input);
    if (invalid !== undefined) return this.refuse(input, invalid.code, invalid.message, request);

    const vote: StoredVote = {
      principal: input.principal,
      decision: input.decision,
      channel: input.channel,
      at: clock.now(),
      stepUp: passkey !== undefined ? 'webauthn' : input.stepUp === 'confirm' ? 'confirm' : 'click',
      reason: input.reason,
      deliveryId: input.deliveryId ?? '',
      ...(passkey === undefined ? {} : { passkey }),
    };
    const [code, detail = ''] = await store.vote(request, vote);
    switch (code) {
      case ScriptCode.Counted:
      case ScriptCode.Approved:
      case ScriptCode.Denied: {
        metrics.votes.inc({ decision: vote.decision, channel: vote.channel });
        const effects: Effect[] = [{ kind: 'vote', principal: vote.principal }];
        if (code !== ScriptCode.Counted) {
          effects.push({ kind: 'resolved' });
          this.countResolution(code === ScriptCode.Approved ? 'APPROVED' : 'DENIED', request);
        }
        await outbox.complete(request.id, effects);
        if (code === ScriptCode.Approved) {
          // What the console compares the next request for the same operation and resource with; display only.
          await store
            .noteApproved(request)
            .catch((err: unknown) =>
              this.deps.logger.warn({ err, requestId: request.id }, 'could not note the approved parameters'),
            );
        }
        this.deps.logger.info(
          { requestId: request.id, principal: vote.principal, decision: vote.decision, channel: vote.channel },
          'vote counted',
        );
        return { counted: true, request: (await this.get(request.id)) as ApprovalRequestView };
      }
      case ScriptCode.AlreadyVoted:
        return this.repeatedVote(input, request, voteFromJson(detail));
      case ScriptCode.ExpiryDue:
        return this.refuseExpired(input, request);
      case ScriptCode.Resolved:
      case ScriptCode.NotFound: {
        const now = await store.get(request.id);
        if (now === undefined)
          return this.refuse(input, 'ERR_REQUEST_NOT_FOUND', `request ${input.requestId} does not exist`, undefined);
        const ended = endedRefusal(now);
        return this.refuse(input, ended.code, ended.message, now);
      }
      default:
        throw new CountersignError('internal', 'ERR_SCRIPT_REPLY', `decide returned ${code}`);
    }
  }

  private async verifyPasskey(
    r: StoredRequest,
    input: VoteInput,
  ): Promise<{ ok: true; assertion: PasskeyAssertion } | { ok: false; code: VoteRefusalCode; message: string }> {
    const passkeys = this.deps.passkeys;
    const proof = input.passkey;
    if (passkeys === undefined || proof === undefined) {
      return {
        ok: false,
        code: 'ERR_STEP_UP_REQUIRED',
        message: `rule ${r.rule} requires step-up "webauthn", and the approver console is off on this broker`,
      };
    }
    const proved = await passkeys.verifyVote(
      {
        principal: input.principal,
        requestId: r.id,
        parametersDigest: r.parametersDigest,
        decision: input.decision,
        maxAgeMs: r.stepUpMaxAgeMs,
      },
      proof,
    );
    return proved.ok ? proved : { ok: false, code: proved.code, message: proved.message };
  }

  /** A second vote by the same person: a channel's redelivery of the same interaction counts once; anything else is refused. */
  private async repeatedVote(input: VoteInput, request: StoredRequest, earlier: StoredVote): Promise<VoteOutcome> {
    if (input.deliveryId && earlier.deliveryId === input.deliveryId && earlier.decision === input.decision) {
      return { counted: true, request: (await this.get(request.id)) as ApprovalRequestView };
    }
    return this.refuse(
      input,
      'ERR_ALREADY_VOTED',
      `${input.principal} already voted ${earlier.decision} on request ${request.id} at ${iso(earlier.at)} (${earlier.channel}); each person votes once`,
      request,
    );
  }

  private async refuseExpired(input: VoteInput, request: StoredRequest): Promise<VoteOutcome> {
    await this.expire(request.id);
    const now = (await this.deps.store.get(request.id)) ?? request;
    const ended = now.state === 'PENDING_APPROVAL' ? endedRefusal({ ...now, state: 'EXPIRED' }) : endedRefusal(now);
    return this.refuse(input, ended.code, ended.message, now);
  }

  private countResolution(state: 'APPROVED' | 'DENIED' | 'EXPIRED' | 'CANCELLED', request: StoredRequest): void {
    this.deps.metrics.resolutions.inc({ state });
    this.deps.metrics.timeToDecisionSeconds.observe(
      { state },
      Math.max(0, this.deps.clock.now() - request.createdAt) / 1000,
    );
  }

  /**
   * Ends a request whose deadline passed. Returns what happened: Expired (by this
   * call), NotDue (with the deadline), Resolved (ended before) or NotFound.
   */
  async expire(requestId: string): Promise<{ code: ScriptCode; expiresAt?: number }> {
    const { store, outbox, clock, metrics, logger } = this.deps;
    const request = await store.get(requestId);
    const [code, detail] = await store.expire(requestId, request?.requester ?? '');
    if (code === ScriptCode.NotDue) return { code, expiresAt: Number(detail) };
    if (code !== ScriptCode.Expired || request === undefined) return { code };
    const lateness = Math.max(0, clock.now() - request.expiresAt);
    metrics.expiryLatenessSeconds.observe(lateness / 1000);
    this.countResolution('EXPIRED', request);
    logger.info({ requestId, latenessMs: lateness }, 'request expired');
    await outbox.complete(requestId, [{ kind: 'resolved' }]);
    return { code };
  }

  /** The requester withdraws its pending request. */
  async cancel(requester: string, requestId: string, reason: string): Promise<StoredRequest> {
    const { store, outbox, clock } = this.deps;
    const max = this.options.maxReasonLength;
    if (reason.length > max) {
      throw new CountersignError(
        'resource_exhausted',
        'ERR_LIMIT_EXCEEDED',
        `reason: is ${reason.length} characters long, at most ${max} are allowed (limit requests.limits.max_reason_length)`,
        { field: 'reason', limit: 'requests.limits.max_reason_length' },
      );
    }
    if (CONTROL.test(reason))
      throw new CountersignError('invalid_argument', 'ERR_INVALID_FIELD', 'reason: contains control characters', {
        field: 'reason',
      });
    const request = await store.get(requestId);
    if (request === undefined || request.requester !== requester) {
      throw new CountersignError(
        'not_found',
        'ERR_REQUEST_NOT_FOUND',
        `request ${requestId} does not exist or belongs to another workload`,
      );
    }
    const ended = (r: StoredRequest) => {
      const e = endedRefusal(r);
      return new CountersignError(
        'failed_precondition',
        e.code,
        e.message.replace('it no longer accepts votes', 'it can no longer be cancelled'),
      );
    };
    if (request.state !== 'PENDING_APPROVAL') throw ended(request);
    if (clock.now() >= request.expiresAt) {
      await this.expire(requestId);
      throw ended({ ...((await store.get(requestId)) ?? request), state: 'EXPIRED' });
    }
    const [code] = await store.cancel(
      request,
      reason ? `cancelled by the requester: ${reason}` : 'cancelled by the requester',
    );
    if (code === ScriptCode.Cancelled) {
      this.countResolution('CANCELLED', request);
      await outbox.complete(requestId, [{ kind: 'resolved' }]);
      return (await store.get(requestId)) as StoredRequest;
    }
    if (code === ScriptCode.ExpiryDue) await this.expire(requestId);
    const now = await store.get(requestId);
    if (now === undefined)
      throw new CountersignError('not_found', 'ERR_REQUEST_NOT_FOUND', `request ${requestId} does not exist`);
    throw ended(now);
  }
}
