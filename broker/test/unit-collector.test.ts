// The credential collector (requests/collector.ts) on in-memory fakes: one
// credential per approval, only for the requester's own certificate, within the
// collection window, and never before its credential_issued record (and the
// votes it rests on) are in the audit log. Waiting for a peer uses a fake waiter:
// no sleeps. The e2e counterpart is approvals-workflow.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PEER_AUDIT_WAIT_MS } from '../src/requests/collector.js';
import { ScriptCode } from '../src/requests/script-codes.js';
import type { StoredRequest } from '../src/requests/store.js';
import { approvalsHarness, TD, type Harness } from './support/approvals-harness.js';

/** An approved request, its vote and resolution recorded as the voter's process does. */
async function approved(h: Harness, patch = {}): Promise<StoredRequest> {
  const r = await h.create(patch);
  assert.ok((await h.vote(r, 'alice', 'approve')).counted);
  return (await h.store.get(r.id)) as StoredRequest;
}

const collect = async (h: Harness, r: StoredRequest, identity = h.identityOf(r)) => {
  const loaded = await h.store.getWithVotes(r.id);
  assert.ok(loaded);
  return h.collector.collect(identity, loaded.request, loaded.votes);
};

describe('credential collector (unit, fakes)', () => {
  it('mints one credential per approval, however many collect at once, and audits it once, after the approval', async () => {
    const h = await approvalsHarness();
    const r = await approved(h);
    const all = await Promise.all(Array.from({ length: 5 }, () => collect(h, r)));
    assert.equal(new Set(all.map((c) => c.token)).size, 1);
    assert.deepEqual(h.audit.typesOf(r.id), [
      'request_received',
      'decision',
      'vote',
      'resolution',
      'credential_issued',
    ]);
    const issued = h.audit.of(r.id).at(-1);
    assert.equal(issued?.jti, all[0]?.jti);
    assert.equal(issued?.subject, r.requester);
    assert.equal(issued?.certificate_thumbprint, r.certificateThumbprint);
    assert.equal(all[0]?.expiresAt, h.clock.now() + 300_000, 'the default TTL when the rule sets none');
    const input = h.minter.inputs[0];
    assert.deepEqual(input?.ttlCaps, [300_000, undefined]);
    assert.equal(input?.authTime, r.resolvedAt);
    assert.deepEqual(
      input?.approval?.approvers.map((a) => [a.principal, a.channel, a.step_up]),
      [['alice', 'test', 'click']],
    );
    const sleeps = h.waiter.sleeps; // the losers of the race waited for the winner's audit record
    assert.equal((await collect(h, r)).token, all[0]?.token);
    assert.equal(h.waiter.sleeps, sleeps, 'an audited credential is handed out at once');
    assert.equal((await h.store.credential(r.id))?.audited, true);
  });

  it('refuses a request that is not approved, another workload, and another certificate, minting nothing', async () => {
    const h = await approvalsHarness();
    const pending = await h.create();
    await assert.rejects(collect(h, pending), {
      code: 'ERR_NOT_APPROVED',
      message: `request ${pending.id} is PENDING_APPROVAL, not APPROVED`,
    });
    const r = await approved(h);
    await assert.rejects(collect(h, r, { ...h.identityOf(r), spiffeId: `spiffe://${TD}/ci/other` }), {
      code: 'ERR_REQUEST_NOT_FOUND',
      kind: 'not_found',
    });
    await assert.rejects(collect(h, r, h.identityOf(r, 'another-certificate')), {
      code: 'ERR_CERTIFICATE_MISMATCH',
      message: new RegExp(`bound to the certificate that made the request \\(x5t#S256 ${r.certificateThumbprint}\\)`),
    });
    assert.equal(h.minter.inputs.length, 0);
    assert.equal(h.audit.events.filter((e) => e.type === 'credential_issued').length, 0);
  });

  it('hands out credentials only within the collection window after approval', async () => {
    const h = await approvalsHarness({ collectionWindowMs: 120_000 });
    const early = await approved(h);
    const late = await approved(h);
    h.clock.advance(119_999);
    const first = await collect(h, early);
    h.clock.advance(1);
    await assert.rejects(collect(h, late), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_COLLECTION_WINDOW_CLOSED');
      assert.equal(
        e.message,
        `request ${late.id} was approved at ${new Date(late.resolvedAt ?? 0).toISOString()}, but its credential could only be collected until ${new Date((late.resolvedAt ?? 0) + 120_000).toISOString()} (requests.collection_window); make a new request`,
      );
      return true;
    });
    assert.equal(h.audit.typesOf(late.id).includes('credential_issued'), false);
    assert.equal(h.minter.inputs.length, 1, 'nothing minted too late');
    // The stored credential went with the window, too.
    await assert.rejects(collect(h, early), { code: 'ERR_COLLECTION_WINDOW_CLOSED' });
    assert.ok(first.token);
  });

  it('fails closed when the credential_issued append fails, and hands out that same credential once it is audited', async () => {
    const h = await approvalsHarness();
    const r = await approved(h);
    h.audit.faults.fail('audit append');
    await assert.rejects(collect(h, r), { code: 'ERR_REDIS_UNAVAILABLE', kind: 'unavailable' });
    const stored = await h.store.credential(r.id);
    assert.equal(stored?.audited, false, 'stored, but it has not left the broker');
    assert.equal(h.audit.typesOf(r.id).includes('credential_issued'), false);

    // The retry finds it unaudited; after waiting for the (dead) first collector, it audits it itself.
    const retry = await collect(h, r);
    assert.equal(retry.token, stored?.token);
    assert.equal(h.waiter.sleeps, PEER_AUDIT_WAIT_MS / 50);
    assert.deepEqual(
      h.audit.of(r.id).flatMap((e) => (e.type === 'credential_issued' ? [e.jti] : [])),
      [stored?.jti],
    );
    assert.equal((await h.store.credential(r.id))?.audited, true);
    assert.equal(h.minter.inputs.length, 1);
  });

  it('waits for a peer still auditing the credential it stored, without auditing it again', async () => {
    const h = await approvalsHarness();
    const r = await approved(h);
    const minted = await h.minter.mint({
      subject: r.requester,
      certificateThumbprint: r.certificateThumbprint,
      svidNotAfter: r.svidNotAfter,
      operation: r.operation,
      resource: r.resource,
      parametersDigest: r.parametersDigest,
      audience: r.audience,
      ttlCaps: [60_000],
    });
    assert.deepEqual(await h.store.storeCredential(r.id, r.certificateThumbprint, 120_000, minted), [
      ScriptCode.Stored,
    ]);
    h.waiter.onSleep = async () => {
      if (h.waiter.sleeps === 3) await h.store.markCredentialAudited(r.id); // the peer's append is done
    };
    const got = await collect(h, r);
    assert.equal(got.jti, minted.jti);
    assert.equal(h.waiter.sleeps, 3);
    assert.equal(h.audit.typesOf(r.id).includes('credential_issued'), false, 'the peer appended it, not us');
  });

  it("records the votes and resolution before the credential when the voter's process has not (yet)", async () => {
    const h = await approvalsHarness();
    const r = await h.create();
    // The vote counted (the script ran) on a replica that has not appended its records.
    const [code] = await h.store.vote(r, {
      principal: 'alice',
      decision: 'approve',
      channel: 'test',
      at: h.clock.now(),
      stepUp: 'click',
      reason: '',
      deliveryId: '',
    });
    assert.equal(code, ScriptCode.Approved);
    await collect(h, r);
    assert.equal(h.waiter.sleeps, PEER_AUDIT_WAIT_MS / 20, 'it waited for the voter first');
    assert.deepEqual(h.audit.typesOf(r.id), [
      'request_received',
      'decision',
      'vote',
      'resolution',
      'credential_issued',
    ]);
    assert.deepEqual(h.store.outboxOf(r.id), []);
  });

  it('lets the voter finish its own records when it does so while the collector waits', async () => {
    const h = await approvalsHarness();
    const r = await h.create();
    await h.store.vote(r, {
      principal: 'bob',
      decision: 'approve',
      channel: 'test',
      at: h.clock.now(),
      stepUp: 'click',
      reason: '',
      deliveryId: '',
    });
    h.waiter.onSleep = async () => {
      if (h.waiter.sleeps === 2)
        await h.outbox.complete(r.id, [{ kind: 'vote', principal: 'bob' }, { kind: 'resolved' }]);
    };
    await collect(h, r);
    assert.equal(h.waiter.sleeps, 2);
    assert.deepEqual(h.audit.typesOf(r.id), [
      'request_received',
      'decision',
      'vote',
      'resolution',
      'credential_issued',
    ]);
  });

  it('stores nothing when minting fails, and a retry succeeds', async () => {
    const h = await approvalsHarness();
    const r = await approved(h);
    h.minter.faults.fail('mint', { error: new Error('signing key unavailable') });
    await assert.rejects(collect(h, r), { message: 'signing key unavailable' });
    assert.equal(await h.store.credential(r.id), undefined);
    const got = await collect(h, r);
    assert.equal(h.audit.of(r.id).at(-1)?.jti, got.jti);
  });
});
