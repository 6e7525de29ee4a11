// Telling the requester (requests/delivery.ts) on fakes: GetRequest with its
// slow_down gate and the credential once approved, WatchRequest sending the state
// now and at every change until the end. Changes are announced by the fake store
// as the scripts PUBLISH them; no timer fires in these tests. E2E: approvals.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RequestSnapshot } from '../src/requests/delivery.js';
import { approvalsHarness, TD, type Harness } from './support/approvals-harness.js';
import type { StoredRequest } from '../src/requests/store.js';

/** Runs a watch; `next()` resolves with each snapshot as it is sent. */
function watching(h: Harness, r: StoredRequest, identity = h.identityOf(r)) {
  const sent: RequestSnapshot[] = [];
  const waiters: ((s: RequestSnapshot) => void)[] = [];
  const abort = new AbortController();
  const done = h.delivery.watch(
    identity,
    r.id,
    (s) => {
      sent.push(s);
      waiters.shift()?.(s);
    },
    abort.signal,
  );
  let read = 0;
  const next = (): Promise<RequestSnapshot> =>
    read < sent.length
      ? Promise.resolve(sent[read++] as RequestSnapshot)
      : new Promise((resolve) => waiters.push((s) => (read++, resolve(s))));
  return { sent, next, done, abort };
}

describe('request delivery (unit, fakes)', () => {
  it('answers a poll with the request, tells a too-fast poller to slow down, and hands out the credential once approved', async () => {
    const h = await approvalsHarness();
    const r = await h.create();
    const me = h.identityOf(r);
    const first = await h.delivery.get(me, r.id);
    assert.deepEqual([first.request.state, first.credential], ['PENDING_APPROVAL', undefined]);
    h.clock.advance(1599);
    await assert.rejects(h.delivery.get(me, r.id), {
      code: 'ERR_SLOW_DOWN',
      kind: 'resource_exhausted',
      message: new RegExp(`^slow_down: request ${r.id} was polled less than 2000 ms ago`),
    });
    h.clock.advance(1);
    assert.equal((await h.delivery.get(me, r.id)).request.state, 'PENDING_APPROVAL');
    await assert.rejects(h.delivery.get({ ...me, spiffeId: `spiffe://${TD}/ci/other` }, r.id), {
      code: 'ERR_REQUEST_NOT_FOUND',
    });
    await h.vote(r, 'alice', 'approve');
    const approved = await h.delivery.get(me, r.id);
    const again = await h.delivery.get(me, r.id);
    assert.equal(approved.request.state, 'APPROVED');
    assert.ok(approved.credential?.token);
    assert.equal(again.credential?.jti, approved.credential?.jti, 'no slow_down once it ended; the same credential');
  });

  it('streams the state now and at every change, ending with the credential', async () => {
    const h = await approvalsHarness();
    const r = await h.create({ required: 2 });
    const w = watching(h, r);
    assert.deepEqual([(await w.next()).request.version, h.store.watching], [1, 1]);
    await h.vote(r, 'alice', 'approve');
    const counted = await w.next();
    assert.deepEqual([counted.request.version, counted.votes.map((v) => v.principal)], [2, ['alice']]);
    await h.vote(r, 'bob', 'approve');
    const end = await w.next();
    assert.equal(end.request.state, 'APPROVED');
    assert.ok(end.credential?.token);
    await w.done;
    assert.equal(w.sent.length, 3);
    assert.equal(h.store.watching, 0, 'unsubscribed');
  });

  it('ends a watch on expiry or cancellation with that state, and on abort without one', async () => {
    const h = await approvalsHarness();
    const r = await h.create({ timeoutMs: 1000 });
    const w = watching(h, r);
    await w.next();
    h.clock.advance(1000);
    await h.sweeper.sweep();
    assert.equal((await w.next()).request.state, 'EXPIRED');
    await w.done;

    const c = await h.create();
    const wc = watching(h, c);
    await wc.next();
    await h.workflow.cancel(c.requester, c.id, '');
    assert.equal((await wc.next()).request.state, 'CANCELLED');
    await wc.done;

    const p = await h.create();
    const wp = watching(h, p);
    await wp.next();
    wp.abort.abort();
    await wp.done;
    assert.equal(wp.sent.length, 1);
    assert.equal(h.store.watching, 0);
  });

  it('says an approved request cannot be collected with another certificate: the state first, then why', async () => {
    const h = await approvalsHarness();
    const r = await h.create();
    await h.vote(r, 'alice', 'approve');
    const w = watching(h, r, h.identityOf(r, 'another-certificate'));
    await assert.rejects(w.done, { code: 'ERR_CERTIFICATE_MISMATCH' });
    assert.deepEqual(
      w.sent.map((s) => [s.request.state, s.credential]),
      [['APPROVED', undefined]],
    );
    assert.equal(h.store.watching, 0);
    await assert.rejects(watching(h, r, { ...h.identityOf(r), spiffeId: `spiffe://${TD}/x` }).done, {
      code: 'ERR_REQUEST_NOT_FOUND',
    });
  });
});
