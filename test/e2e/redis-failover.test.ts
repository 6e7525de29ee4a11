// Losing the Redis primary (issue 19, docs/operations.md): two broker processes
// behind Redis Sentinel keep serving a steady mix of allowed requests, approval
// requests, votes and watches while the primary is SIGKILLed and Sentinel promotes
// a replica. Afterwards every credential a client received has its audit record on
// the new primary, every vote a client saw acknowledged is there, no request is lost
// or resolved twice, and `audit verify --config` (through Sentinel) passes. With
// redis.durability.replicas: 1 and no replica to confirm a write, calls fail with
// UNAVAILABLE and nothing is issued.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { ApprovalsClient, CountersignClient, CountersignClientError, type OperationResult } from '@countersign/agent';
import {
  auditEvents,
  CertificateAuthority,
  eventually,
  spawnBroker,
  startRedisServer,
  startSentinelSet,
  SENTINEL_MASTER,
  uniquePrefix,
  writeBrokerFiles,
  type BrokerProcess,
  type IssuedSvid,
} from '@countersign/broker/testing';
import { BROKER_BIN, LIMITS, TD, topologyPolicy } from './support/redis-topology.js';

const POLICY = topologyPolicy('3s');
const RETRY = { attempts: 200, initialBackoffMs: 100, maxBackoffMs: 300 };

interface Audited {
  type: string;
  request_id?: string;
  jti?: string;
  principal?: string;
}

