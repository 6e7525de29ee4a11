// The approval workflow against real Redis and BullMQ, driven directly with an
// injected clock: what each ApprovalRequirement field (the policy contract) does,
// expiry, the outbox after a crash, and collection of the one credential.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import type { VoteInput } from '@countersign/approvers';
import { BrokerClient, RequestOperationRequest, RequestState, type RequestOperationResponse } from '@countersign/proto';
import { ManualClock } from '../src/clock.js';
import type { SvidIdentity } from '../src/identity/x509-svid.js';
import type { ApprovalRequirement } from '../src/policy/decision.js';
import { ScriptCode } from '../src/requests/script-codes.js';
import type { StoredRequest } from '../src/requests/store.js';
import { validateOperationRequest } from '../src/requests/validate.js';
import { auditEvents, startTestBroker, type TestBroker } from './support/index.js';

const TD = 'example.org';
const PRINCIPALS = `version: 1
principals:
  - { name: alice, email: alice@${TD}, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, spiffe_ids: [spiffe://${TD}/human/bob] }
  - { name: carol, spiffe_ids: [spiffe://${TD}/human/carol] }
  - { name: dave, spiffe_ids: [spiffe://${TD}/human/dave] }
groups:
  - { name: sre, members: [carol, dave] }
`;

const requirement = (patch: Partial<ApprovalRequirement> = {}): ApprovalRequirement => ({
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

const baseRequest = RequestOperationRequest.create({
  operation: 'deploy',
  resource: 'prod/web',
  parametersJson: '{"version":"1"}',
  audience: 'https://deploy.example.org',
});

describe('approval workflow', () => {
  const clock = new ManualClock(Date.now());
  let t: TestBroker;

  before(async () => {
    t = await startTestBroker({
      clock,
      principals: PRINCIPALS,
      // The scheduled sweeper stays out of the way; these tests call sweep() themselves.
      extraConfig: 'requests:\n  sweep_interval: 5m\n  collection_window: 2m\n',
    });
  });
  after(async () => {
    await t?.close();
  });

  const approvals = () => t.broker.approvals;

  async function create(
    patch: Partial<ApprovalRequirement> = {},
    who: { requester?: string; onBehalfOf?: string; parameters?: string } = {},
  ): Promise<StoredRequest> {
    const { store, outbox } = approvals();
    const { request } = await store.create({
      requester: {
        spiffeId: who.requester ?? `spiffe://${TD}/ci/deployer`,
        trustDomain: TD,
        thumbprint: 'thumbprint-of-the-requester',
        notAfter: clock.now() + 3600_000,
      },
      operation: validateOperationRequest({
        ...baseRequest,
        onBehalfOf: who.onBehalfOf ?? '',
        parametersJson: who.parameters ?? `{"n":${Math.random()}}`,
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
    approvals().workflow.vote({
      requestId: request.id,
      principal,
      channel: 'test',
      decision,
      reason: '',
      stepUp: 'click',
      ...extra,
    });

  const state = async (id: string) => (await approvals().store.get(id))?.state;

  const audit = async (id: string) => (await auditEvents(t.broker.redis, t.prefix)).filter((e) => e.request_id === id);

  const identityOf = (r: StoredRequest, thumbprint = r.certificateThumbprint): SvidIdentity => ({
    spiffeId: r.requester,
    trustDomain: TD,
    path: '/ci/deployer',
    thumbprint,
    serial: '01',
    notBefore: clock.now() - 1000,
    notAfter: r.svidNotAfter,
  });

  it('needs denyThreshold deny votes to end a request DENIED', async () => {
    const r = await create({ denyThreshold: 2 });
    assert.equal((await vote(r, 'alice', 'deny', { reason: 'no' })).counted, true);
    assert.equal(await state(r.id), 'PENDING_APPROVAL');
    const second = await vote(r, 'bob', 'deny', { reason: 'also no' });
    assert.ok(second.counted);
    assert.equal(second.request.state, 'DENIED');
    assert.equal(second.request.resolutionMessage, 'denied by bob (test): also no');
  });

  it("lets members of the rule's groups decide, and nobody else", async () => {
    const r = await create({ approvers: [], groups: ['sre'] });
    const bob = await vote(r, 'bob', 'approve');
    assert.equal(bob.counted, false);
    assert.equal(!bob.counted && bob.code, 'ERR_NOT_AN_APPROVER');
    assert.match(!bob.counted ? bob.message : '', /rule test-rule names group sre/);
    const carol = await vote(r, 'carol', 'approve');
    assert.ok(carol.counted);
    assert.equal(carol.request.state, 'APPROVED');
    assert.deepEqual(
      (await approvals().workflow.listPendingFor('dave')).filter((v) => v.id === r.id),
      [],
    );
  });

  it("keeps the requester's own principal from deciding, unless the rule allows self-approval", async () => {
    const asAlice = { requester: `spiffe://${TD}/human/alice` };
    const r = await create({}, asAlice);
    const refused = await vote(r, 'alice', 'approve');
    assert.equal(!refused.counted && refused.code, 'ERR_SELF_APPROVAL');
    assert.match(!refused.counted ? refused.message : '', /alice made request .* and cannot decide it/);
    assert.ok(!(await approvals().workflow.listPendingFor('alice')).some((v) => v.id === r.id));

    const allowed = await create({ allowSelfApproval: true }, asAlice);
    const self = await vote(allowed, 'alice', 'approve');
    assert.ok(self.counted);
    assert.equal(self.request.state, 'APPROVED');
    const onBehalf = await create({ allowSelfApproval: true }, { onBehalfOf: `alice@${TD}` });
    assert.ok((await vote(onBehalf, 'alice', 'approve')).counted);
  });

  it('requires step-up "confirm" (the resource typed again, and a reason) when the rule says so', async () => {
    const r = await create({ stepUp: 'confirm' });
    const click = await vote(r, 'alice', 'approve');
    assert.equal(!click.counted && click.code, 'ERR_STEP_UP_REQUIRED');
    const typo = await vote(r, 'alice', 'approve', { stepUp: 'confirm', confirmedResource: 'prod/wbe', reason: 'ok' });
    assert.equal(!typo.counted && typo.code, 'ERR_STEP_UP_MISMATCH');
    assert.match(!typo.counted ? typo.message : '', /type prod\/web exactly/);
    const noReason = await vote(r, 'alice', 'approve', { stepUp: 'confirm', confirmedResource: 'prod/web' });
    assert.equal(!noReason.counted && noReason.code, 'ERR_REASON_REQUIRED');
    assert.equal(await state(r.id), 'PENDING_APPROVAL');
    assert.deepEqual((await approvals().store.getWithVotes(r.id))?.votes, [], 'refused votes are not recorded');

    const ok = await vote(r, 'alice', 'approve', {
      stepUp: 'confirm',
      confirmedResource: 'prod/web',
      reason: 'checked the diff',
    });
    assert.ok(ok.counted);
    assert.deepEqual(
      ok.request.votes.map((v) => [v.principal, v.stepUp, v.reason, v.channel]),
      [['alice', 'confirm', 'checked the diff', 'test']],
    );
    assert.equal(ok.request.votes[0]?.at, clock.now());
    const refusedCodes = (await audit(r.id)).filter((e) => e.type === 'vote_refused').map((e) => e.code);
    assert.deepEqual(refusedCodes, ['ERR_STEP_UP_REQUIRED', 'ERR_STEP_UP_MISMATCH', 'ERR_REASON_REQUIRED']);
  });

  it("counts a channel's redelivery of the same interaction once", async () => {
    const r = await create({ required: 2 });
    const first = await vote(r, 'alice', 'approve', { deliveryId: 'slack-action-1' });
    const redelivered = await vote(r, 'alice', 'approve', { deliveryId: 'slack-action-1' });
    assert.ok(first.counted && redelivered.counted);
    assert.equal(redelivered.request.votes.length, 1);
    const different = await vote(r, 'alice', 'approve', { deliveryId: 'slack-action-2' });
    assert.equal(!different.counted && different.code, 'ERR_ALREADY_VOTED');
    assert.equal((await audit(r.id)).filter((e) => e.type === 'vote').length, 1);
  });

  it('decides exactly once when many people vote at the same instant', async () => {
    const r = await create({ approvers: ['alice', 'bob', 'carol', 'dave'] });
    const outcomes = await Promise.all(['alice', 'bob', 'carol', 'dave'].map((p) => vote(r, p, 'approve')));
    assert.equal(outcomes.filter((o) => o.counted).length, 1);
    assert.deepEqual(
      outcomes.filter((o) => !o.counted).map((o) => !o.counted && o.code),
      ['ERR_REQUEST_RESOLVED', 'ERR_REQUEST_RESOLVED', 'ERR_REQUEST_RESOLVED'],
    );
    const records = await audit(r.id);
    assert.equal(records.filter((e) => e.type === 'resolution').length, 1);
    assert.equal(records.filter((e) => e.type === 'vote').length, 1);
  });

  it('expires a request at its deadline and refuses later votes with a clear message', async () => {
    const r = await create({ timeoutMs: 10_000 });
    clock.advance(9_999);
    assert.equal((await approvals().sweeper.sweep()).expired, 0);
    assert.equal(await state(r.id), 'PENDING_APPROVAL');
    clock.advance(1);
    const swept = await approvals().sweeper.sweep();
    assert.ok(swept.expired >= 1);
    const expired = await approvals().store.get(r.id);
    assert.equal(expired?.state, 'EXPIRED');
    assert.equal(expired?.resolutionMessage, 'expired with 0 of 1 approval(s)');
    const late = await vote(r, 'alice', 'approve');
    assert.equal(!late.counted && late.code, 'ERR_REQUEST_EXPIRED');
    assert.match(
      !late.counted ? late.message : '',
      new RegExp(
        `request ${r.id} expired at ${new Date(r.expiresAt).toISOString()} with 0 of 1 approval\\(s\\); it no longer accepts votes`,
      ),
    );
    assert.equal((await approvals().workflow.expire(r.id)).code, ScriptCode.Resolved, 'expiring twice changes nothing');
  });

  it('expires an overdue request on the first vote, even before any job or sweep got to it', async () => {
    const r = await create({ timeoutMs: 5_000 });
    clock.advance(5_000);
    const late = await vote(r, 'bob', 'approve');
    assert.equal(!late.counted && late.code, 'ERR_REQUEST_EXPIRED');
    assert.equal(await state(r.id), 'EXPIRED');
    assert.equal((await audit(r.id)).filter((e) => e.type === 'resolution').length, 1);
  });

  it('never changes a resolution once set', async () => {
    const r = await create();
    assert.ok((await vote(r, 'alice', 'approve')).counted);
    clock.advance(120_000);
    assert.equal((await approvals().workflow.expire(r.id)).code, ScriptCode.Resolved);
    await assert.rejects(approvals().workflow.cancel(r.requester, r.id, ''), { code: 'ERR_REQUEST_RESOLVED' });
    const deny = await vote(r, 'bob', 'deny');
    assert.equal(!deny.counted && deny.code, 'ERR_REQUEST_RESOLVED');
    const [code] = await approvals().store.vote(r, {
      principal: 'bob',
      decision: 'deny',
      channel: 'test',
      at: clock.now(),
      stepUp: 'click',
      reason: '',
      deliveryId: '',
    });
    assert.equal(code, ScriptCode.Resolved, 'the script itself refuses, whatever the caller checked');
    assert.equal(await state(r.id), 'APPROVED');
  });

  it('finishes what a transition implies when the process that ran it died first (the outbox)', async () => {
    const r = await create({ required: 1 });
    // As if the broker died right after the Lua script: the vote counts, its records are not written yet.
    const [code] = await approvals().store.vote(r, {
      principal: 'bob',
      decision: 'approve',
      channel: 'test',
      at: clock.now(),
      stepUp: 'click',
      reason: 'lgtm',
      deliveryId: '',
    });
    assert.equal(code, ScriptCode.Approved);
    assert.deepEqual(
      (await audit(r.id)).map((e) => e.type),
      ['request_received', 'decision'],
    );
    const outbox = await t.broker.redis.hkeys(`${t.prefix}outbox`);
    assert.deepEqual(outbox.filter((f) => f.startsWith(r.id)).sort(), [`${r.id}|resolved`, `${r.id}|vote|bob`]);

    clock.advance(10_000);
    assert.equal(
      (await approvals().sweeper.sweep()).outboxCompleted,
      0,
      'a fresh entry belongs to the process that wrote it',
    );
    clock.advance(25_000);
    assert.equal((await approvals().sweeper.sweep()).outboxCompleted, 2);
    assert.deepEqual(
      (await audit(r.id)).map((e) => e.type),
      ['request_received', 'decision', 'vote', 'resolution'],
    );
    assert.deepEqual(
      (await t.broker.redis.hkeys(`${t.prefix}outbox`)).filter((f) => f.startsWith(r.id)),
      [],
    );
  });

  it('records the votes and the resolution before the credential, when the requester collects before the voter wrote them', async () => {
    const r = await create({ required: 1 });
    // The vote counted (Lua) on another replica that has not appended its records yet, or lost Redis before it could.
    const [code] = await approvals().store.vote(r, {
      principal: 'alice',
      decision: 'approve',
      channel: 'test',
      at: clock.now(),
      stepUp: 'click',
      reason: '',
      deliveryId: '',
    });
    assert.equal(code, ScriptCode.Approved);
    const collected = await approvals().delivery!.get(identityOf(r), r.id);
    assert.ok(collected.credential?.jti);
    assert.deepEqual(
      (await audit(r.id)).map((e) => e.type),
      ['request_received', 'decision', 'vote', 'resolution', 'credential_issued'],
    );
    assert.deepEqual(
      (await t.broker.redis.hkeys(`${t.prefix}outbox`)).filter((f) => f.startsWith(r.id)),
      [],
    );
  });

  it('finishes the creation records on a retry when the first attempt died right after storing the request', async () => {
    const { store } = approvals();
    const operation = validateOperationRequest({
      ...baseRequest,
      clientRequestId: 'crash-1',
      parametersJson: '{"version":"9"}',
    });
    const { request } = await store.create({
      requester: {
        spiffeId: `spiffe://${TD}/ci/deployer`,
        trustDomain: TD,
        thumbprint: 'first-attempt',
        notAfter: clock.now() + 3600_000,
      },
      operation,
      rule: 'prod-deploys',
      rules: ['prod-deploys'],
      policyDigest: 'sha256:test',
      approval: requirement(),
      ttlCapMs: undefined,
    });
    assert.deepEqual(await audit(request.id), [], 'the first attempt died before its audit record');

    const svid = t.svid('ci/deployer');
    const client = new BrokerClient(
      t.address,
      credentials.createSsl(Buffer.from(t.ca.pem), Buffer.from(svid.keyPem), Buffer.from(svid.chainPem), {
        checkServerIdentity: () => undefined,
      }),
      {
        'grpc.ssl_target_name_override': TD,
      },
    );
    try {
      const retry = await new Promise<RequestOperationResponse>((resolve, reject) =>
        client.requestOperation(
          { ...baseRequest, parametersJson: '{"version":"9"}', clientRequestId: 'crash-1', audience: '' },
          (e, r) => (e ? reject(e) : resolve(r)),
        ),
      );
      assert.equal(retry.requestId, request.id);
      assert.equal(retry.state, RequestState.REQUEST_STATE_PENDING_APPROVAL);
    } finally {
      client.close();
    }
    assert.deepEqual(
      (await audit(request.id)).map((e) => e.type),
      ['request_received', 'decision'],
    );
  });

  it("mints one credential per approval, for the requester's certificate, within the collection window", async () => {
    const r = await create();
    await vote(r, 'alice', 'approve');
    const delivery = approvals().delivery!;
    const identity = identityOf(r);
    const all = await Promise.all(Array.from({ length: 5 }, () => delivery.get(identity, r.id)));
    const jtis = new Set(all.map((s) => s.credential?.jti));
    assert.equal(jtis.size, 1);
    assert.equal((await audit(r.id)).filter((e) => e.type === 'credential_issued').length, 1);

    await assert.rejects(delivery.get(identityOf(r, 'another-certificate'), r.id), {
      code: 'ERR_CERTIFICATE_MISMATCH',
    });
    await assert.rejects(delivery.get({ ...identity, spiffeId: `spiffe://${TD}/ci/other` }, r.id), {
      code: 'ERR_REQUEST_NOT_FOUND',
    });

    const late = await create();
    await vote(late, 'alice', 'approve');
    clock.advance(120_000);
    await assert.rejects(delivery.get(identityOf(late), late.id), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_COLLECTION_WINDOW_CLOSED');
      assert.match(e.message, /could only be collected until .* \(requests.collection_window\); make a new request/);
      return true;
    });
    assert.equal((await audit(late.id)).filter((e) => e.type === 'credential_issued').length, 0);
  });
});
