// The approval workflow (requests/workflow.ts) on in-memory fakes: who may vote,
// quorum and deny thresholds, duplicate votes, expiry, cancellation, and what is
// recorded (audit, outbox, jobs) for each. No Redis; the e2e version with real
// Redis and BullMQ is approvals-workflow.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VoteOutcome } from '@countersign/approvers';
import { ScriptCode } from '../src/requests/script-codes.js';
import type { StoredVote } from '../src/requests/store.js';
import { approvalsHarness, REQUESTER, TD } from './support/approvals-harness.js';

const refusal = (o: VoteOutcome): string | undefined => (o.counted ? undefined : o.code);
const message = (o: VoteOutcome): string => (o.counted ? '' : o.message);

describe('approval workflow (unit, fakes)', () => {
  it('approves once `required` distinct approvers voted, and records each step in order', async () => {
    const h = await approvalsHarness();
    const r = await h.create({ required: 2 });
    assert.deepEqual(h.jobs.expiryOf(r.id)?.runAt, r.expiresAt);
    h.clock.advance(1000);
    const first = await h.vote(r, 'alice', 'approve');
    assert.ok(first.counted);
    assert.equal(first.request.state, 'PENDING_APPROVAL');
    assert.equal((await h.store.get(r.id))?.approvals, 1);
    h.clock.advance(1000);
    const second = await h.vote(r, 'bob', 'approve', { reason: 'lgtm' });
    assert.ok(second.counted);
    assert.equal(second.request.state, 'APPROVED');
    assert.equal(second.request.resolutionMessage, 'approved by alice (test), bob (test)');
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision', 'vote', 'vote', 'resolution']);
    const resolution = h.audit.of(r.id).at(-1);
    assert.equal(resolution?.state, 'APPROVED');
    assert.deepEqual(h.store.outboxOf(r.id), [], 'every effect done');
    assert.deepEqual(h.jobs.notificationsOf(r.id), [
      `${r.id}.created.slack`,
      `${r.id}.resolved.slack`,
      `${r.id}.vote.alice.slack`,
      `${r.id}.vote.bob.slack`,
    ]);
    assert.equal(h.jobs.expiryOf(r.id), undefined, 'the expiry job is dropped once it ended');
    assert.deepEqual(h.jobs.cancelled, [r.id]);
    assert.deepEqual(h.store.noted('deploy', 'prod/web'), {
      request_id: r.id,
      parameters_json: r.parametersJson,
      approved_at: h.clock.now(),
    });
  });

  it('needs denyThreshold deny votes to end a request DENIED, and a deny does not count toward approval', async () => {
    const h = await approvalsHarness();
    const r = await h.create({ denyThreshold: 2, required: 2 });
    assert.ok((await h.vote(r, 'alice', 'deny', { reason: 'no' })).counted);
    assert.equal(await h.state(r.id), 'PENDING_APPROVAL');
    const second = await h.vote(r, 'bob', 'deny', { reason: 'also no' });
    assert.ok(second.counted);
    assert.equal(second.request.state, 'DENIED');
    assert.equal(second.request.resolutionMessage, 'denied by bob (test): also no');
    const stored = await h.store.get(r.id);
    assert.deepEqual([stored?.approvals, stored?.denials, stored?.version], [0, 2, 3]);
  });

  it("lets members of the rule's groups decide, and nobody else", async () => {
    const h = await approvalsHarness();
    const r = await h.create({ approvers: [], groups: ['sre'] });
    const bob = await h.vote(r, 'bob', 'approve');
    assert.equal(refusal(bob), 'ERR_NOT_AN_APPROVER');
    assert.equal(message(bob), `bob is not an approver of request ${r.id} (rule test-rule names group sre)`);
    assert.deepEqual(
      (await h.workflow.listPendingFor('dave')).map((v) => v.id),
      [r.id],
    );
    const carol = await h.vote(r, 'carol', 'approve');
    assert.ok(carol.counted);
    assert.equal(carol.request.state, 'APPROVED');
    assert.deepEqual(await h.workflow.listPendingFor('dave'), []);
    assert.deepEqual(
      h.audit.of(r.id).filter((e) => e.type === 'vote_refused'),
      [
        {
          type: 'vote_refused',
          request_id: r.id,
          principal: 'bob',
          channel: 'test',
          decision: 'approve',
          code: 'ERR_NOT_AN_APPROVER',
          message: message(bob),
        },
      ],
    );
  });

  it('keeps separation of duties: the requester, and the human it acts for, cannot decide', async () => {
    const h = await approvalsHarness();
    const own = await h.create({}, { requester: `spiffe://${TD}/human/alice` });
    const self = await h.vote(own, 'alice', 'approve');
    assert.equal(refusal(self), 'ERR_SELF_APPROVAL');
    assert.match(
      message(self),
      /alice made request .* \(as spiffe:\/\/example.org\/human\/alice\) and cannot decide it/,
    );
    assert.deepEqual(await h.workflow.listPendingFor('alice'), [], 'not offered to its own requester');

    const forAlice = await h.create({}, { onBehalfOf: `alice@${TD}` });
    assert.equal(refusal(await h.vote(forAlice, 'alice', 'approve')), 'ERR_SELF_APPROVAL', 'by e-mail address');
    assert.ok((await h.vote(forAlice, 'bob', 'approve')).counted, 'someone else may');

    // Stored before on_behalf_of was validated as a principal name: nobody can be shown to be someone else.
    const forNobody = await h.create();
    Object.assign(h.store.fields(forNobody.id) ?? {}, { ob: 'not a name!' });
    const anyone = await h.vote(forNobody, 'bob', 'approve');
    assert.equal(refusal(anyone), 'ERR_SELF_APPROVAL');
    assert.match(message(anyone), /no approver can be shown to be someone else/);

    const allowed = await h.create({ allowSelfApproval: true }, { requester: `spiffe://${TD}/human/alice` });
    assert.ok((await h.vote(allowed, 'alice', 'approve')).counted, 'unless the rule allows self-approval');
  });

  it('requires step-up "confirm" (the resource typed again, and a reason) and records no refused vote', async () => {
    const h = await approvalsHarness();
    const r = await h.create({ stepUp: 'confirm' });
    assert.equal(refusal(await h.vote(r, 'alice', 'approve')), 'ERR_STEP_UP_REQUIRED');
    const typo = await h.vote(r, 'alice', 'approve', {
      stepUp: 'confirm',
      confirmedResource: 'prod/wbe',
      reason: 'ok',
    });
    assert.equal(refusal(typo), 'ERR_STEP_UP_MISMATCH');
    const noReason = await h.vote(r, 'alice', 'approve', { stepUp: 'confirm', confirmedResource: 'prod/web' });
    assert.equal(refusal(noReason), 'ERR_REASON_REQUIRED');
    assert.deepEqual((await h.store.getWithVotes(r.id))?.votes, []);
    const ok = await h.vote(r, 'alice', 'approve', {
      stepUp: 'confirm',
      confirmedResource: 'prod/web',
      reason: 'checked',
    });
    assert.ok(ok.counted);
    assert.deepEqual(
      ok.request.votes.map((v) => [v.principal, v.stepUp, v.reason, v.at]),
      [['alice', 'confirm', 'checked', h.clock.now()]],
    );
    assert.deepEqual(
      h.audit.of(r.id).flatMap((e) => (e.type === 'vote_refused' ? [e.code] : [])),
      ['ERR_STEP_UP_REQUIRED', 'ERR_STEP_UP_MISMATCH', 'ERR_REASON_REQUIRED'],
    );
  });

  it('refuses a webauthn approval when no console can check the passkey, and bad reasons', async () => {
    const h = await approvalsHarness({ maxReasonLength: 10 });
    const r = await h.create({ stepUp: 'webauthn' });
    const noConsole = await h.vote(r, 'alice', 'approve');
    assert.equal(refusal(noConsole), 'ERR_STEP_UP_REQUIRED');
    assert.match(message(noConsole), /approver console, which is not configured on this broker/);
    const plain = await h.create();
    const long = await h.vote(plain, 'alice', 'deny', { reason: 'x'.repeat(11) });
    assert.equal(message(long), 'reason: is 11 characters long, at most 10 are allowed');
    assert.equal(refusal(await h.vote(plain, 'alice', 'deny', { reason: 'a\u0007b' })), 'ERR_INVALID_FIELD');
    assert.ok((await h.vote(plain, 'alice', 'deny', { reason: 'x'.repeat(10) })).counted);
  });

  it("counts a channel's redelivery of the same interaction once, and refuses any other second vote", async () => {
    const h = await approvalsHarness();
    const r = await h.create({ required: 2 });
    assert.ok((await h.vote(r, 'alice', 'approve', { deliveryId: 'slack-1' })).counted);
    const redelivered = await h.vote(r, 'alice', 'approve', { deliveryId: 'slack-1' });
    assert.ok(redelivered.counted);
    assert.equal(redelivered.request.votes.length, 1);
    const other = await h.vote(r, 'alice', 'approve', { deliveryId: 'slack-2' });
    assert.equal(refusal(other), 'ERR_ALREADY_VOTED');
    assert.match(message(other), /^alice already voted approve on request .* \(test\); each person votes once$/);
    const flipped = await h.vote(r, 'Alice', 'deny', { deliveryId: 'slack-1' });
    assert.equal(refusal(flipped), 'ERR_ALREADY_VOTED', 'another spelling of the name, and another decision');
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision', 'vote', 'vote_refused', 'vote_refused']);
  });

  it('decides exactly once when everyone votes at the same instant', async () => {
    const h = await approvalsHarness();
    const r = await h.create({ approvers: ['alice', 'bob', 'carol', 'dave'] });
    const outcomes = await Promise.all(['alice', 'bob', 'carol', 'dave'].map((p) => h.vote(r, p, 'approve')));
    assert.equal(outcomes.filter((o) => o.counted).length, 1);
    assert.deepEqual(outcomes.filter((o) => !o.counted).map(refusal), [
      'ERR_REQUEST_RESOLVED',
      'ERR_REQUEST_RESOLVED',
      'ERR_REQUEST_RESOLVED',
    ]);
    const types = h.audit.typesOf(r.id);
    assert.equal(types.filter((t) => t === 'resolution').length, 1);
    assert.equal(types.filter((t) => t === 'vote').length, 1);
  });

  it('expires at the deadline: not a millisecond before, once, with a clear message for late voters', async () => {
    const h = await approvalsHarness();
    const r = await h.create({ timeoutMs: 10_000 });
    h.clock.advance(9_999);
    assert.deepEqual(await h.workflow.expire(r.id), { code: ScriptCode.NotDue, expiresAt: r.expiresAt });
    assert.equal((await h.sweeper.sweep()).expired, 0);
    h.clock.advance(1);
    assert.deepEqual(await h.sweeper.sweep(), { expired: 1, outboxCompleted: 0, pending: 0 });
    const expired = await h.store.get(r.id);
    assert.equal(expired?.state, 'EXPIRED');
    assert.equal(expired?.resolutionMessage, 'expired with 0 of 1 approval(s)');
    const late = await h.vote(r, 'alice', 'approve');
    assert.equal(refusal(late), 'ERR_REQUEST_EXPIRED');
    assert.equal(
      message(late),
      `request ${r.id} expired at ${new Date(r.expiresAt).toISOString()} with 0 of 1 approval(s); it no longer accepts votes (the requester must ask again)`,
    );
    assert.deepEqual(await h.workflow.expire(r.id), { code: ScriptCode.Resolved }, 'expiring twice changes nothing');
    assert.equal(h.audit.typesOf(r.id).filter((t) => t === 'resolution').length, 1);
    assert.deepEqual(h.jobs.cancelled, [], "an expired request's own job is the one that ran");
  });

  it('expires an overdue request on the first vote, before any job or sweep got to it', async () => {
    const h = await approvalsHarness();
    const r = await h.create({ timeoutMs: 5_000 });
    h.clock.advance(5_000);
    assert.equal(refusal(await h.vote(r, 'bob', 'approve')), 'ERR_REQUEST_EXPIRED');
    assert.equal(await h.state(r.id), 'EXPIRED');
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision', 'resolution', 'vote_refused']);
  });

  it('never changes a resolution once set (vote, expire, cancel, and the store itself refuse)', async () => {
    const h = await approvalsHarness();
    const r = await h.create();
    assert.ok((await h.vote(r, 'alice', 'approve')).counted);
    h.clock.advance(120_000);
    assert.deepEqual(await h.workflow.expire(r.id), { code: ScriptCode.Resolved });
    await assert.rejects(h.workflow.cancel(r.requester, r.id, ''), {
      code: 'ERR_REQUEST_RESOLVED',
      message: /it can no longer be cancelled$/,
    });
    assert.equal(refusal(await h.vote(r, 'bob', 'deny')), 'ERR_REQUEST_RESOLVED');
    const vote: StoredVote = {
      principal: 'bob',
      decision: 'deny',
      channel: 't',
      at: h.clock.now(),
      stepUp: 'click',
      reason: '',
      deliveryId: '',
    };
    assert.deepEqual(await h.store.vote(r, vote), [ScriptCode.Resolved, 'APPROVED']);
    assert.equal(await h.state(r.id), 'APPROVED');
  });

  it('lets the requester cancel its own pending request, and nobody else', async () => {
    const h = await approvalsHarness({ maxReasonLength: 20 });
    const r = await h.create();
    await assert.rejects(h.workflow.cancel(`spiffe://${TD}/ci/other`, r.id, ''), { code: 'ERR_REQUEST_NOT_FOUND' });
    await assert.rejects(h.workflow.cancel(REQUESTER, r.id, 'x'.repeat(21)), {
      code: 'ERR_LIMIT_EXCEEDED',
      kind: 'resource_exhausted',
    });
    await assert.rejects(h.workflow.cancel(REQUESTER, r.id, 'bell\u0007'), { code: 'ERR_INVALID_FIELD' });
    const cancelled = await h.workflow.cancel(REQUESTER, r.id, 'not needed');
    assert.equal(cancelled.state, 'CANCELLED');
    assert.equal(cancelled.resolutionMessage, 'cancelled by the requester: not needed');
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision', 'resolution']);
    assert.equal(refusal(await h.vote(r, 'alice', 'approve')), 'ERR_REQUEST_CANCELLED');

    const overdue = await h.create({ timeoutMs: 1000 });
    h.clock.advance(1000);
    await assert.rejects(h.workflow.cancel(REQUESTER, overdue.id, ''), {
      code: 'ERR_REQUEST_EXPIRED',
      message: /it can no longer be cancelled/,
    });
    assert.equal(await h.state(overdue.id), 'EXPIRED');
  });

  it('refuses (and audits) a vote on a request that does not exist, or no longer does after retention', async () => {
    const h = await approvalsHarness({ store: { retentionMs: 60_000 } });
    const unknown = await h.workflow.vote({
      requestId: 'req_nope',
      principal: 'alice',
      channel: 'test',
      decision: 'approve',
      reason: '',
      stepUp: 'click',
    });
    assert.equal(refusal(unknown), 'ERR_REQUEST_NOT_FOUND');
    assert.equal(unknown.request, undefined);
    assert.equal(h.audit.events.at(-1)?.code, 'ERR_REQUEST_NOT_FOUND');

    const r = await h.create();
    assert.ok((await h.vote(r, 'alice', 'deny')).counted);
    h.clock.advance(59_999);
    assert.equal(refusal(await h.vote(r, 'bob', 'deny')), 'ERR_REQUEST_RESOLVED');
    h.clock.advance(1);
    assert.equal(refusal(await h.vote(r, 'bob', 'deny')), 'ERR_REQUEST_NOT_FOUND');
    assert.equal(await h.workflow.get(r.id), undefined);
  });

  it('fails closed when the audit log is down: a refusal is not answered, a counted vote is finished later', async () => {
    const h = await approvalsHarness();
    const r = await h.create();
    h.audit.faults.fail('audit append');
    await assert.rejects(h.vote(r, 'carol', 'approve'), { code: 'ERR_REDIS_UNAVAILABLE', kind: 'unavailable' });

    h.audit.faults.fail('audit append');
    await assert.rejects(h.vote(r, 'alice', 'approve'), { code: 'ERR_REDIS_UNAVAILABLE' });
    // The script ran (the vote counts), its records did not: they wait in the outbox.
    assert.equal(await h.state(r.id), 'APPROVED');
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision']);
    assert.deepEqual(h.store.outboxOf(r.id), [`${r.id}|resolved`, `${r.id}|vote|alice`]);
    assert.deepEqual(h.jobs.notificationsOf(r.id), [`${r.id}.created.slack`], 'nobody told before the audit');

    h.clock.advance(h.outboxGraceMs);
    assert.equal((await h.sweeper.sweep()).outboxCompleted, 2);
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision', 'vote', 'resolution']);
    assert.deepEqual(h.store.outboxOf(r.id), []);
    assert.equal(h.jobs.notificationsOf(r.id).length, 3);
  });
});
