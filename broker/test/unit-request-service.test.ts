// The request service (requests/request-service.ts) on in-memory fakes and a real
// Policy: each decision branch (allow, deny, approve, break-glass) and what it
// records before the caller hears it, idempotent retries, the per-workload limits,
// and failing closed when the audit log or the break-glass announcement fails.
// No Redis; the e2e counterparts are test/e2e/request-operation.test.ts and approvals*.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RequestOperationRequest } from '@countersign/proto';
import { Policy } from '../src/policy/policy.js';
import { Principals } from '../src/policy/principals.js';
import type { Requester } from '../src/requests/request-service.js';
import { TurnSlots } from '../src/requests/turns.js';
import {
  approvalsHarness,
  baseOperation,
  PRINCIPALS,
  REQUESTER,
  requesterIdentity,
  TD,
  type HarnessOptions,
} from './support/approvals-harness.js';

const RULES = `version: 1
rules:
  - { name: staging, match: { resource: "staging/*" }, decision: allow, ttl: 10m }
  - { name: frozen, match: { resource: prod/frozen }, decision: deny, message: prod/frozen is frozen }
  - name: prod
    match: { resource: "prod/*" }
    decision: approve
    ttl: 5m
    approval: { approvers: [alice, bob], timeout: 15m }
  - name: glass
    match: { resource: "prod/*" }
    when: request.parameters.emergency == true
    decision: break_glass
    ttl: 15m
    break_glass: { approvers: [alice], groups: [sre] }
`;
const policy = Policy.parse(RULES, 'policy.yaml', { principals: Principals.parse(PRINCIPALS, 'principals.yaml') });

async function setup(options: HarnessOptions = {}) {
  const h = await approvalsHarness({ policy, ...options });
  const me = requesterIdentity(h.clock);
  const ask = (patch: Partial<RequestOperationRequest> = {}, who: Requester = me) =>
    h.service.requestOperation(
      who,
      RequestOperationRequest.create({ ...baseOperation, parametersJson: '{"emergency":false}', ...patch }),
    );
  return { ...h, me, ask };
}

const counter = async (c: { get(): Promise<{ values: { labels: object; value: number }[] }> }) =>
  (await c.get()).values.map((v) => [v.labels, v.value]);

