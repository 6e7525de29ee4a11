// The fake request store (support/fakes.ts) against the real one (store.ts and its
// Lua scripts on Redis): the same calls give the same replies, errors and outbox
// entries, so unit tests on the fake test what production does. One scenario,
// run on both, with exact expectations; then the two transcripts must agree.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { RequestOperationRequest } from '@countersign/proto';
import { ManualClock } from '../src/clock.js';
import { Keys } from '../src/redis/keys.js';
import { ScriptCode } from '../src/requests/script-codes.js';
import { registerScripts } from '../src/requests/scripts.js';
import {
  RequestStore,
  voteFromJson,
  type NewRequest,
  type StoredRequest,
  type StoredVote,
  type StoreOptions,
} from '../src/requests/store.js';
import { validateOperationRequest } from '../src/requests/validate.js';
import type { RequestStorePort } from '../src/requests/ports.js';
import { FakeRequestStore } from './support/fakes.js';
import { requirement, TD } from './support/approvals-harness.js';
import { testRedis, type TestRedis } from './support/redis.js';

// Redis expires keys (the credential, retention) on real time, the fake on the clock: start both at now.
const T = Date.now();
const OPTIONS: StoreOptions = { maxPendingPerWorkload: 2, retentionMs: 600_000 };

interface Impl {
  store: RequestStorePort;
  outboxOf(id: string): Promise<string[]>;
}

const newRequest = (
  clock: ManualClock,
  patch: Partial<RequestOperationRequest> = {},
  approval = requirement(),
  requester = `spiffe://${TD}/ci/deployer`,
): NewRequest => ({
  requester: { spiffeId: requester, trustDomain: TD, thumbprint: 'thumb-1', notAfter: clock.now() + 3600_000 },
  operation: validateOperationRequest(
    RequestOperationRequest.create({
      operation: 'deploy',
      resource: 'prod/web',
      parametersJson: '{"v":1}',
      audience: 'https://deploy.example.org',
      ...patch,
    }),
  ),
  rule: 'prod',
  rules: ['prod'],
  policyDigest: `sha256:${'ab'.repeat(32)}`,
  approval,
  ttlCapMs: 300_000,
});

const voteOf = (clock: ManualClock, principal: string, decision: 'approve' | 'deny', reason = ''): StoredVote => ({
  principal,
  decision,
  channel: 'test',
  at: clock.now(),
  stepUp: 'click',
  reason,
  deliveryId: '',
});

