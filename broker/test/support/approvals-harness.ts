// The approval machinery of broker/src/requests (the real RequestService, workflow,
// outbox, collector and sweeper) wired to the in-memory fakes of ./fakes.ts and a
// ManualClock, as runtime.ts and app.ts wire them to Redis. For unit tests: no
// Redis, no timers, no sleeps.
import type { VoteInput } from '@countersign/approvers';
import { RequestOperationRequest } from '@countersign/proto';
import { ManualClock } from '../../src/clock.js';
import type { SvidIdentity } from '../../src/identity/x509-svid.js';
import { silentLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import type { ApprovalRequirement } from '../../src/policy/decision.js';
import { Principals } from '../../src/policy/principals.js';
import { CredentialCollector } from '../../src/requests/collector.js';
import { RequestDelivery } from '../../src/requests/delivery.js';
import { RequestRateLimiter, type RateLimit } from '../../src/requests/limits.js';
import { Outbox } from '../../src/requests/outbox.js';
import type { PolicyPort } from '../../src/requests/ports.js';
import { RequestService } from '../../src/requests/request-service.js';
import { REQUESTS_PER_TURN, TurnSlots } from '../../src/requests/turns.js';
import type { StoredRequest, StoreOptions } from '../../src/requests/store.js';
import { Sweeper } from '../../src/requests/sweeper.js';
import { validateOperationRequest } from '../../src/requests/validate.js';
import { BrokerApprovalWorkflow } from '../../src/requests/workflow.js';
import {
  fakeKeys,
  fakeRateLimitScript,
  FakeAuditLog,
  FakeJobs,
  FakePollGate,
  FakeRequestStore,
  FakeWaiter,
  RecordingMinter,
} from './fakes.js';

export const TD = 'example.org';
export const REQUESTER = `spiffe://${TD}/ci/deployer`;

export const PRINCIPALS = `version: 1
principals:
  - { name: alice, email: alice@${TD}, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, spiffe_ids: [spiffe://${TD}/human/bob] }
  - { name: carol, spiffe_ids: [spiffe://${TD}/human/carol] }
  - { name: dave, spiffe_ids: [spiffe://${TD}/human/dave] }
groups:
  - { name: sre, members: [carol, dave] }
`;

export const requirement = (patch: Partial<ApprovalRequirement> = {}): ApprovalRequirement => ({
  approvers: ['alice', 'bob'],
  groups: [],
  required: 1,
  denyThreshold: 1,
  timeoutMs: 60_000,
  allowSelfApproval: false,
  stepUp: 'click',
  stepUpMaxAgeMs: undefined,
  reasonRequired: false,
  ticketPattern: undefined,
  notify: { slackChannels: [], directMessages: false },
  ...patch,
});

export interface HarnessOptions {
  store?: Partial<StoreOptions>;
  collectionWindowMs?: number;
  defaultTtlMs?: number;
  outboxGraceMs?: number;
  maxReasonLength?: number;
  rate?: RateLimit;
  /** Requests decided per turn (default: the broker's REQUESTS_PER_TURN). */
  turns?: TurnSlots;
  /** The RequestService's policy (tests that use it build a real Policy; default: denies everything). */
  policy?: PolicyPort;
  channels?: string[];
  watchRecheckMs?: number;
}

export type Harness = Awaited<ReturnType<typeof approvalsHarness>>;

export async function approvalsHarness(options: HarnessOptions = {}) {
  const clock = new ManualClock(Date.UTC(2026, 2, 2, 10, 30));
  const logger = silentLogger();
  const metrics = new Metrics();
  const directory = Principals.parse(PRINCIPALS, 'principals.yaml');
  const store = new FakeRequestStore(clock, options.store);
  const audit = new FakeAuditLog(clock);
  const jobs = new FakeJobs(clock, options.channels);
  const minter = await RecordingMinter.create(clock);
  const waiter = new FakeWaiter();
  const outbox = new Outbox({ redis: store.outboxHash, keys: store.keys, store, audit, jobs, clock, logger });
  const workflow = new BrokerApprovalWorkflow(
    { store, outbox, directory, audit, clock, logger, metrics },
    { maxReasonLength: options.maxReasonLength ?? 1000 },
  );
  const collectionWindowMs = options.collectionWindowMs ?? 120_000;
  const defaultTtlMs = options.defaultTtlMs ?? 300_000;
  const collector = new CredentialCollector(
    { store, outbox, minter, audit, clock, metrics, logger, waiter },
    { collectionWindowMs, defaultTtlMs },
  );
  const pollGate = new FakePollGate(clock, 2000);
  const delivery = new RequestDelivery(
    { store, collector, events: store, pollGate },
    { watchRecheckMs: options.watchRecheckMs ?? 10_000 },
  );
  const outboxGraceMs = options.outboxGraceMs ?? 30_000;
  const sweeper = new Sweeper({ store, workflow, outbox, clock, metrics, logger }, { outboxGraceMs });
  const limiter = new RequestRateLimiter(
    fakeKeys,
    fakeRateLimitScript(),
    clock,
    options.rate ?? { perSecond: 1000, burst: 1000 },
  );
  const policy: PolicyPort = options.policy ?? {
    digest: 'sha256:none',
    decide: () => Promise.resolve({ effect: 'deny', rule: null, message: 'no policy in this test' }),
  };
  const service = new RequestService(
    {
      policy: () => policy,
      minter,
      audit,
      store,
      outbox,
      limiter,
      turns: options.turns ?? new TurnSlots(REQUESTS_PER_TURN),
      clock,
      metrics,
      announceBreakGlass: async (notice) => {
        await jobs.notifyBreakGlass(notice);
      },
    },
    { defaultAudience: 'https://default.example.org', defaultTtlMs, pollIntervalMs: 2000 },
  );

  let n = 0;
  /** A pending request stored and announced as RequestService does (creation records, expiry job, notifications). */
  async function create(
    patch: Partial<ApprovalRequirement> = {},
    who: { requester?: string; onBehalfOf?: string; thumbprint?: string } = {},
  ): Promise<StoredRequest> {
    const { request } = await store.create({
      requester: {
        spiffeId: who.requester ?? REQUESTER,
        trustDomain: TD,
        thumbprint: who.thumbprint ?? 'thumbprint-of-the-requester',
        notAfter: clock.now() + 3600_000,
      },
      operation: validateOperationRequest({
        ...baseOperation,
        onBehalfOf: who.onBehalfOf ?? '',
        parametersJson: `{"n":${++n}}`,
      }),
      rule: 'test-rule',
      rules: ['test-rule'],
      policyDigest: 'sha256:test',
      approval: requirement(patch),
      ttlCapMs: undefined,
    });
    await outbox.complete(request.id, [{ kind: 'created' }], { request, votes: [] });
    return request;
  }

  const vote = (
    request: StoredRequest,
    principal: string,
    decision: 'approve' | 'deny',
    extra: Partial<VoteInput> = {},
  ) =>
    workflow.vote({
      requestId: request.id,
      principal,
      channel: 'test',
      decision,
      reason: '',
      stepUp: 'click',
      ...extra,
    });

  const identityOf = (r: StoredRequest, thumbprint = r.certificateThumbprint): SvidIdentity => ({
    spiffeId: r.requester,
    trustDomain: TD,
    path: new URL(r.requester).pathname,
    thumbprint,
    serial: '01',
    notBefore: clock.now() - 1000,
    notAfter: r.svidNotAfter,
  });

  const state = async (id: string) => (await store.get(id))?.state;

  return {
    clock,
    metrics,
    directory,
    store,
    audit,
    jobs,
    minter,
    waiter,
    outbox,
    workflow,
    collector,
    delivery,
    sweeper,
    limiter,
    service,
    policy,
    collectionWindowMs,
    outboxGraceMs,
    create,
    vote,
    identityOf,
    state,
  };
}

export const baseOperation: RequestOperationRequest = RequestOperationRequest.create({
  operation: 'deploy',
  resource: 'prod/web',
  parametersJson: '{"version":"1"}',
  audience: 'https://deploy.example.org',
});

/** An SVID for the RequestService (the requester's identity). */
export const requesterIdentity = (
  clock: { now(): number },
  spiffeId = REQUESTER,
  thumbprint = 'thumbprint-1',
): SvidIdentity => ({
  spiffeId,
  trustDomain: TD,
  path: new URL(spiffeId).pathname,
  thumbprint,
  serial: '01',
  notBefore: clock.now() - 60_000,
  notAfter: clock.now() + 3600_000,
});
