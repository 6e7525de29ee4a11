// Human approval end to end over mTLS gRPC with a real broker, Redis and BullMQ:
// requesters watch, poll, cancel and collect; approvers list and vote with their
// own SVIDs; channels are notified through retried jobs.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import type { ApprovalRequestView, ApproverChannel, VoteView } from '@countersign/approvers';
import { certificateThumbprint, parametersDigest, RequestState, VoteDecision } from '@countersign/proto';
import { decodeJwt, type JSONWebKeySet } from 'jose';
import {
  ApprovalsClient,
  CountersignClient,
  CountersignClientError,
  verifyCredential,
  type OperationResult,
} from '@countersign/agent';
import {
  auditEvents,
  eventually,
  startTestBroker,
  type IssuedSvid,
  type TestBroker,
} from '@countersign/broker/testing';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: staging-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "staging/*" }
    decision: allow
  - name: prod-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
    ttl: 5m
  - name: prod-migrations
    match: { workload: "spiffe://${TD}/ci/*", operation: migrate, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob, carol], required: 2, timeout: 15m }
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, email: alice@${TD}, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, email: bob@${TD}, spiffe_ids: [spiffe://${TD}/human/bob] }
  - { name: carol, spiffe_ids: [spiffe://${TD}/human/carol] }
  - { name: dave, spiffe_ids: [spiffe://${TD}/human/dave] }
`;

/** Fails the first two attempts to announce each request, to show the job is retried. */
class FlakyChannel implements ApproverChannel {
  readonly name = 'test';
  readonly calls: string[] = [];
  private readonly attempts = new Map<string, number>();
  async requestCreated(view: ApprovalRequestView): Promise<void> {
    const n = (this.attempts.get(view.id) ?? 0) + 1;
    this.attempts.set(view.id, n);
    if (n <= 2) throw new Error(`channel down (attempt ${n})`);
    this.calls.push(`created ${view.id} after ${n} attempts`);
  }
  async voteRecorded(view: ApprovalRequestView, vote: VoteView): Promise<void> {
    this.calls.push(`vote ${view.id} ${vote.principal} ${vote.decision}`);
  }
  async requestResolved(view: ApprovalRequestView): Promise<void> {
    this.calls.push(`resolved ${view.id} ${view.state}`);
  }
}

async function auditOf(t: TestBroker, requestId: string) {
  return (await auditEvents(t.broker.redis, t.prefix)).filter((e) => e.request_id === requestId);
}

async function refusal(p: Promise<unknown>): Promise<CountersignClientError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CountersignClientError, `expected a CountersignClientError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the call to be refused');
}

/** Watches a request to its end, collecting every update. */
async function watchToEnd(client: CountersignClient, requestId: string): Promise<OperationResult[]> {
  const updates: OperationResult[] = [];
  for await (const update of client.watch(requestId)) updates.push(update);
  return updates;
}

describe('approvals over gRPC', () => {
  let t: TestBroker;
  const channel = new FlakyChannel();
  let deployerSvid: IssuedSvid;
  let deployer: CountersignClient;
  let otherWorkload: CountersignClient;
  const approvers: Record<string, ApprovalsClient> = {};
  const clients: { close(): void }[] = [];
  let jwks: JSONWebKeySet;

  const connect = (svid: IssuedSvid) => ({
    address: t.address,
    certChainPem: svid.chainPem,
    keyPem: svid.keyPem,
    caPem: t.ca.pem,
  });
  const requester = (svid: IssuedSvid) => {
    const c = new CountersignClient(connect(svid));
    clients.push(c);
    return c;
  };
  const approver = (name: string) => {
    const c = new ApprovalsClient(connect(t.svid(`human/${name}`)));
    clients.push(c);
    return c;
  };
  const pendingProd = (extra: { onBehalfOf?: string; parameters?: Record<string, string> } = {}) =>
    deployer.requestOperation({
      operation: 'deploy',
      resource: 'prod/web',
      parameters: extra.parameters ?? { version: '1.4.2' },
      reason: 'release',
      ...extra,
    });

  before(async () => {
    t = await startTestBroker({
      policy: POLICY,
      principals: PRINCIPALS,
      extraConfig: `requests:
  poll_interval: 300ms
  notifications: { attempts: 5, backoff: 100ms }
`,
      overrides: { channels: [channel] },
    });
    deployerSvid = t.svid('ci/deployer');
    deployer = requester(deployerSvid);
    otherWorkload = requester(t.svid('ci/other'));
    for (const name of ['alice', 'bob', 'carol', 'dave']) approvers[name] = approver(name);
    jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
  });
  after(async () => {
    for (const c of clients) c.close();
    await t?.close();
  });

  it('delivers the credential of a 1-of-2 approval to the waiting requester, with the approval as evidence', async () => {
    const pending = await pendingProd();
    assert.equal(pending.state, 'PENDING_APPROVAL');
    // The requester is already watching when the vote comes.
    const stream = deployer.watch(pending.requestId);
    const firstUpdate = await stream.next();
    const watching = (async () => {
      const rest: OperationResult[] = [firstUpdate.value as OperationResult];
      for await (const update of stream) rest.push(update);
      return rest;
    })();
    const decided = await approvers.alice!.decide({
      requestId: pending.requestId,
      decision: 'approve',
      reason: 'release window',
    });
    assert.equal(decided.state, RequestState.REQUEST_STATE_APPROVED);
    assert.equal(decided.resolutionMessage, 'approved by alice (grpc)');

    const updates = await watching;
    assert.deepEqual(
      updates.map((u) => u.state),
      ['PENDING_APPROVAL', 'APPROVED'],
    );
    const final = updates[1] as OperationResult;
    assert.ok(final.token);
    const { claims } = await verifyCredential(final.token, {
      jwks,
      audience: `https://deploy.${TD}`,
      clientCertificate: deployerSvid.pem,
      operation: 'deploy',
      resource: 'prod/web',
      parameters: { version: '1.4.2' },
    });
    assert.equal(claims.sub, deployerSvid.spiffeId);
    assert.equal(claims.cnf['x5t#S256'], certificateThumbprint(deployerSvid.der));
    assert.equal(claims.acr, 'urn:countersign:acr:human-approval');
    assert.equal(claims.approval?.request_id, pending.requestId);
    assert.equal(claims.approval?.rule, 'prod-deploys');
    assert.deepEqual(
      claims.approval?.approvers.map((a) => [a.principal, a.channel, a.step_up]),
      [['alice', 'grpc', 'click']],
    );
    assert.ok(claims.exp - claims.iat <= 300, 'the rule caps the TTL at 5m');

    // Notifications (notification_sent) are recorded as their jobs run, in any order relative to these.
    const audit = (await auditOf(t, pending.requestId)).filter((e) => e.type !== 'notification_sent');
    assert.deepEqual(
      audit.map((e) => e.type),
      ['request_received', 'decision', 'vote', 'resolution', 'credential_issued'],
    );
    assert.equal(audit[0]?.parameters_digest, parametersDigest({ version: '1.4.2' }));
    assert.equal(audit[1]?.decision, 'approve');
    assert.equal(audit[1]?.parameters_digest, parametersDigest({ version: '1.4.2' }));
    assert.equal(audit[2]?.principal, 'alice');
    assert.equal(audit[2]?.reason, 'release window');
    assert.equal(audit[3]?.state, 'APPROVED');
    assert.equal(audit[4]?.jti, claims.jti);
    assert.deepEqual(audit[4]?.approval, claims.approval, 'the record carries the approval evidence');

    // Bob's vote comes too late: refused, and the request stays as it was.
    const late = await refusal(approvers.bob!.decide({ requestId: pending.requestId, decision: 'deny' }));
    assert.equal(late.grpcStatus, status.FAILED_PRECONDITION);
    assert.equal(late.code, 'ERR_REQUEST_RESOLVED');
    assert.match(late.message, /was already approved .*\(approved by alice \(grpc\)\); it no longer accepts votes/);
    assert.equal((await deployer.collect(pending.requestId)).state, 'APPROVED');
  });

  it('counts N of M distinct people, each once, and records who, where, when and why', async () => {
    const pending = await deployer.requestOperation({
      operation: 'migrate',
      resource: 'prod/orders',
      parameters: { to: 42 },
    });
    assert.equal(pending.state, 'PENDING_APPROVAL');
    const first = await approvers.alice!.decide({
      requestId: pending.requestId,
      decision: 'approve',
      reason: 'looks fine',
    });
    assert.equal(first.state, RequestState.REQUEST_STATE_PENDING_APPROVAL);

    const again = await refusal(approvers.alice!.decide({ requestId: pending.requestId, decision: 'approve' }));
    assert.equal(again.grpcStatus, status.ALREADY_EXISTS);
    assert.equal(again.code, 'ERR_ALREADY_VOTED');
    assert.match(again.message, /alice already voted approve on request .* each person votes once/);

    const second = await approvers.carol!.decide({ requestId: pending.requestId, decision: 'approve' });
    assert.equal(second.state, RequestState.REQUEST_STATE_APPROVED);
    assert.equal(second.resolutionMessage, 'approved by alice (grpc), carol (grpc)');
    assert.deepEqual(
      second.votes.map((v) => [v.principal, v.decision, v.channel, v.stepUp, v.reason]),
      [
        ['alice', VoteDecision.VOTE_DECISION_APPROVE, 'grpc', 'click', 'looks fine'],
        ['carol', VoteDecision.VOTE_DECISION_APPROVE, 'grpc', 'click', ''],
      ],
    );
    assert.ok(second.votes.every((v) => v.at instanceof Date && Math.abs(v.at.getTime() - Date.now()) < 60_000));
    const collected = await deployer.collect(pending.requestId);
    const { claims } = await verifyCredential(collected.token, { jwks, audience: `https://deploy.${TD}` });
    assert.deepEqual(
      claims.approval?.approvers.map((a) => a.principal),
      ['alice', 'carol'],
    );
  });

  it('ends DENIED on one deny, with the reason, and delivers that to the watcher', async () => {
    const pending = await pendingProd();
    const watching = watchToEnd(deployer, pending.requestId);
    const denied = await approvers.bob!.decide({
      requestId: pending.requestId,
      decision: 'deny',
      reason: 'not during the freeze',
    });
    assert.equal(denied.state, RequestState.REQUEST_STATE_DENIED);
    const updates = await watching;
    const final = updates[updates.length - 1] as OperationResult;
    assert.equal(final.state, 'DENIED');
    assert.equal(final.message, 'denied by bob (grpc): not during the freeze');
    assert.equal(final.token, undefined);
    const e = await refusal(deployer.collect(pending.requestId));
    assert.equal(e.code, 'ERR_NOT_APPROVED');
    assert.equal(
      (await refusal(approvers.alice!.decide({ requestId: pending.requestId, decision: 'approve' }))).code,
      'ERR_REQUEST_RESOLVED',
    );
  });

  it('never lets the human a request is made for decide it (by name or e-mail)', async () => {
    for (const onBehalfOf of ['alice', `alice@${TD}`]) {
      const pending = await pendingProd({ onBehalfOf });
      const e = await refusal(approvers.alice!.decide({ requestId: pending.requestId, decision: 'approve' }));
      assert.equal(e.grpcStatus, status.PERMISSION_DENIED);
      assert.equal(e.code, 'ERR_SELF_APPROVAL');
      assert.match(e.message, /made on behalf of alice, who therefore cannot decide it/);
      const refused = (await auditOf(t, pending.requestId)).find((a) => a.type === 'vote_refused');
      assert.equal(refused?.code, 'ERR_SELF_APPROVAL');
      assert.equal(
        (await deployer.getRequest(pending.requestId)).request?.state,
        RequestState.REQUEST_STATE_PENDING_APPROVAL,
      );
      const byBob = await approvers.bob!.decide({ requestId: pending.requestId, decision: 'approve' });
      assert.equal(byBob.state, RequestState.REQUEST_STATE_APPROVED);
    }
  });

  // Issue 14, finding 2: other spellings of alice let her approve her own request.
  it('folds on_behalf_of to one spelling per person, so no spelling of alice lets her decide her own request', async () => {
    const sameHuman: [string, string][] = [
      ['Alice', 'alice'],
      ['alice ', 'alice'],
      [' alice', 'alice'],
      ['ALICE', 'alice'],
      ['\uff41\uff4c\uff49\uff43\uff45', 'alice'], // fullwidth: NFKC makes it alice
      ['alice\u00a0', 'alice'], // trailing no-break space
      [`Alice@${TD.toUpperCase()}`, `alice@${TD}`],
    ];
    for (const [spelling, canonical] of sameHuman) {
      const pending = await pendingProd({
        onBehalfOf: spelling,
        parameters: { version: `sod-${canonical}-${spelling.length}-${spelling.codePointAt(0)}` },
      });
      assert.equal(pending.state, 'PENDING_APPROVAL', JSON.stringify(spelling));
      const e = await refusal(approvers.alice!.decide({ requestId: pending.requestId, decision: 'approve' }));
      assert.equal(e.code, 'ERR_SELF_APPROVAL', JSON.stringify(spelling));
      const request = (await deployer.getRequest(pending.requestId)).request;
      assert.equal(request?.state, RequestState.REQUEST_STATE_PENDING_APPROVAL);
      assert.equal(request?.onBehalfOf, canonical, JSON.stringify(spelling));
      await deployer.cancel(pending.requestId);
    }
    // The credential names the person in the same form (act, RFC 8693).
    const allowed = await deployer.requestOperation({
      operation: 'deploy',
      resource: 'staging/web',
      parameters: { version: 'sod-act' },
      onBehalfOf: ' Alice',
    });
    assert.deepEqual(decodeJwt(allowed.token as string).act, { sub: 'alice' });
    // Before the fix, the Cyrillic spelling was a different person to the broker and alice could approve it.
    const refused = [
      '\u0430lice', // Cyrillic а: looks like alice, is not
      'alic\u0435@example.org', // Cyrillic е in an address
      'alice\u200b', // zero-width space
      'al ice',
      'alice\u0000',
      '   ',
      'a'.repeat(400),
    ];
    for (const spelling of refused) {
      const e = await refusal(
        pendingProd({ onBehalfOf: spelling, parameters: { version: `sod-refused-${spelling.length}` } }),
      );
      assert.equal(e.grpcStatus, status.INVALID_ARGUMENT, JSON.stringify(spelling));
      assert.equal(e.code, 'ERR_PRINCIPAL_NAME_INVALID', JSON.stringify(spelling));
      assert.match(e.message, /^on_behalf_of: /);
    }
  });

  it('refuses people the rule does not name, and identities that are not people', async () => {
    const pending = await pendingProd();
    const byDave = await refusal(approvers.dave!.decide({ requestId: pending.requestId, decision: 'approve' }));
    assert.equal(byDave.grpcStatus, status.PERMISSION_DENIED);
    assert.equal(byDave.code, 'ERR_NOT_AN_APPROVER');
    assert.match(byDave.message, /dave is not an approver of request \S+ \(rule prod-deploys names alice, bob\)/);

    for (const path of ['human/zed', 'ci/deployer']) {
      const asWorkload = new ApprovalsClient(connect(t.svid(path)));
      clients.push(asWorkload);
      const e = await refusal(asWorkload.listPending());
      assert.equal(e.grpcStatus, status.PERMISSION_DENIED);
      assert.equal(e.code, 'ERR_NOT_AN_APPROVER');
      assert.match(e.message, new RegExp(`spiffe://${TD}/${path} is not a principal`));
    }
    const invalid = await refusal(approvers.alice!.decide({ requestId: 'no such id!', decision: 'approve' }));
    assert.equal(invalid.grpcStatus, status.INVALID_ARGUMENT);
    assert.equal(
      (await refusal(approvers.alice!.decide({ requestId: 'req_missing', decision: 'approve' }))).grpcStatus,
      status.NOT_FOUND,
    );
    assert.equal((await deployer.getRequest(pending.requestId)).request?.votes.length, 0);
  });

  it('lists for each approver what they may still decide', async () => {
    const forAnyone = await pendingProd({ parameters: { version: 'list-1' } });
    const forAlice = await pendingProd({ parameters: { version: 'list-2' }, onBehalfOf: 'alice' });
    const aliceSees = (await approvers.alice!.listPending()).map((r) => r.id);
    assert.ok(aliceSees.includes(forAnyone.requestId));
    assert.ok(!aliceSees.includes(forAlice.requestId), 'a request made for alice is not hers to decide');
    assert.ok((await approvers.bob!.listPending()).some((r) => r.id === forAlice.requestId));
    assert.ok(!(await approvers.dave!.listPending()).some((r) => r.id === forAnyone.requestId));
    const listed = (await approvers.bob!.listPending()).find((r) => r.id === forAnyone.requestId);
    assert.equal(listed?.parametersJson, '{"version":"list-1"}');
    assert.deepEqual(listed?.approvers, ['alice', 'bob']);

    await approvers.alice!.decide({ requestId: forAnyone.requestId, decision: 'approve' });
    assert.ok(
      !(await approvers.bob!.listPending()).some((r) => r.id === forAnyone.requestId),
      'resolved requests leave the list',
    );
  });

  it('lets the requester, and only the requester, cancel a pending request', async () => {
    const pending = await pendingProd();
    const watching = watchToEnd(deployer, pending.requestId);
    const stranger = await refusal(otherWorkload.cancel(pending.requestId));
    assert.equal(stranger.grpcStatus, status.NOT_FOUND);
    const cancelled = await deployer.cancel(pending.requestId, 'wrong version');
    assert.equal(cancelled.state, 'CANCELLED');
    assert.equal(cancelled.message, 'cancelled by the requester: wrong version');
    const updates = await watching;
    assert.equal(updates[updates.length - 1]?.state, 'CANCELLED');

    const vote = await refusal(approvers.alice!.decide({ requestId: pending.requestId, decision: 'approve' }));
    assert.equal(vote.code, 'ERR_REQUEST_CANCELLED');
    const twice = await refusal(deployer.cancel(pending.requestId));
    assert.equal(twice.grpcStatus, status.FAILED_PRECONDITION);
    assert.match(twice.message, /can no longer be cancelled/);
    assert.equal((await auditOf(t, pending.requestId)).filter((e) => e.type === 'resolution').length, 1);
  });

  it('answers polling faster than poll_interval with slow_down (RESOURCE_EXHAUSTED)', async () => {
    const pending = await pendingProd();
    assert.equal(pending.pollIntervalMs, 300);
    assert.equal((await deployer.get(pending.requestId)).state, 'PENDING_APPROVAL');
    const tooFast = await refusal(deployer.get(pending.requestId));
    assert.equal(tooFast.grpcStatus, status.RESOURCE_EXHAUSTED);
    assert.equal(tooFast.code, 'ERR_SLOW_DOWN');
    assert.match(tooFast.message, /poll at most every 300 ms \(requests.poll_interval\)/);
    const later = await eventually('a poll after the interval', async () => {
      // Real time is the subject: the gate is a Redis key with a PX expiry (Redis's clock, not
      // an injectable one), so the interval has to pass before the next poll is allowed.
      await new Promise((r) => setTimeout(r, 300));
      return deployer.get(pending.requestId);
    });
    assert.equal(later.state, 'PENDING_APPROVAL');
    assert.equal(later.pollIntervalMs, 300);
  });

  it('hands the one credential to the requester as often as asked, with its own certificate only', async () => {
    const pending = await pendingProd();
    await approvers.alice!.decide({ requestId: pending.requestId, decision: 'approve' });
    const [a, b] = await Promise.all([deployer.collect(pending.requestId), deployer.collect(pending.requestId)]);
    const c = await deployer.collect(pending.requestId);
    assert.equal(a.credentialId, b.credentialId);
    assert.equal(a.token, c.token);

    // Same workload, renewed certificate: the credential is bound to the one that asked.
    const renewed = requester(t.svid('ci/deployer'));
    const mismatch = await refusal(renewed.collect(pending.requestId));
    assert.equal(mismatch.grpcStatus, status.FAILED_PRECONDITION);
    assert.equal(mismatch.code, 'ERR_CERTIFICATE_MISMATCH');
    assert.match(mismatch.message, /bound to the certificate that made the request/);
    const other = await refusal(otherWorkload.collect(pending.requestId));
    assert.equal(other.grpcStatus, status.NOT_FOUND);

    const issued = (await auditOf(t, pending.requestId)).filter((e) => e.type === 'credential_issued');
    assert.equal(issued.length, 1);
    assert.equal(issued[0]?.jti, a.credentialId);
  });

  it('returns the same request for a retried client_request_id and refuses its reuse for other content', async () => {
    const input = {
      operation: 'deploy',
      resource: 'prod/api',
      parameters: { version: '2' },
      clientRequestId: `retry-${Date.now()}`,
    };
    const first = await deployer.requestOperation(input);
    const retry = await deployer.requestOperation(input);
    assert.equal(retry.requestId, first.requestId);
    assert.equal((await auditOf(t, first.requestId)).filter((e) => e.type === 'decision').length, 1);
    const reuse = await refusal(deployer.requestOperation({ ...input, parameters: { version: '3' } }));
    assert.equal(reuse.grpcStatus, status.ALREADY_EXISTS);
    assert.equal(reuse.code, 'ERR_IDEMPOTENCY_KEY_REUSED');
  });

  it('notifies approver channels through jobs that are retried until they succeed', async () => {
    const pending = await pendingProd();
    await approvers.bob!.decide({ requestId: pending.requestId, decision: 'approve' });
    const id = pending.requestId;
    await eventually('every notification', () =>
      [`created ${id} after 3 attempts`, `vote ${id} bob approve`, `resolved ${id} APPROVED`].every((c) =>
        channel.calls.includes(c),
      ),
    );
    // Each delivered notification is in the audit trail (failed attempts are not).
    await eventually(
      'notification_sent records',
      async () => (await auditOf(t, id)).filter((e) => e.type === 'notification_sent').length === 3,
    );
    const sent = (await auditOf(t, id)).filter((e) => e.type === 'notification_sent');
    assert.deepEqual(sent.map((e) => [e.channel, e.event]).sort(), [
      ['test', 'created'],
      ['test', 'resolved'],
      ['test', 'vote'],
    ]);
    const metrics = await (await fetch(`http://127.0.0.1:${t.broker.httpPort}/metrics`)).text();
    assert.match(metrics, /countersign_notification_failures_total\{channel="test"\} [1-9]/);
    assert.match(metrics, /countersign_votes_total\{decision="approve",channel="grpc"\} [1-9]/);
  });
});

describe('approval limits per workload', () => {
  let t: TestBroker;
  let deployer: CountersignClient;
  let other: CountersignClient;

  before(async () => {
    t = await startTestBroker({
      extraConfig: `requests:
  limits: { max_pending_per_workload: 2, requests_per_second: 0.01, burst: 5, max_reason_length: 100 }
`,
    });
    const svid = t.svid('ci/deployer');
    deployer = new CountersignClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
    const otherSvid = t.svid('ci/other');
    other = new CountersignClient({
      address: t.address,
      certChainPem: otherSvid.chainPem,
      keyPem: otherSvid.keyPem,
      caPem: t.ca.pem,
    });
  });
  after(async () => {
    deployer?.close();
    other?.close();
    await t?.close();
  });

  it('names the limit when a workload has too many pending, too fast, or too much to say', async () => {
    const prod = (version: string) =>
      deployer.requestOperation({ operation: 'deploy', resource: 'prod/web', parameters: { version } });
    const first = await prod('1');
    await prod('2');
    const third = await refusal(prod('3'));
    assert.equal(third.grpcStatus, status.RESOURCE_EXHAUSTED);
    assert.equal(third.code, 'ERR_TOO_MANY_PENDING');
    assert.match(
      third.message,
      /already has 2 requests waiting for approval, the most allowed \(limit requests.limits.max_pending_per_workload = 2\)/,
    );
    // Another workload is not affected; ending one of ours makes room.
    assert.equal(
      (await other.requestOperation({ operation: 'deploy', resource: 'prod/web' })).state,
      'PENDING_APPROVAL',
    );
    await deployer.cancel(first.requestId);
    assert.equal((await prod('4')).state, 'PENDING_APPROVAL');

    const long = await refusal(
      deployer.requestOperation({ operation: 'deploy', resource: 'staging/web', reason: 'x'.repeat(101) }),
    );
    assert.equal(long.grpcStatus, status.RESOURCE_EXHAUSTED);
    assert.equal(long.code, 'ERR_LIMIT_EXCEEDED');
    assert.match(
      long.message,
      /^reason: is 101 characters long, at most 100 are allowed \(limit requests.limits.max_reason_length\)/,
    );

    // Five requests so far (refused ones count too); the bucket holds 5 and refills at one per 100 s.
    const limited = await refusal(deployer.requestOperation({ operation: 'deploy', resource: 'staging/web' }));
    assert.equal(limited.grpcStatus, status.RESOURCE_EXHAUSTED);
    assert.equal(limited.code, 'ERR_RATE_LIMITED');
    assert.match(
      limited.message,
      /spiffe:\/\/example.org\/ci\/deployer is sending requests faster than allowed \(limit requests.limits.requests_per_second = 0.01, burst 5\); retry in \d+s/,
    );
    assert.equal((await other.requestOperation({ operation: 'deploy', resource: 'staging/web' })).state, 'APPROVED');
  });
});
