// The audit hash chain against a real Redis: appends are atomic, ordered and
// contiguous (also from two "replicas"), and every kind of tampering is reported
// at the sequence number where it happened.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createLocalJWKSet, SignJWT } from 'jose';
import { RedisAuditLog } from '../src/audit/audit-log.js';
import { chainRecords, GENESIS_HASH, parseRecord, recordHash, serializeRecord } from '../src/audit/chain.js';
import { Checkpointer, CHECKPOINT_TYPE, signCheckpoint } from '../src/audit/checkpoints.js';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { readAuditExport, readAuditSnapshot } from '../src/audit/export.js';
import { lastHeadInFile } from '../src/audit/last-known.js';
import { checkpointLine } from '../src/audit/sinks.js';
import { verifyAuditTrail, type AuditReport } from '../src/audit/verify.js';
import { exportLines } from '../src/cli/audit.js';
import { ManualClock } from '../src/clock.js';
import { generateSigningKeyPem, Keyring, parseSigningKey } from '../src/credentials/keys.js';
import { createLogger, silentLogger } from '../src/observability/logger.js';
import { Keys } from '../src/redis/keys.js';
import type { HeadSigner } from '../src/audit/head.js';
import { testHeadSigner } from './support/audit.js';
import { testRedis, type TestRedis } from './support/redis.js';

const ISSUER = 'spiffe://example.org/countersign/broker';

