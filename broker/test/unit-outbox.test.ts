// The transactional outbox (requests/outbox.ts) and the sweeper behind it
// (requests/sweeper.ts) on in-memory fakes: what a transition implies (audit
// records, then jobs) is done once its records are durable, retried while they
// are not, finished by the sweeper after a crash, and given up only when the
// request itself is gone. No Redis; the e2e counterpart is approvals-workflow.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ScriptCode } from '../src/requests/script-codes.js';
import type { StoredVote } from '../src/requests/store.js';
import { approvalsHarness, type Harness } from './support/approvals-harness.js';

const approveBy = (h: Harness, principal: string, reason = ''): StoredVote => ({
  principal,
  decision: 'approve',
  channel: 'test',
  at: h.clock.now(),
  stepUp: 'click',
  reason,
  deliveryId: '',
});

describe('outbox and sweeper (unit, fakes)', () => {
  it('writes the creation records, then schedules the expiry and the notifications, then clears the entry', async () => {
    const h = await approvalsHarness({ channels: ['slack', 'teams'] });
    const r = await h.create({ timeoutMs: 90_000 });
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision']);
    assert.equal(h.audit.of(r.id)[1]?.decision, 'approve');
    assert.deepEqual(h.jobs.expiryOf(r.id), { id: r.id, kind: 'expiry', requestId: r.id, runAt: r.expiresAt });
    assert.deepEqual(h.jobs.notificationsOf(r.id), [`${r.id}.created.slack`, `${r.id}.created.teams`]);
    assert.deepEqual(h.store.outboxOf(r.id), []);
  });

  it('keeps the entries when the audit append fails, enqueues nothing, and completes them on a retry', async () => {
    const h = await approvalsHarness();
    const r = await h.create();
    const [code] = await h.store.vote(r, approveBy(h, 'alice'));
    assert.equal(code, ScriptCode.Approved);
    const effects = [{ kind: 'resolved' as const }, { kind: 'vote' as const, principal: 'alice' }];
    h.audit.faults.fail('audit append');
    await assert.rejects(h.outbox.complete(r.id, effects), { code: 'ERR_REDIS_UNAVAILABLE', kind: 'unavailable' });
    assert.deepEqual(h.store.outboxOf(r.id), [`${r.id}|resolved`, `${r.id}|vote|alice`]);
    assert.deepEqual(await h.outbox.pending(r.id, effects), effects);
    assert.deepEqual(h.jobs.notificationsOf(r.id), [`${r.id}.created.slack`], 'nobody told before the records');

    await h.outbox.complete(r.id, effects);
    // The vote before the resolution, whatever order the effects were given in.
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision', 'vote', 'resolution']);
    assert.deepEqual(h.store.outboxOf(r.id), []);
    assert.deepEqual(await h.outbox.pending(r.id, effects), []);
    assert.deepEqual(h.jobs.cancelled, [r.id]);
  });

  it('records at worst twice when enqueueing fails after the append, and never enqueues a job twice', async () => {
    const h = await approvalsHarness();
    const r = await h.create();
    await h.store.vote(r, approveBy(h, 'bob'));
    h.jobs.faults.fail('notify');
    await assert.rejects(h.outbox.complete(r.id, [{ kind: 'vote', principal: 'bob' }, { kind: 'resolved' }]), {
      code: 'ERR_REDIS_UNAVAILABLE',
    });
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision', 'vote', 'resolution']);
    assert.deepEqual(h.store.outboxOf(r.id), [`${r.id}|resolved`, `${r.id}|vote|bob`], 'kept for a retry');

    h.clock.advance(h.outboxGraceMs);
    assert.equal((await h.sweeper.sweep()).outboxCompleted, 2);
    assert.deepEqual(h.audit.typesOf(r.id), [
      'request_received',
      'decision',
      'vote',
      'resolution',
      'vote',
      'resolution',
    ]);
    const [first, second] = h.audit.of(r.id).filter((e) => e.type === 'vote');
    assert.deepEqual(second, first, 'a repeat is recognisable: the same record, rebuilt from immutable data');
    assert.deepEqual(h.jobs.notificationsOf(r.id), [
      `${r.id}.created.slack`,
      `${r.id}.resolved.slack`,
      `${r.id}.vote.bob.slack`,
    ]);
    assert.deepEqual(h.store.outboxOf(r.id), []);
  });

  it('leaves a fresh entry to the process that wrote it, and finishes it once older than the grace period', async () => {
    const h = await approvalsHarness({ outboxGraceMs: 30_000 });
    const r = await h.create();
    // As if the broker died right after the script: the vote counts, its records are not written.
    await h.store.vote(r, approveBy(h, 'bob', 'lgtm'));
    h.clock.advance(29_999);
    assert.deepEqual(await h.sweeper.sweep(), { expired: 0, outboxCompleted: 0, pending: 0 });
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision']);
    h.clock.advance(1);
    assert.deepEqual(await h.sweeper.sweep(), { expired: 0, outboxCompleted: 2, pending: 0 });
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision', 'vote', 'resolution']);
    assert.equal(h.audit.of(r.id)[2]?.reason, 'lgtm');
    assert.equal((await h.sweeper.sweep()).outboxCompleted, 0, 'nothing left');
  });

  it('gives up an entry whose request retention removed: nothing left to record', async () => {
    const h = await approvalsHarness({ store: { retentionMs: 60_000 } });
    const r = await h.create();
    await h.store.vote(r, approveBy(h, 'alice'));
    h.clock.advance(60_000);
    assert.equal(await h.store.get(r.id), undefined);
    assert.equal((await h.sweeper.sweep()).outboxCompleted, 2);
    assert.deepEqual(h.audit.typesOf(r.id), ['request_received', 'decision']);
    assert.deepEqual(h.store.outboxOf(r.id), []);
    assert.deepEqual(h.jobs.notificationsOf(r.id), [`${r.id}.created.slack`]);
  });

  it('drops an entry it cannot read, and finishes at most `batch` entries per sweep', async () => {
    const h = await approvalsHarness();
    h.store.addOutboxEntry('garbage-without-separator|what');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await h.create();
      await h.store.vote(r, approveBy(h, 'alice'));
      ids.push(r.id);
    }
    h.clock.advance(h.outboxGraceMs);
    assert.equal(await h.outbox.completeStale(h.outboxGraceMs, 4), 4);
    assert.equal(h.store.outbox.has('garbage-without-separator|what'), false);
    assert.equal(await h.outbox.completeStale(h.outboxGraceMs, 4), 2);
    for (const id of ids) assert.deepEqual(h.audit.typesOf(id).slice(2), ['vote', 'resolution']);
  });

  it('expires every overdue pending request a lost job missed, and reports how many are left pending', async () => {
    const h = await approvalsHarness();
    const soon = await h.create({ timeoutMs: 1_000 });
    const later = await h.create({ timeoutMs: 5_000 });
    const decided = await h.create({ timeoutMs: 1_000 });
    assert.ok((await h.vote(decided, 'alice', 'approve')).counted);
    h.jobs.queued.clear(); // the expiry jobs are lost
    h.clock.advance(1_000);
    assert.deepEqual(await h.sweeper.sweep(), { expired: 1, outboxCompleted: 0, pending: 1 });
    assert.equal(await h.state(soon.id), 'EXPIRED');
    assert.equal(await h.state(later.id), 'PENDING_APPROVAL');
    assert.equal(await h.state(decided.id), 'APPROVED');
    assert.deepEqual(h.audit.typesOf(soon.id), ['request_received', 'decision', 'resolution']);
    assert.equal(h.audit.of(soon.id)[2]?.state, 'EXPIRED');
    assert.deepEqual(h.jobs.notificationsOf(soon.id), [`${soon.id}.resolved.slack`]);
    assert.deepEqual(h.jobs.cancelled, [decided.id], 'an approval drops its expiry job; an expiry is that job');
    const gauge = await h.metrics.pending.get();
    assert.equal(gauge.values[0]?.value, 1);
  });

  it('keeps sweeping the other requests when one expiry fails, and tries it again next time', async () => {
    const h = await approvalsHarness();
    const a = await h.create({ timeoutMs: 1_000 });
    const b = await h.create({ timeoutMs: 1_000 });
    h.clock.advance(1_000);
    h.store.faults.fail('expire');
    assert.deepEqual(await h.sweeper.sweep(), { expired: 1, outboxCompleted: 0, pending: 1 });
    assert.deepEqual(await h.sweeper.sweep(), { expired: 1, outboxCompleted: 0, pending: 0 });
    assert.equal(await h.state(a.id), 'EXPIRED');
    assert.equal(await h.state(b.id), 'EXPIRED');
  });
});
