// The audit hash chain against a real Redis: appends are atomic, ordered and
// contiguous (also from two "replicas"), and every kind of tampering is reported
// at the sequence number where it happened.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createLocalJWKSet, SignJWT } from 'jose';
import { RedisAuditLog } from '../src/audit/audit-log.js';
import { chainRecords, GENESIS_HASH, parseRecord, recordHash, serializeRecord } from '../src/audit/chain.js';
import { Checkpointer, CHECKPOINT_TYPE, signCheckpoint } from '../src/audit/checkpoints.js';
import { readAuditSnapshot } from '../src/audit/export.js';
import { verifyAuditTrail, type AuditReport } from '../src/audit/verify.js';
import { ManualClock } from '../src/clock.js';
import { generateSigningKeyPem, Keyring, parseSigningKey } from '../src/credentials/keys.js';
import { silentLogger } from '../src/observability/logger.js';
import { Keys } from '../src/redis/keys.js';
import { testRedis, type TestRedis } from './support/redis.js';

const ISSUER = 'spiffe://example.org/countersign/broker';

describe('audit chain in Redis', () => {
  let r: TestRedis;
  let keys: Keys;
  let clock: ManualClock;
  let keyring: Keyring;
  let log: RedisAuditLog;
  let checkpointer: Checkpointer;
  let n = 0;

  before(async () => {
    r = await testRedis('audit');
    keyring = new Keyring([await parseSigningKey(generateSigningKeyPem(), 'test-key')], { maxTtlMs: 3_600_000 });
  });
  after(async () => r?.cleanup());

  beforeEach(async () => {
    keys = new Keys(`${r.prefix}${++n}:`); // under the test's prefix, so cleanup takes it
    clock = new ManualClock();
    checkpointer = new Checkpointer({ redis: r.redis, keys, keyring, clock, logger: silentLogger() }, { issuer: ISSUER, everyEvents: 1_000_000, intervalMs: 60_000 });
    log = new RedisAuditLog(r.redis, keys, clock);
  });

  const verify = async (): Promise<AuditReport> => {
    const snapshot = await readAuditSnapshot(r.redis, keys);
    return verifyAuditTrail({ ...snapshot, getKey: createLocalJWKSet(keyring.allPublicJwks()) });
  };
  const chain = () => keys.auditChain();
  const recordAt = async (seq: number) => parseRecord((await r.redis.lindex(chain(), seq - 1)) as string)!;

  /** Ten allowed requests' worth of events: seq 1-10, a checkpoint at 10. */
  async function tenEvents(): Promise<void> {
    for (let i = 1; i <= 10; i++) {
      await log.append({ type: 'identity_refused', peer: `127.0.0.1:${1000 + i}`, code: 'ERR_SVID_EXPIRED', n: i });
      clock.advance(1000);
    }
    const cp = await checkpointer.checkpointNow();
    assert.equal(cp.stored, true);
  }

  it('appends events with sequence numbers, links and hashes that verify', async () => {
    const [first] = await log.appendAll([{ type: 'policy_reload', policy_digest: 'sha256:aa', outcome: 'applied' }]);
    assert.equal(first?.seq, 1);
    assert.equal(first?.prev, GENESIS_HASH);
    assert.equal(first?.hash, recordHash(first!));
    const stored = await recordAt(1);
    assert.deepEqual(stored, first);
    // The stored bytes are exactly the RFC 8785 form of the record.
    assert.equal(await r.redis.lindex(chain(), 0), serializeRecord(first!));
    const [odd] = await log.appendAll([{ type: 'policy_reload', outcome: 'applied', policy_digest: 'sha256:bb', z: { b: [1.5, 'é€😀'], a: null }, skipped: undefined }]);
    assert.equal(odd?.hash, recordHash(odd!));
    assert.equal(await r.redis.lindex(chain(), 1), serializeRecord(odd!));
    const report = await verify();
    assert.deepEqual(report.problems, []);
    assert.equal(report.lastSeq, 2);
  });

  it('keeps each caller’s events contiguous and in order when many append at once, and two logs share one chain', async () => {
    const other = new RedisAuditLog(r.redis, keys, clock); // a second replica
    const groups = Array.from({ length: 40 }, (_, i) => [
      { type: 'request_received', request_id: `req_${i}`, requester: 'spiffe://example.org/ci/x', operation: 'deploy', resource: 'staging/web', parameters_digest: 'd' },
      { type: 'decision', request_id: `req_${i}`, decision: 'deny', rule: null, policy_digest: 'sha256:aa' },
    ]);
    const results = await Promise.all(groups.map((g, i) => (i % 2 === 0 ? log : other).appendAll(g)));
    for (const records of results) {
      assert.equal(records.length, 2);
      assert.equal((records[1] as { seq: number }).seq, (records[0] as { seq: number }).seq + 1);
      assert.equal(records[1]?.prev, records[0]?.hash);
    }
    const seqs = results.flat().map((rec) => rec.seq).sort((a, b) => a - b);
    assert.deepEqual(seqs, Array.from({ length: 80 }, (_, i) => i + 1));
    assert.deepEqual((await verify()).problems, []);
  });

  it('reports nothing wrong when verified while the broker keeps appending and checkpointing', async () => {
    let appending = true;
    const writer = (async () => {
      let i = 0;
      while (appending) {
        await log.append({ type: 'identity_refused', peer: `p${i++}`, code: 'X' });
        if (i % 7 === 0) await checkpointer.checkpointNow();
      }
    })();
    try {
      for (let round = 0; round < 10; round++) {
        const report = await verify();
        assert.deepEqual(report.problems, [], `round ${round}`);
      }
    } finally {
      appending = false;
      await writer;
    }
  });

  it('refuses malformed events without appending anything', async () => {
    await assert.rejects(log.append({ type: 'made_up', x: 1 }), { code: 'ERR_AUDIT_EVENT_INVALID' });
    await assert.rejects(log.appendAll([{ type: 'policy_reload', policy_digest: 'x', outcome: 'applied' }, { type: 'vote', request_id: 'r' }]), {
      code: 'ERR_AUDIT_EVENT_INVALID',
      message: /vote lacks principal, decision, channel/,
    });
    assert.equal(await r.redis.llen(chain()), 0);
  });

  it('refuses to start a second chain when the head is gone but records remain', async () => {
    await log.append({ type: 'policy_reload', policy_digest: 'x', outcome: 'applied' });
    await r.redis.del(keys.auditHead());
    const fresh = new RedisAuditLog(r.redis, keys, clock);
    await assert.rejects(fresh.append({ type: 'policy_reload', policy_digest: 'y', outcome: 'applied' }), { code: 'ERR_AUDIT_HEAD_MISSING' });
    assert.equal(await r.redis.llen(chain()), 1);
  });

  it('fails closed when the configured durability cannot be reached (no replica acknowledges)', async () => {
    const strict = new RedisAuditLog(r.redis, keys, clock, { durability: { waitReplicas: 1, waitLocalFsync: false, timeoutMs: 50 } });
    await assert.rejects(strict.append({ type: 'policy_reload', policy_digest: 'x', outcome: 'applied' }), { code: 'ERR_AUDIT_NOT_DURABLE' });
  });

  describe('tampering is reported at the sequence number where it happened', () => {
    it('an edited record (content changed, hash left alone)', async () => {
      await tenEvents();
      const text = (await r.redis.lindex(chain(), 4)) as string;
      await r.redis.lset(chain(), 4, text.replace('127.0.0.1:1005', '10.0.0.9:1005'));
      const report = await verify();
      assert.equal(report.firstBreak, 5);
      assert.match(report.problems[0]?.message ?? '', /^seq 5: altered/);
    });

    it('an edited record whose hash was recomputed', async () => {
      await tenEvents();
      const rec = await recordAt(5);
      rec.event.peer = '10.0.0.9:1005';
      rec.hash = recordHash(rec);
      await r.redis.lset(chain(), 4, serializeRecord(rec));
      const report = await verify();
      assert.equal(report.firstBreak, 5);
      assert.deepEqual(
        report.problems.map((p) => [p.kind, p.seq]),
        [['chain', 5]],
      );
      assert.match(report.problems[0]?.message ?? '', /^seq 5: altered \(its hash is not the one seq 6 links to\)/);
    });

    it('a deleted record', async () => {
      await tenEvents();
      await r.redis.lrem(chain(), 1, (await r.redis.lindex(chain(), 6)) as string);
      const report = await verify();
      assert.equal(report.firstBreak, 7);
      assert.match(report.problems[0]?.message ?? '', /^seq 7: missing/);
    });

    it('an inserted record that links correctly', async () => {
      await tenEvents();
      const before4 = await recordAt(3);
      const forged = chainRecords({ seq: 3, hash: before4.hash }, [{ type: 'identity_refused', peer: 'forged', code: 'X' }], before4.at)[0]!.record;
      await r.redis.linsert(chain(), 'BEFORE', (await r.redis.lindex(chain(), 3)) as string, serializeRecord(forged));
      const report = await verify();
      assert.equal(report.firstBreak, 4);
    });

    it('an inserted copy of another record', async () => {
      await tenEvents();
      await r.redis.linsert(chain(), 'BEFORE', (await r.redis.lindex(chain(), 5)) as string, (await r.redis.lindex(chain(), 1)) as string);
      const report = await verify();
      assert.equal(report.firstBreak, 6);
      assert.match(report.problems[0]?.message ?? '', /^seq 6: a copy of record 2 was inserted/);
    });

    it('two records swapped', async () => {
      await tenEvents();
      const a = (await r.redis.lindex(chain(), 7)) as string;
      const b = (await r.redis.lindex(chain(), 8)) as string;
      await r.redis.lset(chain(), 7, b);
      await r.redis.lset(chain(), 8, a);
      const report = await verify();
      assert.equal(report.firstBreak, 8);
      assert.match(report.problems[0]?.message ?? '', /^seq 8: out of order/);
    });

    it('records cut off the end', async () => {
      await tenEvents();
      await r.redis.rpop(chain(), 2);
      const report = await verify();
      assert.equal(report.firstBreak, 9);
    });

    it('a checkpoint whose claims were altered without re-signing', async () => {
      await tenEvents();
      const jws = (await r.redis.lindex(keys.auditCheckpoints(), 0)) as string;
      const [h, , s] = jws.split('.');
      const payload = Buffer.from(JSON.stringify({ seq: 10, hash: (await recordAt(9)).hash, iss: ISSUER, iat: 1 })).toString('base64url');
      await r.redis.lset(keys.auditCheckpoints(), 0, `${h}.${payload}.${s}`);
      const report = await verify();
      assert.equal(report.problems.length, 1);
      assert.equal(report.problems[0]?.kind, 'checkpoint');
      assert.equal(report.problems[0]?.seq, 10);
      assert.match(report.problems[0]?.message ?? '', /signature does not verify/);
    });

    it('a checkpoint forged with another key (even one claiming the real kid)', async () => {
      await tenEvents();
      const rogue = await parseSigningKey(generateSigningKeyPem(), 'rogue');
      const forged = await new SignJWT({ seq: 10, hash: (await recordAt(10)).hash })
        .setProtectedHeader({ alg: 'ES256', kid: keyring.signingKey(clock.now()).kid, typ: CHECKPOINT_TYPE })
        .setIssuer(ISSUER)
        .sign(rogue.privateKey);
      await r.redis.rpush(keys.auditCheckpoints(), forged);
      const unknownKid = await signCheckpoint(new Keyring([rogue], { maxTtlMs: 1000 }), { seq: 10, hash: (await recordAt(10)).hash }, { issuer: ISSUER, now: clock.now() });
      await r.redis.rpush(keys.auditCheckpoints(), unknownKid);
      const report = await verify();
      const cp = report.problems.filter((p) => p.kind === 'checkpoint');
      assert.equal(cp.length, 2);
      assert.ok(cp.every((p) => p.seq === 10));
      assert.ok(cp.some((p) => /unknown key/.test(p.message)));
    });

    it('a whole chain rewritten consistently is caught by the signed checkpoint', async () => {
      await tenEvents();
      const records = await Promise.all(Array.from({ length: 10 }, (_, i) => recordAt(i + 1)));
      records[2]!.event.peer = 'rewritten';
      const rebuilt = chainRecords({ seq: 0, hash: GENESIS_HASH }, records.map((x) => x.event), records[0]!.at).map((c) => c.record);
      await r.redis.del(chain());
      await r.redis.rpush(chain(), ...rebuilt.map(serializeRecord));
      await r.redis.hset(keys.auditHead(), 'seq', 10, 'hash', rebuilt[9]!.hash);
      const report = await verify();
      assert.deepEqual(
        report.problems.map((p) => [p.kind, p.seq]),
        [['checkpoint', 10]],
      );
      assert.match(report.problems[0]?.message ?? '', /records 1-10 were rewritten/);
    });
  });

  describe('approval evidence', () => {
    const facts = { requester: 'spiffe://example.org/ci/x', operation: 'deploy', resource: 'prod/web', parameters_digest: 'd' };
    const issued = (id: string, approvers: string[]) => ({
      type: 'credential_issued',
      request_id: id,
      jti: `jti_${id}`,
      subject: facts.requester,
      audience: 'aud',
      expires_at: 1,
      approval: { request_id: id, rule: 'prod', policy_digest: 'p', approvers: approvers.map((p) => ({ principal: p, channel: 'cli', at: 1, step_up: 'click' })) },
    });

    it('passes when decision, votes and resolution precede the credential', async () => {
      await log.appendAll([
        { type: 'request_received', request_id: 'req_a', ...facts },
        { type: 'decision', request_id: 'req_a', decision: 'approve', rule: 'prod', policy_digest: 'p', approvals_required: 1 },
        { type: 'vote', request_id: 'req_a', principal: 'alice', decision: 'approve', channel: 'cli', step_up: 'click' },
        { type: 'resolution', request_id: 'req_a', state: 'APPROVED' },
        issued('req_a', ['alice']),
      ]);
      const report = await verify();
      assert.deepEqual(report.problems, []);
      assert.equal(report.credentials, 1);
    });

    it('reports a credential with no decision, one for a pending request, and one naming an approver who never voted', async () => {
      await log.appendAll([
        issued('req_none', ['alice']),
        { type: 'decision', request_id: 'req_p', decision: 'approve', rule: 'prod', policy_digest: 'p', approvals_required: 1 },
        issued('req_p', ['alice']),
        { type: 'decision', request_id: 'req_v', decision: 'approve', rule: 'prod', policy_digest: 'p', approvals_required: 1 },
        { type: 'resolution', request_id: 'req_v', state: 'APPROVED' },
        issued('req_v', ['mallory']),
        { type: 'decision', request_id: 'req_d', decision: 'deny', rule: 'x', policy_digest: 'p' },
        issued('req_d', []),
      ]);
      const report = await verify();
      assert.deepEqual(
        report.problems.map((p) => [p.kind, p.seq]),
        [
          ['evidence', 1],
          ['evidence', 3],
          ['evidence', 6],
          ['evidence', 8],
        ],
      );
      assert.match(report.problems[2]?.message ?? '', /mallory/);
    });
  });

  it('stores one checkpoint per position even when several replicas try', async () => {
    await log.append({ type: 'policy_reload', policy_digest: 'x', outcome: 'applied' });
    const second = new Checkpointer({ redis: r.redis, keys, keyring, clock, logger: silentLogger() }, { issuer: ISSUER, everyEvents: 1, intervalMs: 60_000 });
    const outcomes = await Promise.all([checkpointer.checkpointNow(), second.checkpointNow()]);
    assert.equal(outcomes.filter((o) => o.stored).length, 1);
    assert.equal(await r.redis.llen(keys.auditCheckpoints()), 1);
  });
});