describe('request service (unit, fakes)', () => {
  it('allows: mints a credential bound to the request and audits request, decision and credential first', async () => {
    const h = await setup();
    const out = await h.ask({ resource: 'staging/web', audience: '' });
    assert.equal(out.state, 'APPROVED');
    if (out.state !== 'APPROVED') return;
    assert.equal(out.rule, 'staging');
    assert.equal(out.breakGlass, false);
    assert.equal(out.credential.expiresAt, h.clock.now() + 600_000, "the rule's ttl");
    assert.equal(out.credential.claims.aud, 'https://default.example.org', 'the default audience');
    assert.deepEqual(
      h.audit.of(out.requestId).map((e) => [e.type, e.decision, e.rule, e.policy_digest, e.jti]),
      [
        ['request_received', undefined, undefined, undefined, undefined],
        ['decision', 'allow', 'staging', policy.digest, undefined],
        ['credential_issued', undefined, undefined, undefined, out.credential.jti],
      ],
    );
    assert.equal(h.audit.of(out.requestId)[0]?.certificate_thumbprint, h.me.thumbprint);
    assert.deepEqual(await counter(h.metrics.requests), [[{ decision: 'allow', rule: 'staging' }, 1]]);
    assert.deepEqual(await counter(h.metrics.credentialsIssued), [[{}, 1]]);
    assert.equal(await h.store.pendingCount(), 0, 'nothing stored for an allowed request');
  });

  it('denies by rule, or when no rule matches, with the reason, minting nothing', async () => {
    const h = await setup();
    const frozen = await h.ask({ resource: 'prod/frozen' });
    assert.deepEqual(frozen, {
      state: 'DENIED',
      requestId: frozen.requestId,
      rule: 'frozen',
      message: 'prod/frozen is frozen',
    });
    const none = await h.ask({ resource: 'qa/web' });
    assert.deepEqual(none, {
      state: 'DENIED',
      requestId: none.requestId,
      rule: null,
      message: `no policy rule allows deploy on qa/web for ${REQUESTER}`,
    });
    assert.deepEqual(
      h.audit.events.map((e) => [e.type, e.request_id === frozen.requestId, e.decision, e.message]),
      [
        ['request_received', true, undefined, undefined],
        ['decision', true, 'deny', 'prod/frozen is frozen'],
        ['request_received', false, undefined, undefined],
        ['decision', false, 'deny', none.state === 'DENIED' ? none.message : ''],
      ],
    );
    assert.equal(h.minter.inputs.length, 0);
    assert.deepEqual(await counter(h.metrics.requests), [
      [{ decision: 'deny', rule: 'frozen' }, 1],
      [{ decision: 'deny', rule: '(none)' }, 1],
    ]);
  });

  it('needs approval: stores the request, audits it, schedules its expiry and notifications before answering', async () => {
    const h = await setup();
    const out = await h.ask({ reason: 'release 42' });
    assert.equal(out.state, 'PENDING_APPROVAL');
    if (out.state !== 'PENDING_APPROVAL') return;
    assert.equal(out.rule, 'prod');
    assert.equal(out.pollIntervalMs, 2000);
    assert.deepEqual(out.excluded, []);
    const stored = await h.store.get(out.requestId);
    assert.deepEqual(
      [stored?.state, stored?.approvers, stored?.expiresAt, stored?.ttlCapMs, stored?.reason, stored?.policyDigest],
      ['PENDING_APPROVAL', ['alice', 'bob'], h.clock.now() + 900_000, 300_000, 'release 42', policy.digest],
    );
    assert.deepEqual(h.audit.typesOf(out.requestId), ['request_received', 'decision']);
    assert.equal(h.audit.of(out.requestId)[1]?.decision, 'approve');
    assert.equal(h.jobs.expiryOf(out.requestId)?.runAt, h.clock.now() + 900_000);
    assert.deepEqual(h.jobs.notificationsOf(out.requestId), [`${out.requestId}.created.slack`]);
    assert.deepEqual(h.store.outboxOf(out.requestId), []);
    assert.equal(h.minter.inputs.length, 0, 'no credential until approved');
  });

  it('breaks glass with a reason: allowed at once, flagged in the audit, announced to every approver before the credential leaves', async () => {
    const h = await setup();
    const out = await h.ask({ parametersJson: '{"emergency":true}', reason: 'site down' });
    assert.equal(out.state, 'APPROVED');
    if (out.state !== 'APPROVED') return;
    assert.deepEqual([out.rule, out.breakGlass], ['glass', true]);
    const decision = h.audit.of(out.requestId)[1];
    assert.deepEqual(
      [decision?.decision, decision?.break_glass, decision?.notified],
      ['break_glass', true, { approvers: ['alice'], groups: ['sre'] }],
    );
    const job = h.jobs.queued.get(`${out.requestId}.break_glass.slack`);
    assert.equal(job?.notice?.credentialId, out.credential.jti);
    assert.equal(job?.notice?.reason, 'site down');
    assert.deepEqual(await counter(h.metrics.requests), [[{ decision: 'break_glass', rule: 'glass' }, 1]]);

    const noReason = await h.ask({ parametersJson: '{"emergency":true}' });
    assert.equal(noReason.state, 'PENDING_APPROVAL', 'without a reason: the approval path');
  });

  it('fails the break-glass call when its announcement cannot be queued', async () => {
    const h = await setup();
    h.jobs.faults.fail('notifyBreakGlass');
    await assert.rejects(h.ask({ parametersJson: '{"emergency":true}', reason: 'site down' }), {
      code: 'ERR_REDIS_UNAVAILABLE',
      kind: 'unavailable',
    });
    assert.deepEqual(await counter(h.metrics.credentialsIssued), [[{}, 0]], 'no credential handed out');
  });

  it('fails closed when the audit append fails: no credential, no answer, no record', async () => {
    const h = await setup();
    h.audit.faults.fail('audit append');
    await assert.rejects(h.ask({ resource: 'staging/web' }), { code: 'ERR_REDIS_UNAVAILABLE', kind: 'unavailable' });
    h.audit.faults.fail('audit append');
    await assert.rejects(h.ask({ resource: 'prod/frozen' }), { code: 'ERR_REDIS_UNAVAILABLE' });
    assert.deepEqual(h.audit.events, []);
    assert.deepEqual(await counter(h.metrics.credentialsIssued), [[{}, 0]]);
    assert.deepEqual(await counter(h.metrics.requests), []);
    const ok = await h.ask({ resource: 'staging/web' });
    assert.equal(ok.state, 'APPROVED', 'and works again once the log is back');
  });

  it('answers a retry with the same client_request_id with the same request, recorded once', async () => {
    const h = await setup();
    const first = await h.ask({ clientRequestId: 'retry-1' });
    const again = await h.ask({ clientRequestId: 'retry-1' });
    assert.equal(again.requestId, first.requestId);
    assert.equal(again.state, 'PENDING_APPROVAL');
    assert.deepEqual(h.audit.typesOf(first.requestId), ['request_received', 'decision']);
    assert.equal(await h.store.pendingCount(), 1);
    await assert.rejects(h.ask({ clientRequestId: 'retry-1', reason: 'different' }), (e: Error & object) => {
      assert.deepEqual(
        { ...e, message: e.message },
        {
          name: 'CountersignError',
          kind: 'already_exists',
          code: 'ERR_IDEMPOTENCY_KEY_REUSED',
          details: { requestId: first.requestId },
          message: `client_request_id "retry-1" was already used for a different request (${first.requestId}); use a new id for new content`,
        },
      );
      return true;
    });
    const other = await h.ask({ clientRequestId: 'retry-1' }, requesterIdentity(h.clock, `spiffe://${TD}/ci/other`));
    assert.notEqual(other.requestId, first.requestId, "the key is the workload's own");
  });

  it('finishes the creation records on a retry when the first attempt died after storing the request', async () => {
    const h = await setup();
    h.store.faults.fail('create', { after: true }); // stored, then the reply was lost
    await assert.rejects(h.ask({ clientRequestId: 'crash-1' }), { code: 'ERR_REDIS_UNAVAILABLE' });
    const [id] = await h.store.pendingIds({ limit: 10 });
    assert.ok(id);
    assert.deepEqual(h.audit.typesOf(id), []);
    assert.deepEqual(h.store.outboxOf(id), [`${id}|created`]);

    const retry = await h.ask({ clientRequestId: 'crash-1' });
    assert.equal(retry.requestId, id);
    assert.deepEqual(h.audit.typesOf(id), ['request_received', 'decision']);
    await h.ask({ clientRequestId: 'crash-1' });
    assert.deepEqual(h.audit.typesOf(id), ['request_received', 'decision'], 'and only once');
    assert.deepEqual(h.jobs.notificationsOf(id), [`${id}.created.slack`]);
  });

  it('limits pending requests per workload; a request past its deadline stops counting', async () => {
    const h = await setup({ store: { maxPendingPerWorkload: 2 } });
    await h.ask();
    h.clock.advance(60_000);
    await h.ask();
    await assert.rejects(h.ask(), {
      code: 'ERR_TOO_MANY_PENDING',
      kind: 'resource_exhausted',
      message: `${REQUESTER} already has 2 requests waiting for approval, the most allowed (limit requests.limits.max_pending_per_workload = 2); wait for one to end or cancel one`,
    });
    const other = await h.ask({}, requesterIdentity(h.clock, `spiffe://${TD}/ci/other`));
    assert.equal(other.state, 'PENDING_APPROVAL', 'another workload has its own limit');
    h.clock.advance(900_000 - 60_000); // the first one's deadline, before any sweep
    assert.equal((await h.ask()).state, 'PENDING_APPROVAL');
  });

  it('limits the request rate per workload, refusing before anything is decided or recorded', async () => {
    const h = await setup({ rate: { perSecond: 1, burst: 2 } });
    const results = await Promise.allSettled([1, 2, 3].map(() => h.ask({ resource: 'staging/web' })));
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'rejected'],
    );
    const refused = results[2];
    assert.equal(refused?.status === 'rejected' && (refused.reason as { code: string }).code, 'ERR_RATE_LIMITED');
    assert.match(
      refused?.status === 'rejected' ? (refused.reason as Error).message : '',
      /sending requests faster than allowed .*; retry in 1s$/,
    );
    assert.equal(h.audit.events.length, 6, 'two allowed requests, three records each');
    h.clock.advance(1000);
    assert.equal((await h.ask({ resource: 'staging/web' })).state, 'APPROVED');
  });

  it('decides a burst a few requests per turn of the event loop, in arrival order (turns.ts)', async () => {
    const due: (() => void)[] = [];
    const h = await setup({ turns: new TurnSlots(4, (callback) => void due.push(callback)) });
    const resources = Array.from({ length: 10 }, (_, i) => `staging/web-${i}`);
    const answers = Promise.all(resources.map((resource) => h.ask({ resource })));
    // Let the rate limiter's batch go through and everything it allows run as far as it can.
    const settle = async () => {
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    };
    const minted = () => h.minter.inputs.map((input) => input.resource);
    await settle();
    assert.deepEqual(minted(), resources.slice(0, 4), 'four decided in the turn the burst was let through');
    const nextTurn = async () => {
      due.splice(0).forEach((turn) => turn());
      await settle();
    };
    await nextTurn();
    assert.deepEqual(minted(), resources.slice(0, 4), 'nobody more before the next poll for I/O');
    await nextTurn();
    assert.deepEqual(minted(), resources.slice(0, 8), 'four more in the next turn');
    await nextTurn();
    const out = await answers;
    assert.deepEqual(minted(), resources);
    assert.deepEqual(
      out.map((o) => o.state),
      resources.map(() => 'APPROVED'),
    );
  });

  it('refuses an invalid request before policy, and an on_behalf_of that is not who started the CI run', async () => {
    const h = await setup();
    await assert.rejects(h.ask({ operation: 'has space' }), { code: 'ERR_INVALID_FIELD', kind: 'invalid_argument' });
    const ci: Requester = {
      ...h.me,
      oidc: {
        issuer: 'gitlab',
        subject: 'project_path:group/app',
        claims: { user_login: 'alice' },
        actor: { claim: 'user_login', value: 'alice', field: 'login' },
        onBehalfOf: 'alice',
        actorNames: ['alice', `alice@${TD}`],
      },
    };
    await assert.rejects(h.ask({ onBehalfOf: 'bob' }, ci), {
      code: 'ERR_ON_BEHALF_OF_CONFLICT',
      message: /^on_behalf_of: bob is not alice, who started this run \(claim user_login/,
    });
    assert.deepEqual(h.audit.events, []);
    const out = await h.ask({ resource: 'staging/web', onBehalfOf: `alice@${TD}` }, ci);
    assert.equal(h.audit.of(out.requestId)[0]?.on_behalf_of, 'alice', 'the actor, as a principal name');
  });
});