describe('Redis primary lost (Sentinel failover)', () => {
  const ca = CertificateAuthority.createRoot(TD);
  const deployerSvid: IssuedSvid = ca.issueSvid(`spiffe://${TD}/ci/deployer`);
  const aliceSvid: IssuedSvid = ca.issueSvid(`spiffe://${TD}/human/alice`);
  const closers: { close(): void }[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];
  const options = (address: string, svid: IssuedSvid) => ({
    address,
    certChainPem: svid.chainPem,
    keyPem: svid.keyPem,
    caPem: ca.pem,
    timeoutMs: 5000,
    retry: RETRY,
  });
  const deployer = (address: string) => {
    const c = new CountersignClient(options(address, deployerSvid));
    closers.push(c);
    return c;
  };
  const alice = (address: string) => {
    const c = new ApprovalsClient(options(address, aliceSvid));
    closers.push(c);
    return c;
  };

  after(async () => {
    for (const c of closers) c.close();
    // Brokers first (they hold connections), then Redis; in reverse order of creation.
    for (const undo of cleanups.reverse()) await undo().catch(() => undefined);
  });

  it('loses no acknowledged credential, vote or request when the primary is SIGKILLed under load', async (t) => {
    const set = await startSentinelSet({ replicas: 2, downAfterMs: 1000 });
    cleanups.push(() => set.destroy());
    const prefix = uniquePrefix('failover');
    const files = await writeBrokerFiles({
      ca,
      policy: POLICY,
      redisUrl: (set.servers[0] as { url: string }).url,
      prefix,
      extraConfig: LIMITS,
      redisExtra: `  sentinel:\n    master_name: ${SENTINEL_MASTER}\n    sentinels: [${set.sentinelAddresses.join(', ')}]\n  durability: { replicas: 1, timeout: 1s }\n`,
    });
    cleanups.push(() => rm(files.dir, { recursive: true, force: true }));
    const brokers: BrokerProcess[] = await Promise.all([spawnBroker(files.configFile), spawnBroker(files.configFile)]);
    for (const b of brokers) cleanups.push(() => b.kill('SIGKILL'));
    const [a, b] = brokers as [BrokerProcess, BrokerProcess];

    const issued = new Set<string>(); // credential ids a client received
    const pending = new Set<string>(); // requests a client was told are pending
    const votesAcked = new Set<string>(); // requests whose vote a client saw acknowledged
    const failures = new Map<string, number>();
    let killedAt: number | undefined;
    let firstSuccessMs: number | undefined;
    let stop = false;
    const halt = new AbortController();
    // Recovery: the first call that started after the kill and succeeded (one in flight at the kill may have been answered by the old primary).
    const succeeded = (startedAt: number) => {
      if (killedAt !== undefined && startedAt >= killedAt && firstSuccessMs === undefined)
        firstSuccessMs = performance.now() - killedAt;
    };
    const failed = (e: unknown) => {
      const code = e instanceof CountersignClientError ? e.code : (e as Error).message;
      failures.set(code, (failures.get(code) ?? 0) + 1);
    };

    const allowLoop = async (client: CountersignClient, name: string) => {
      for (let n = 0; !stop; n++) {
        const startedAt = performance.now();
        try {
          const r = await client.request(
            { operation: 'deploy', resource: `staging/${name}`, parameters: { n } },
            { signal: halt.signal },
          );
          assert.equal(r.state, 'APPROVED');
          issued.add(r.credentialId as string);
          succeeded(startedAt);
        } catch (e) {
          failed(e);
        }
      }
    };
    const approvalLoop = async (client: CountersignClient, approver: ApprovalsClient, name: string) => {
      for (let n = 0; !stop; n++) {
        let request: OperationResult;
        const startedAt = performance.now();
        try {
          request = await client.request(
            { operation: 'deploy', resource: `prod/${name}`, parameters: { n } },
            { signal: halt.signal },
          );
        } catch (e) {
          failed(e);
          continue;
        }
        assert.equal(request.state, 'PENDING_APPROVAL');
        pending.add(request.requestId);
        succeeded(startedAt);
        // The requester watches (WatchRequest, reconnecting through the failover) while alice votes.
        const watched = client.waitForApproval(request, { pollIntervalMs: 200, signal: halt.signal });
        for (;;) {
          const voteStartedAt = performance.now();
          try {
            await approver.decide({ requestId: request.requestId, decision: 'approve' });
            votesAcked.add(request.requestId);
            succeeded(voteStartedAt);
            break;
          } catch (e) {
            // A retry after an answer that was lost: the first vote counted (and stays unacknowledged here).
            if (e instanceof CountersignClientError && e.code === 'ERR_REQUEST_RESOLVED') break;
            failed(e);
            if (!(e instanceof CountersignClientError && e.grpcStatus === status.UNAVAILABLE) || halt.signal.aborted)
              throw e;
            // Retry pacing during the failover (a client's back-off), not a wait for an event.
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
        const final = await watched.catch((e: unknown) => {
          if (halt.signal.aborted) return undefined;
          throw e;
        });
        if (final === undefined) return;
        assert.equal(final.state, 'APPROVED');
        issued.add(final.credentialId as string);
      }
    };

    // Why a wait timed out: what the calls failed with, what the brokers logged, what the sentinels think.
    const why = async (e: unknown): Promise<never> => {
      const errors = brokers.flatMap((x) =>
        x
          .logs()
          .split('\n')
          .filter((l) => /"level":(50|60)/.test(l))
          .slice(-3),
      );
      throw new Error(
        `${(e as Error).message}\nfailed calls: ${JSON.stringify(Object.fromEntries(failures))}\n${await set.describe()}\nbroker errors:\n${errors.join('\n')}`,
      );
    };
    const loops = Promise.all([
      allowLoop(deployer(a.address), 'a'),
      allowLoop(deployer(b.address), 'b'),
      approvalLoop(deployer(a.address), alice(b.address), 'ab'),
      approvalLoop(deployer(b.address), alice(a.address), 'ba'),
    ]);
    const oldPrimary = set.servers[0] as { port: number; stop(signal?: NodeJS.Signals): Promise<void> };
    let before: { issued: number; votes: number };
    const expiring: OperationResult[] = [];
    try {
      await eventually(
        'some traffic before the kill',
        () => issued.size >= 40 && votesAcked.size >= 5,
        30_000,
        20,
      ).catch(why);
      before = { issued: issued.size, votes: votesAcked.size };
      // Requests whose expiry jobs (BullMQ, delayed) come due around the switch.
      for (const n of [1, 2])
        expiring.push(
          await deployer(a.address).request({ operation: 'deploy', resource: 'quick/web', parameters: { n } }),
        );
      killedAt = performance.now();
      await oldPrimary.stop('SIGKILL');
      await eventually('a call to succeed after the kill', () => firstSuccessMs !== undefined, 30_000, 20).catch(why);
      // Keep the mix going a little on the new primary, then let the loops finish what they started.
      const afterKill = issued.size;
      await eventually('traffic on the new primary', () => issued.size >= afterKill + 20, 30_000, 20).catch(why);
    } catch (e) {
      // Cut the calls in flight short (they would retry for a minute), then report.
      stop = true;
      halt.abort();
      await loops.catch(() => undefined);
      throw e;
    }
    stop = true; // the loops end with the call each has in flight
    await loops;
    for (const r of expiring)
      assert.equal(
        (await deployer(b.address).waitForApproval(r)).state,
        'EXPIRED',
        `request ${r.requestId} expired (its job fired after the failover)`,
      );

    const newPrimaryPort = await set.primaryPort();
    assert.notEqual(newPrimaryPort, oldPrimary.port, 'Sentinel promoted a replica');
    const redis = await set.connectPrimary();
    cleanups.push(async () => redis.disconnect());
    const records = (await auditEvents(redis, prefix)) as Audited[];
    const audited = new Set(records.filter((r) => r.type === 'credential_issued').map((r) => r.jti));
    const missing = [...issued].filter((jti) => !audited.has(jti));
    assert.deepEqual(
      missing,
      [],
      'every credential a client received has its credential_issued record on the new primary',
    );
    const voted = new Set(records.filter((r) => r.type === 'vote' && r.principal === 'alice').map((r) => r.request_id));
    assert.deepEqual(
      [...votesAcked].filter((id) => !voted.has(id)),
      [],
      'every acknowledged vote is on the new primary',
    );
    const of = (type: string, id: string) => records.filter((r) => r.type === type && r.request_id === id);
    // A write whose WAIT failed in the switch was not acknowledged; the retry (or the outbox's sweep) records
    // it again, so a creation or resolution record may appear twice. What must hold: nothing lost, one outcome,
    // one credential per approval.
    let repeated = 0;
    for (const id of pending) {
      const decisions = of('decision', id).length;
      assert.ok(decisions >= 1, `request ${id} (told pending) is recorded on the new primary`);
      const outcomes = new Set(of('resolution', id).map((r) => (r as { state?: string }).state));
      assert.ok(outcomes.size <= 1, `request ${id} resolved one way only: ${[...outcomes].join(', ')}`);
      assert.ok(new Set(of('credential_issued', id).map((r) => r.jti)).size <= 1, `request ${id}: one credential`);
      repeated += decisions - 1 + Math.max(0, of('resolution', id).length - 1);
    }
    for (const r of expiring)
      assert.deepEqual(
        new Set(of('resolution', r.requestId).map((x) => (x as { state?: string }).state)),
        new Set(['EXPIRED']),
        `request ${r.requestId} expired once`,
      );
    for (const id of votesAcked)
      assert.deepEqual(
        new Set(of('resolution', id).map((r) => (r as { state?: string }).state)),
        new Set(['APPROVED']),
        `request ${id} (vote acknowledged) resolved APPROVED`,
      );

    // The audit CLI follows Sentinel too (it used to connect to redis.url: the dead primary).
    const verify = await new Promise<{ code: number; out: string }>((resolve) => {
      const env = { ...process.env };
      delete env.REDIS_URL;
      execFile(
        process.execPath,
        [BROKER_BIN, 'audit', 'verify', '--config', files.configFile],
        { env },
        (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, out: `${stdout}${stderr}` }),
      );
    });
    assert.equal(verify.code, 0, verify.out);
    assert.match(verify.out, /audit verify: .* records/);
    assert.ok(
      a.child.exitCode === null && b.child.exitCode === null,
      'the same two broker processes served throughout',
    );

    const report =
      `failover: kill -> first success of a call started after it ${Math.round(firstSuccessMs as number)} ms; ` +
      `${issued.size} credentials received (${before!.issued} before the kill), all audited; ${votesAcked.size} votes acknowledged, all recorded; ` +
      `${pending.size} approval requests, none lost or resolved two ways (${repeated} creation/resolution records repeated after an unconfirmed write); ` +
      `failed attempts (retried): ${JSON.stringify(Object.fromEntries(failures))}`;
    t.diagnostic(report);
    process.stderr.write(`${report}\n`);
    assert.ok(
      (firstSuccessMs as number) < 15_000,
      `recovered in ${Math.round(firstSuccessMs as number)} ms (goal: under 10 s)`,
    );
  });

  it('answers UNAVAILABLE and issues nothing while no replica can confirm a write, and recovers when one can', async () => {
    const primary = await startRedisServer({ persistence: 'aof-everysec' });
    cleanups.push(() => primary.destroy());
    const replica = await startRedisServer({ persistence: 'aof-everysec', replicaOf: primary.port });
    cleanups.push(() => replica.destroy());
    const prefix = uniquePrefix('no-replica');
    const files = await writeBrokerFiles({
      ca,
      policy: POLICY,
      redisUrl: primary.url,
      prefix,
      extraConfig: LIMITS,
      redisExtra: '  durability: { replicas: 1, timeout: 300ms }\n',
    });
    cleanups.push(() => rm(files.dir, { recursive: true, force: true }));
    const broker = await spawnBroker(files.configFile);
    cleanups.push(() => broker.kill('SIGKILL'));
    const client = deployer(broker.address);
    const readyz = async () => {
      const res = await fetch(`http://127.0.0.1:${broker.httpPort}/readyz`);
      return { status: res.status, body: (await res.json()) as { failures?: Record<string, string> } };
    };
    const first = await eventually('the replica to confirm a write', async () => {
      try {
        return await client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: { n: 0 } });
      } catch {
        return undefined;
      }
    });
    assert.equal(first.state, 'APPROVED');
    assert.equal((await readyz()).status, 200);

    await replica.stop('SIGKILL');
    for (const [n, resource] of [
      [1, 'staging/web'],
      [2, 'prod/web'],
    ] as const) {
      let error: unknown;
      await client.requestOperation({ operation: 'deploy', resource, parameters: { n } }).then(
        (r) =>
          assert.fail(
            `expected UNAVAILABLE, got ${r.state}${r.credentialId ? ` with credential ${r.credentialId}` : ''}`,
          ),
        (e: unknown) => (error = e),
      );
      assert.ok(error instanceof CountersignClientError, String(error));
      assert.equal(error.grpcStatus, status.UNAVAILABLE);
      assert.equal(error.code, 'ERR_AUDIT_NOT_DURABLE');
      assert.match(error.message, /0\/1 replicas acknowledged within 300 ms/);
    }
    const notReady = await readyz();
    assert.equal(notReady.status, 503);
    assert.match(notReady.body.failures?.redis_durability ?? '', /replicas is 1 but the Redis primary has 0 replica/);

    await replica.restart();
    const again = await eventually('calls to succeed once the replica is back', async () => {
      try {
        return await client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: { n: 3 } });
      } catch {
        return undefined;
      }
    });
    assert.equal(again.state, 'APPROVED');
    assert.equal((await readyz()).status, 200);
    assert.equal(broker.child.exitCode, null);
  });
});