describe('audit chain in Redis', () => {
  let r: TestRedis;
  let keys: Keys;
  let clock: ManualClock;
  let keyring: Keyring;
  let log: RedisAuditLog;
  let checkpointer: Checkpointer;
  let heads: HeadSigner;
  let n = 0;

  before(async () => {
    r = await testRedis('audit');
    keyring = new Keyring([await parseSigningKey(generateSigningKeyPem(), 'test-key')], { maxTtlMs: 3_600_000 });
  });
  after(async () => r?.cleanup());

  beforeEach(async () => {
    keys = new Keys(`${r.prefix}${++n}:`); // under the test's prefix, so cleanup takes it
    clock = new ManualClock();
    heads = testHeadSigner(keyring, ISSUER);
    checkpointer = new Checkpointer(
      { redis: r.redis, keys, keyring, heads, clock, logger: silentLogger() },
      { issuer: ISSUER, everyEvents: 1_000_000, intervalMs: 60_000 },
    );
    log = new RedisAuditLog(r.redis, keys, clock, { heads });
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
    assert.equal(first?.hash, recordHash(first));
    const stored = await recordAt(1);
    assert.deepEqual(stored, first);
    // The stored bytes are exactly the RFC 8785 form of the record.
    assert.equal(await r.redis.lindex(chain(), 0), serializeRecord(first));
    const [odd] = await log.appendAll([
      {
        type: 'policy_reload',
        outcome: 'applied',
        policy_digest: 'sha256:bb',
        z: { b: [1.5, 'é€😀'], a: null },
        skipped: undefined,
      },
    ]);
    assert.equal(odd?.hash, recordHash(odd!));
    assert.equal(await r.redis.lindex(chain(), 1), serializeRecord(odd));
    const report = await verify();
    assert.deepEqual(report.problems, []);
    assert.equal(report.lastSeq, 2);
  });

  it('keeps each caller’s events contiguous and in order when many append at once, and two logs share one chain', async () => {
    const other = new RedisAuditLog(r.redis, keys, clock, { heads }); // a second replica
    const groups = Array.from({ length: 40 }, (_, i) => [
      {
        type: 'request_received',
        request_id: `req_${i}`,
        requester: 'spiffe://example.org/ci/x',
        operation: 'deploy',
        resource: 'staging/web',
        parameters_digest: 'd',
      },
      { type: 'decision', request_id: `req_${i}`, decision: 'deny', rule: null, policy_digest: 'sha256:aa' },
    ]);
    const results = await Promise.all(groups.map((g, i) => (i % 2 === 0 ? log : other).appendAll(g)));
    for (const records of results) {
      assert.equal(records.length, 2);
      assert.equal((records[1] as { seq: number }).seq, (records[0] as { seq: number }).seq + 1);
      assert.equal(records[1]?.prev, records[0]?.hash);
    }
    const seqs = results
      .flat()
      .map((rec) => rec.seq)
      .sort((a, b) => a - b);
    assert.deepEqual(
      seqs,
      Array.from({ length: 80 }, (_, i) => i + 1),
    );
    assert.deepEqual((await verify()).problems, []);
  });

  it('puts the appends made in one turn of the event loop in one write, the first one included', async () => {
    // A client's burst of calls is read from one socket read: their records go in one Lua call,
    // not the first call's alone and the others' one round trip later.
    const redis = r.redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    const original = redis.cs_auditAppend as (...a: unknown[]) => Promise<unknown>;
    let writes = 0;
    redis.cs_auditAppend = function (this: unknown, ...a: unknown[]) {
      writes++;
      return original.apply(this, a);
    };
    try {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          log.appendAll([{ type: 'policy_reload', policy_digest: `sha256:${i}`, outcome: 'applied' }]),
        ),
      );
      assert.equal(writes, 1);
      assert.deepEqual(
        results.map((records) => records[0]?.seq),
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
    } finally {
      redis.cs_auditAppend = original;
    }
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
    await assert.rejects(
      log.appendAll([
        { type: 'policy_reload', policy_digest: 'x', outcome: 'applied' },
        { type: 'vote', request_id: 'r' },
      ]),
      {
        code: 'ERR_AUDIT_EVENT_INVALID',
        message: /vote lacks principal, decision, channel/,
      },
    );
    assert.equal(await r.redis.llen(chain()), 0);
  });

  it('refuses to start a second chain when the head is gone but records remain', async () => {
    await log.append({ type: 'policy_reload', policy_digest: 'x', outcome: 'applied' });
    await r.redis.del(keys.auditHead());
    const fresh = new RedisAuditLog(r.redis, keys, clock, { heads });
    await assert.rejects(fresh.append({ type: 'policy_reload', policy_digest: 'y', outcome: 'applied' }), {
      code: 'ERR_AUDIT_HEAD_MISSING',
    });
    assert.equal(await r.redis.llen(chain()), 1);
  });

  it('fails closed when the configured durability cannot be reached (no replica acknowledges)', async () => {
    const strict = new RedisAuditLog(r.redis, keys, clock, {
      heads,
      durability: { waitReplicas: 1, waitLocalFsync: false, timeoutMs: 50 },
    });
    await assert.rejects(strict.append({ type: 'policy_reload', policy_digest: 'x', outcome: 'applied' }), {
      code: 'ERR_AUDIT_NOT_DURABLE',
    });
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
      const forged = chainRecords(
        { seq: 3, hash: before4.hash },
        [{ type: 'identity_refused', peer: 'forged', code: 'X' }],
        before4.at,
      )[0]!.record;
      await r.redis.linsert(chain(), 'BEFORE', (await r.redis.lindex(chain(), 3)) as string, serializeRecord(forged));
      const report = await verify();
      assert.equal(report.firstBreak, 4);
    });

    it('an inserted copy of another record', async () => {
      await tenEvents();
      await r.redis.linsert(
        chain(),
        'BEFORE',
        (await r.redis.lindex(chain(), 5)) as string,
        (await r.redis.lindex(chain(), 1)) as string,
      );
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
      const payload = Buffer.from(
        JSON.stringify({ seq: 10, hash: (await recordAt(9)).hash, iss: ISSUER, iat: 1 }),
      ).toString('base64url');
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
      const unknownKid = await signCheckpoint(
        new Keyring([rogue], { maxTtlMs: 1000 }),
        { seq: 10, hash: (await recordAt(10)).hash },
        { issuer: ISSUER, now: clock.now() },
      );
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
      const rebuilt = chainRecords(
        { seq: 0, hash: GENESIS_HASH },
        records.map((x) => x.event),
        records[0]!.at,
      ).map((c) => c.record);
      await r.redis.del(chain());
      await r.redis.rpush(chain(), ...rebuilt.map(serializeRecord));
      await r.redis.hset(keys.auditHead(), 'seq', 10, 'hash', rebuilt[9]!.hash);
      const report = await verify();
      assert.deepEqual(
        report.problems.map((p) => [p.kind, p.code, p.seq]),
        [
          ['checkpoint', 'ERR_AUDIT_CHECKPOINT_MISMATCH', 10],
          ['head', 'ERR_AUDIT_HEAD_MISMATCH', 1],
        ],
      );
      assert.match(report.problems[0]?.message ?? '', /records 1-10 were rewritten/);
    });
  });

  describe('the chain’s end: signed heads, restarts, missing checkpoints', () => {
    const event = (i: number) => ({
      type: 'identity_refused',
      peer: `127.0.0.1:${2000 + i}`,
      code: 'ERR_SVID_EXPIRED',
      n: i,
    });
    const appendN = async (target: RedisAuditLog, from: number, to: number) => {
      for (let i = from; i <= to; i++) await target.append(event(i));
    };
    const headFields = async () => r.redis.hgetall(keys.auditHead());
    const logged = () => {
      const lines: { level: number; msg: string; reason?: string }[] = [];
      const logger = createLogger({
        level: 'info',
        destination: new Writable({
          write(chunk: Buffer, _enc, done) {
            for (const line of chunk.toString().split('\n'))
              if (line.trim()) lines.push(JSON.parse(line) as { level: number; msg: string });
            done();
          },
        }),
      });
      return { logger, lines };
    };

    it('every append signs the head; verify reports the head as verified', async () => {
      await appendN(log, 1, 3);
      const head = await headFields();
      assert.equal(head.seq, '3');
      assert.ok(head.sig, 'the head carries a signature');
      const report = await verify();
      assert.deepEqual(report.problems, []);
      assert.equal(report.headVerified, true);
    });

    it('a broker that finds the chain cut behind what it wrote records a restart (head_behind) and logs an error', async () => {
      const { logger, lines } = logged();
      const writer = new RedisAuditLog(r.redis, keys, clock, { heads, logger });
      await appendN(writer, 1, 10);
      const seen = await headFields(); // what someone reading Redis saw at seq 10
      await appendN(writer, 11, 15);
      // Cut back to seq 10 and put back the head (and signature) seen then: consistent in Redis.
      await r.redis.ltrim(chain(), 0, 9);
      await r.redis.hset(keys.auditHead(), seen);
      assert.deepEqual((await verify()).problems, [], 'from Redis alone, a head seen earlier is indistinguishable');

      const [record] = await writer.appendAll([event(16)]);
      assert.equal(record?.seq, 12);
      const restart = await recordAt(11);
      assert.equal(restart.event.type, 'chain_restart');
      assert.deepEqual(
        [restart.event.reason, restart.event.found_seq, restart.event.last_known_seq, restart.event.source],
        ['head_behind', 10, 15, 'memory'],
      );
      assert.ok(lines.some((l) => l.level === 50 && /restart \(head_behind\)/.test(l.msg)));
      const report = await verify();
      assert.deepEqual(
        report.problems.map((p) => [p.kind, p.code, p.seq]),
        [['restart', 'ERR_AUDIT_CHAIN_RESTARTED', 11]],
      );
      assert.match(report.problems[0]?.message ?? '', /seq 11-15 of the earlier chain are not in it/);
    });

    it('with durable acknowledgements, refuses to fork a chain that lost records it acknowledged (a failover without them), and keeps refusing', async () => {
      const { logger, lines } = logged();
      const writer = new RedisAuditLog(r.redis, keys, clock, { heads, logger, refuseFork: true });
      await appendN(writer, 1, 10);
      const seen = await headFields();
      await appendN(writer, 11, 15);
      // The promoted replica had seq 1-10 only.
      await r.redis.ltrim(chain(), 0, 9);
      await r.redis.hset(keys.auditHead(), seen);
      for (const i of [16, 17]) {
        await assert.rejects(writer.append(event(i)), (e: Error & { code?: string; grpcCode?: string }) => {
          assert.equal(e.code, 'ERR_AUDIT_CHAIN_FORK');
          assert.match(e.message, /ends at seq 10 .*not at seq 15 that this broker acknowledged \(head_behind\)/);
          return true;
        });
      }
      assert.equal(await r.redis.llen(chain()), 10, 'nothing appended after the loss');
      assert.deepEqual((await verify()).problems, []);
      assert.ok(lines.some((l) => l.level === 50 && /fork refused \(head_behind\)/.test(l.msg)));
      // Another broker that never acknowledged seq 11-15 carries on (it cannot know); a restarted one records the restart.
      const other = new RedisAuditLog(r.redis, keys, clock, { heads, refuseFork: true });
      assert.equal((await other.append(event(18))).seq, 11);
    });

    for (const [how, tamperSig, reason] of [
      ['without a signature', 'delete', 'head_unsigned'],
      ['with the old signature', 'keep', 'head_signature_invalid'],
    ] as const) {
      it(`does not sign over a rewritten tail whose head is ${how}: a fresh broker records a restart (${reason})`, async () => {
        await appendN(log, 1, 10);
        await checkpointer.checkpointNow();
        await appendN(log, 11, 15);
        const records = await Promise.all(Array.from({ length: 15 }, (_, i) => recordAt(i + 1)));
        records[12]!.event.peer = 'rewritten';
        let prev = records[11]!;
        for (const rec of records.slice(12)) {
          const again = chainRecords(prev, [rec.event], rec.at)[0]!.record;
          await r.redis.lset(chain(), again.seq - 1, serializeRecord(again));
          prev = again;
        }
        await r.redis.hset(keys.auditHead(), 'seq', prev.seq, 'hash', prev.hash);
        if (tamperSig === 'delete') await r.redis.hdel(keys.auditHead(), 'sig');
        assert.equal((await checkpointer.checkpointNow()).stored, false, 'the checkpointer does not sign it either');

        const fresh = new RedisAuditLog(r.redis, keys, clock, { heads }); // a broker just started: no memory of seq 15
        await fresh.append(event(16));
        const restart = await recordAt(16);
        assert.deepEqual(
          [restart.event.type, restart.event.reason, restart.event.found_seq],
          ['chain_restart', reason, 15],
        );
        assert.deepEqual(
          (await verify()).problems.map((p) => [p.kind, p.seq]),
          [['restart', 16]],
        );
      });
    }

    it('a replica notices that the record it appended after was replaced (head_diverged)', async () => {
      const a = new RedisAuditLog(r.redis, keys, clock, { heads });
      await appendN(a, 1, 10);
      const seen = await headFields();
      await appendN(a, 11, 12);
      await r.redis.ltrim(chain(), 0, 9);
      await r.redis.hset(keys.auditHead(), seen);
      const b = new RedisAuditLog(r.redis, keys, clock, { heads }); // knows nothing: continues from seq 10
      await appendN(b, 21, 23);
      await a.append(event(24));
      const restart = await recordAt(14);
      assert.deepEqual(
        [restart.event.type, restart.event.reason, restart.event.found_seq, restart.event.last_known_seq],
        ['chain_restart', 'head_diverged', 13, 12],
      );
    });

    it('recover: nothing is appended when the chain holds the last known head; a restart when it holds another record there', async () => {
      await appendN(log, 1, 5);
      const third = await recordAt(3);
      const fresh = new RedisAuditLog(r.redis, keys, clock, { heads });
      await fresh.recover([{ seq: 3, hash: third.hash, source: 'file' }]);
      assert.equal(await r.redis.llen(chain()), 5);
      const other = new RedisAuditLog(r.redis, keys, clock, { heads });
      await other.recover([{ seq: 3, hash: 'f'.repeat(64), source: 'file' }]);
      const restart = await recordAt(6);
      assert.deepEqual(
        [restart.event.type, restart.event.reason, restart.event.last_known_seq, restart.event.source],
        ['chain_restart', 'head_diverged', 3, 'file'],
      );
    });

    it('recover on an empty Redis continues the numbering after the last known head', async () => {
      const fresh = new RedisAuditLog(r.redis, keys, clock, { heads });
      const known = { seq: 41, hash: 'a'.repeat(64), source: 'checkpoint' as const };
      await fresh.recover([{ seq: 7, hash: 'b'.repeat(64), source: 'file' }, known]);
      const [record] = await fresh.appendAll([event(1)]);
      assert.equal(record?.seq, 43);
      const first = parseRecord((await r.redis.lindex(chain(), 0)) as string)!;
      assert.deepEqual(
        [first.seq, first.prev, first.event.reason, first.event.source],
        [42, known.hash, 'redis_empty', 'checkpoint'],
      );
      assert.equal((await headFields()).first_seq, '42');
      // Checkpoints address the list from first_seq on.
      const cp = await checkpointer.checkpointNow();
      assert.deepEqual(cp.stored && cp.seq, 43);
      const report = await verify();
      assert.deepEqual(
        report.problems.map((p) => [p.kind, p.seq]),
        [['restart', 42]],
      );
    });

    it('a checkpoint deleted from the middle of the list is missing: each names the one before it', async () => {
      for (const upTo of [5, 10, 15]) {
        await appendN(log, upTo - 4, upTo);
        assert.equal((await checkpointer.checkpointNow()).stored, true);
      }
      assert.deepEqual((await verify()).problems, []);
      await r.redis.lrem(keys.auditCheckpoints(), 1, (await r.redis.lindex(keys.auditCheckpoints(), 1)) as string);
      assert.deepEqual(
        (await verify()).problems.map((p) => [p.kind, p.code, p.seq]),
        [['checkpoint', 'ERR_AUDIT_CHECKPOINT_MISSING', 10]],
      );
    });

    it('an export carries the signed head, so an offline verify sees a cut tail too', async () => {
      await appendN(log, 1, 6);
      await checkpointer.checkpointNow();
      await appendN(log, 7, 9);
      const lines = exportLines(await readAuditSnapshot(r.redis, keys));
      assert.match(lines[lines.length - 1] ?? '', /^\{"head":"/);
      const offline = async (text: string[]) => {
        const file = join(await mkdtemp(join(tmpdir(), 'audit-export-')), 'audit.jsonl');
        await writeFile(file, `${text.join('\n')}\n`);
        return verifyAuditTrail({
          ...(await readAuditExport(file)),
          getKey: createLocalJWKSet(keyring.allPublicJwks()),
        });
      };
      assert.deepEqual((await offline(lines)).problems, []);
      const cut = lines.filter((l) => !/"seq":(8|9)\}$/.test(l));
      assert.equal(cut.length, lines.length - 2);
      assert.deepEqual(
        (await offline(cut)).problems.map((p) => [p.kind, p.code, p.seq]),
        [['head', 'ERR_AUDIT_HEAD_MISMATCH', 8]],
      );
    });

    it('reads the last position back from the file sink, skipping a torn last line', async () => {
      await appendN(log, 1, 4);
      await checkpointer.checkpointNow();
      const lines = await r.redis.lrange(chain(), 0, -1);
      const cp = (await r.redis.lindex(keys.auditCheckpoints(), -1)) as string;
      const dir = await mkdtemp(join(tmpdir(), 'audit-sink-'));
      const file = join(dir, 'audit.jsonl');
      assert.equal(await lastHeadInFile(file), undefined);
      await writeFile(file, `${lines.join('\n')}\n${checkpointLine(cp)}\n{"at":1,"event":{"ty`);
      const fourth = await recordAt(4);
      assert.deepEqual(await lastHeadInFile(file), { seq: 4, hash: fourth.hash, source: 'file' });
    });
  });

  describe('approval evidence', () => {
    const facts = {
      requester: 'spiffe://example.org/ci/x',
      operation: 'deploy',
      resource: 'prod/web',
      parameters_digest: 'd',
    };
    const issued = (id: string, approvers: string[]) => ({
      type: 'credential_issued',
      request_id: id,
      jti: `jti_${id}`,
      subject: facts.requester,
      audience: 'aud',
      expires_at: 1,
      approval: {
        request_id: id,
        rule: 'prod',
        policy_digest: 'p',
        approvers: approvers.map((p) => ({ principal: p, channel: 'cli', at: 1, step_up: 'click' })),
      },
    });

    it('passes when decision, votes and resolution precede the credential', async () => {
      await log.appendAll([
        { type: 'request_received', request_id: 'req_a', ...facts },
        {
          type: 'decision',
          request_id: 'req_a',
          decision: 'approve',
          rule: 'prod',
          policy_digest: 'p',
          approvals_required: 1,
        },
        {
          type: 'vote',
          request_id: 'req_a',
          principal: 'alice',
          decision: 'approve',
          channel: 'cli',
          step_up: 'click',
        },
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
        {
          type: 'decision',
          request_id: 'req_p',
          decision: 'approve',
          rule: 'prod',
          policy_digest: 'p',
          approvals_required: 1,
        },
        issued('req_p', ['alice']),
        {
          type: 'decision',
          request_id: 'req_v',
          decision: 'approve',
          rule: 'prod',
          policy_digest: 'p',
          approvals_required: 1,
        },
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
    const second = new Checkpointer(
      { redis: r.redis, keys, keyring, heads, clock, logger: silentLogger() },
      { issuer: ISSUER, everyEvents: 1, intervalMs: 60_000 },
    );
    const outcomes = await Promise.all([checkpointer.checkpointNow(), second.checkpointNow()]);
    assert.equal(outcomes.filter((o) => o.stored).length, 1);
    assert.equal(await r.redis.llen(keys.auditCheckpoints()), 1);
  });
});