/** Runs the scenario, asserting as it goes; returns a transcript with request ids replaced by their names. */
async function scenario(clock: ManualClock, impl: Impl): Promise<unknown[]> {
  const { store } = impl;
  const log: unknown[] = [];
  const names = new Map<string, string>();
  const named = (value: unknown): unknown =>
    JSON.parse(
      JSON.stringify(value ?? null).replace(/req_[A-Za-z0-9_-]{16}/g, (id) => {
        if (!names.has(id)) names.set(id, `<${names.size}>`);
        return names.get(id) as string;
      }),
    );
  const note = (what: string, value: unknown) => log.push([what, named(value)]);
  const stripped = (r: StoredRequest | undefined) => (r === undefined ? undefined : { ...r, id: '' });

  // create: idempotency and the per-workload limit
  const a = await store.create(newRequest(clock, { clientRequestId: 'k1' }, requirement({ required: 2 })));
  assert.equal(a.created, true);
  const again = await store.create(newRequest(clock, { clientRequestId: 'k1' }, requirement({ required: 2 })));
  assert.deepEqual([again.created, again.request.id], [false, a.request.id]);
  assert.deepEqual(stripped(again.request), stripped(a.request), 'read back exactly as created');
  await assert.rejects(store.create(newRequest(clock, { clientRequestId: 'k1', reason: 'other' })), (e: Error) => {
    note('idempotency conflict', { code: (e as { code?: string }).code, message: e.message });
    return (e as { code?: string }).code === 'ERR_IDEMPOTENCY_KEY_REUSED';
  });
  clock.advance(1);
  const b = await store.create(newRequest(clock, {}, requirement({ timeoutMs: 30_000 })));
  await assert.rejects(store.create(newRequest(clock)), (e: Error) => {
    note('too many pending', { code: (e as { code?: string }).code, message: e.message });
    return (e as { code?: string }).code === 'ERR_TOO_MANY_PENDING';
  });
  note('outbox after create', await impl.outboxOf(a.request.id));
  assert.deepEqual(await impl.outboxOf(a.request.id), [`${a.request.id}|created`]);
  assert.deepEqual(await store.pendingIds({ limit: 10 }), [b.request.id, a.request.id], 'soonest deadline first');
  assert.deepEqual(await store.pendingIds({ limit: 10, dueBy: b.request.expiresAt - 1 }), []);

  // votes: quorum, the same person twice, the end
  const alice = voteOf(clock, 'alice', 'approve');
  assert.deepEqual(await store.vote(a.request, alice), [ScriptCode.Counted, '2']);
  const twice = await store.vote(a.request, voteOf(clock, 'alice', 'deny'));
  assert.equal(twice[0], ScriptCode.AlreadyVoted);
  assert.deepEqual(voteFromJson(twice[1] ?? ''), alice);
  clock.advance(1000);
  assert.deepEqual(await store.vote(a.request, voteOf(clock, 'bob', 'approve')), [ScriptCode.Approved, '3']);
  const approved = await store.get(a.request.id);
  assert.deepEqual(
    [approved?.state, approved?.approvals, approved?.resolvedAt, approved?.resolutionMessage],
    ['APPROVED', 2, clock.now(), 'approved by alice (test), bob (test)'],
  );
  note('approved', stripped(approved));
  assert.deepEqual(await store.vote(a.request, voteOf(clock, 'carol', 'deny')), [ScriptCode.Resolved, 'APPROVED']);
  assert.deepEqual(await store.expire(a.request.id, a.request.requester), [ScriptCode.Resolved, 'APPROVED']);
  assert.deepEqual(await store.cancel(a.request, 'x'), [ScriptCode.Resolved, 'APPROVED']);
  assert.deepEqual(await impl.outboxOf(a.request.id), [
    `${a.request.id}|created`,
    `${a.request.id}|resolved`,
    `${a.request.id}|vote|alice`,
    `${a.request.id}|vote|bob`,
  ]);
  assert.deepEqual(
    (await store.getWithVotes(a.request.id))?.votes.map((v) => v.principal),
    ['alice', 'bob'],
  );
  assert.deepEqual(await store.pendingIds({ limit: 10 }), [b.request.id]);
  assert.equal(await store.pendingCount(), 1);

  // expiry
  assert.deepEqual(await store.expire(b.request.id, b.request.requester), [
    ScriptCode.NotDue,
    String(b.request.expiresAt),
  ]);
  clock.set(b.request.expiresAt);
  assert.deepEqual(await store.vote(b.request, voteOf(clock, 'alice', 'approve')), [ScriptCode.ExpiryDue, '']);
  assert.deepEqual(await store.cancel(b.request, 'x'), [ScriptCode.ExpiryDue, '']);
  assert.deepEqual(await store.expire(b.request.id, b.request.requester), [
    ScriptCode.Expired,
    String(b.request.expiresAt),
  ]);
  note('expired', stripped(await store.get(b.request.id)));
  assert.equal((await store.get(b.request.id))?.resolutionMessage, 'expired with 0 of 1 approval(s)');
  const missing = { ...b.request, id: 'req_missing000000000' };
  assert.deepEqual(await store.expire(missing.id, missing.requester), [ScriptCode.NotFound, '']);
  assert.deepEqual(await store.vote(missing, voteOf(clock, 'alice', 'approve')), [ScriptCode.NotFound, '']);
  assert.deepEqual(await store.cancel(missing, 'x'), [ScriptCode.NotFound, '']);
  assert.equal(await store.get(missing.id), undefined);
  assert.deepEqual(await store.getMany([missing.id, b.request.id]).then((rs) => rs.map((r) => r.id)), [b.request.id]);

  // deny threshold, cancel
  const d = await store.create(newRequest(clock, {}, requirement({ denyThreshold: 1 })));
  assert.deepEqual(await store.vote(d.request, voteOf(clock, 'carol', 'deny', 'not now')), [ScriptCode.Denied, '2']);
  assert.equal((await store.get(d.request.id))?.resolutionMessage, 'denied by carol (test): not now');
  const e = await store.create(newRequest(clock, { parametersJson: '{"v":2}' }));
  assert.deepEqual(await store.cancel(e.request, 'cancelled by the requester'), [ScriptCode.Cancelled, '']);
  note('cancelled', stripped(await store.get(e.request.id)));

  // the one credential of an approved request
  const cred = { token: 'token-1', jti: 'jti-1', expiresAt: clock.now() + 300_000 };
  assert.deepEqual(await store.storeCredential(a.request.id, 'other-thumb', 120_000, cred), [
    ScriptCode.CertificateMismatch,
  ]);
  assert.deepEqual(await store.storeCredential(b.request.id, 'thumb-1', 120_000, cred), [
    ScriptCode.NotApproved,
    'EXPIRED',
  ]);
  assert.deepEqual(await store.storeCredential(missing.id, 'thumb-1', 120_000, cred), [ScriptCode.NotFound]);
  // a was approved 29 s ago (at b's deadline now): a window of 120 s is still open, one of 20 s is not.
  assert.deepEqual(await store.storeCredential(a.request.id, 'thumb-1', 20_000, cred), [
    ScriptCode.WindowClosed,
    String((approved?.resolvedAt ?? 0) + 20_000),
  ]);
  assert.deepEqual(await store.storeCredential(a.request.id, 'thumb-1', 120_000, cred), [ScriptCode.Stored]);
  assert.deepEqual(
    await store.storeCredential(a.request.id, 'thumb-1', 120_000, { ...cred, token: 'token-2', jti: 'jti-2' }),
    [ScriptCode.CredentialExists, 'token-1', 'jti-1', String(cred.expiresAt), '0'],
  );
  assert.deepEqual(await store.credential(a.request.id), { ...cred, audited: false });
  await store.markCredentialAudited(a.request.id);
  assert.deepEqual(await store.credential(a.request.id), { ...cred, audited: true });
  await store.markCredentialAudited(missing.id);
  assert.equal(await store.credential(missing.id), undefined, 'marking a missing credential creates none');
  return log;
}

describe('request store contract: the fake replies as the Lua scripts do', () => {
  let redis: TestRedis | undefined;
  after(async () => {
    await redis?.cleanup();
  });

  it('gives the same replies, errors, records and outbox entries on Redis and in memory', async () => {
    redis = await testRedis('store-contract');
    const r = redis;
    const keys = new Keys(r.prefix);
    const realClock = new ManualClock(T);
    const real = await scenario(realClock, {
      store: new RequestStore(r.redis, keys, registerScripts(r.redis), realClock, OPTIONS),
      outboxOf: async (id) => (await r.redis.hkeys(keys.outbox())).filter((f) => f.startsWith(`${id}|`)).sort(),
    });
    const fakeClock = new ManualClock(T);
    const fakeStore = new FakeRequestStore(fakeClock, OPTIONS);
    const fake = await scenario(fakeClock, {
      store: fakeStore,
      outboxOf: (id) => Promise.resolve(fakeStore.outboxOf(id)),
    });
    assert.deepEqual(fake, real);
  });
});
