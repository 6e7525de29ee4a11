// Faults approvals must survive, with real processes and real Redis: a broker
// SIGKILLed with requests pending, two replicas deciding at the same instant,
// Redis stopping mid-run, a requester's stream dropping, and expiry on time.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { credentials, Metadata, status, type ClientReadableStream } from '@grpc/grpc-js';
import { BrokerClient, RequestState, type WatchRequestResponse } from '@countersign/proto';
import type { JSONWebKeySet } from 'jose';
import {
  ApprovalsClient,
  CountersignClient,
  CountersignClientError,
  verifyCredential,
  type OperationResult,
} from '@countersign/agent';
import {
  auditEvents,
  CertificateAuthority,
  deleteByPrefix,
  eventually,
  spawnBroker,
  startRedisServer,
  testRedis,
  TcpProxy,
  uniquePrefix,
  writeBrokerFiles,
  type BrokerFiles,
  type BrokerProcess,
  type IssuedSvid,
  type TestRedis,
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
  - name: quick-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "quick/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 2s }
`;
const LIMITS = `requests:
  limits: { max_pending_per_workload: 500, requests_per_second: 1000, burst: 1000 }
`;

interface Audit {
  type: string;
  request_id?: string;
  jti?: string;
}

class Identities {
  private readonly closers: { close(): void }[] = [];
  readonly deployerSvid: IssuedSvid;
  constructor(readonly ca: CertificateAuthority) {
    this.deployerSvid = ca.issueSvid(`spiffe://${TD}/ci/deployer`);
  }
  private options(address: string, svid: IssuedSvid) {
    return { address, certChainPem: svid.chainPem, keyPem: svid.keyPem, caPem: this.ca.pem, timeoutMs: 15_000 };
  }
  deployer(address: string): CountersignClient {
    const c = new CountersignClient(this.options(address, this.deployerSvid));
    this.closers.push(c);
    return c;
  }
  approver(address: string, name: string): ApprovalsClient {
    const c = new ApprovalsClient(this.options(address, this.ca.issueSvid(`spiffe://${TD}/human/${name}`)));
    this.closers.push(c);
    return c;
  }
  /** The generated client, to count exactly what a stream delivers. */
  rawDeployer(address: string): BrokerClient {
    const creds = credentials.createSsl(
      Buffer.from(this.ca.pem),
      Buffer.from(this.deployerSvid.keyPem),
      Buffer.from(this.deployerSvid.chainPem),
      {
        checkServerIdentity: () => undefined,
      },
    );
    const c = new BrokerClient(address, creds, { 'grpc.ssl_target_name_override': TD });
    this.closers.push(c);
    return c;
  }
  close(): void {
    for (const c of this.closers) c.close();
  }
}

const auditRecords = (redis: TestRedis['redis'], prefix: string): Promise<Audit[]> => auditEvents(redis, prefix);

const countBy = (records: Audit[], type: string, id: string) =>
  records.filter((r) => r.type === type && r.request_id === id).length;

async function inBatches<T, R>(items: T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

async function rejection(p: Promise<unknown>): Promise<CountersignClientError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CountersignClientError, String(e));
    return e;
  }
  assert.fail('expected the call to fail');
}

describe('approvals under faults (real broker processes)', () => {
  const ca = CertificateAuthority.createRoot(TD);
  const ids = new Identities(ca);
  let redis: TestRedis;
  const brokers: BrokerProcess[] = [];
  const dirs: string[] = [];

  // Prefixes on the shared Redis, deleted once every broker writing to them has stopped.
  const prefixes: string[] = [];
  const files = async (prefix: string, redisUrl = redis.url): Promise<BrokerFiles> => {
    if (redisUrl === redis.url) prefixes.push(prefix);
    const f = await writeBrokerFiles({ ca, policy: POLICY, redisUrl, prefix, extraConfig: LIMITS });
    dirs.push(f.dir);
    return f;
  };
  const spawn = async (f: BrokerFiles) => {
    const b = await spawnBroker(f.configFile);
    brokers.push(b);
    return b;
  };

  before(async () => {
    redis = await testRedis('faults');
  });
  after(async () => {
    ids.close();
    await Promise.all(brokers.map((b) => b.kill('SIGKILL')));
    for (const prefix of prefixes) await deleteByPrefix(redis.redis, prefix);
    await redis?.cleanup();
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('keeps 100 pending requests through a SIGKILL; after restart each is approvable and delivered once', async () => {
    const prefix = uniquePrefix('sigkill');
    const f = await files(prefix);
    const first = await spawn(f);
    const deployer = ids.deployer(first.address);
    const created = await inBatches(
      Array.from({ length: 100 }, (_, i) => i),
      10,
      (i) => deployer.requestOperation({ operation: 'deploy', resource: `prod/svc-${i}`, parameters: { build: i } }),
    );
    assert.ok(created.every((r) => r.state === 'PENDING_APPROVAL'));
    const pendingIds = created.map((r) => r.requestId).sort();

    await first.kill('SIGKILL');
    const second = await spawn(f);
    const alice = ids.approver(second.address, 'alice');
    assert.deepEqual((await alice.listPending()).map((r) => r.id).sort(), pendingIds);

    // Every requester watches (raw streams, four connections), then alice approves everything.
    const raws = Array.from({ length: 4 }, () => ids.rawDeployer(second.address));
    const delivered = new Map<string, WatchRequestResponse[]>();
    const streams = pendingIds.map((id, i) => {
      const messages: WatchRequestResponse[] = [];
      delivered.set(id, messages);
      const stream: ClientReadableStream<WatchRequestResponse> = (raws[i % 4] as BrokerClient).watchRequest(
        { requestId: id },
        new Metadata(),
      );
      return new Promise<void>((resolve, reject) => {
        stream.on('data', (m: WatchRequestResponse) => messages.push(m));
        stream.on('error', reject);
        stream.on('end', () => resolve());
      });
    });
    await eventually('every stream to show PENDING', () => [...delivered.values()].every((m) => m.length >= 1));
    await inBatches(pendingIds, 10, (id) => alice.decide({ requestId: id, decision: 'approve' }));
    await Promise.all(streams);

    for (const [id, messages] of delivered) {
      const approved = messages.filter((m) => m.request?.state === RequestState.REQUEST_STATE_APPROVED);
      assert.equal(approved.length, 1, `${id} delivered APPROVED once`);
      assert.ok(approved[0]?.credential?.token, `${id} delivered with its credential`);
    }
    const audit = await auditRecords(redis.redis, prefix);
    for (const id of pendingIds) {
      assert.equal(countBy(audit, 'decision', id), 1);
      assert.equal(countBy(audit, 'resolution', id), 1);
      assert.equal(countBy(audit, 'credential_issued', id), 1);
    }
  });

  it('resolves exactly once when two approvers vote at the same instant through two replicas', async () => {
    const prefix = uniquePrefix('replicas');
    const f = await files(prefix);
    const [a, b] = await Promise.all([spawn(f), spawn(f)]);
    const deployerA = ids.deployer(a.address);
    const deployerB = ids.deployer(b.address);
    const aliceOnA = ids.approver(a.address, 'alice');
    const bobOnB = ids.approver(b.address, 'bob');

    for (let round = 0; round < 20; round++) {
      const pending = await deployerA.requestOperation({
        operation: 'deploy',
        resource: 'prod/web',
        parameters: { round },
      });
      const votes = await Promise.allSettled([
        aliceOnA.decide({ requestId: pending.requestId, decision: 'approve' }),
        bobOnB.decide({ requestId: pending.requestId, decision: 'approve' }),
      ]);
      assert.equal(votes.filter((v) => v.status === 'fulfilled').length, 1, `round ${round}: one vote decides`);
      const lost = votes.find((v) => v.status === 'rejected') as PromiseRejectedResult;
      assert.equal((lost.reason as CountersignClientError).code, 'ERR_REQUEST_RESOLVED');

      // The requester collects through both replicas at once: one credential.
      const [viaA, viaB] = await Promise.all([
        deployerA.collect(pending.requestId),
        deployerB.collect(pending.requestId),
      ]);
      assert.equal(viaA.credentialId, viaB.credentialId);
      const audit = await auditRecords(redis.redis, prefix);
      assert.equal(countBy(audit, 'resolution', pending.requestId), 1);
      assert.equal(countBy(audit, 'vote', pending.requestId), 1);
      assert.equal(countBy(audit, 'credential_issued', pending.requestId), 1);
    }
  });

  it('answers UNAVAILABLE while Redis is down, loses nothing pending, and recovers without a restart', async () => {
    const server = await startRedisServer();
    try {
      const prefix = uniquePrefix('redis-down');
      const f = await files(prefix, server.url);
      const broker = await spawn(f);
      const deployer = ids.deployer(broker.address);
      const alice = ids.approver(broker.address, 'alice');
      const issued: string[] = [];
      const allowed = await deployer.requestOperation({ operation: 'deploy', resource: 'staging/web' });
      issued.push(allowed.credentialId as string);
      const pending = await inBatches(
        Array.from({ length: 10 }, (_, i) => i),
        5,
        (i) => deployer.requestOperation({ operation: 'deploy', resource: 'prod/web', parameters: { i } }),
      );
      // One requester keeps watching through the outage.
      const stream = deployer.watch(pending[0]!.requestId);
      assert.equal((await stream.next()).value?.state, 'PENDING_APPROVAL');
      const watched = (async () => {
        let last: OperationResult | undefined;
        for await (const u of stream) last = u;
        return last;
      })();

      await server.stop('SIGKILL');
      for (const attempt of [1, 2, 3]) {
        const e = await rejection(
          deployer.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: { attempt } }),
        );
        assert.equal(e.grpcStatus, status.UNAVAILABLE);
        assert.equal(e.code, 'ERR_REDIS_UNAVAILABLE');
      }
      assert.equal(
        (
          await rejection(
            deployer.requestOperation({ operation: 'deploy', resource: 'prod/web', parameters: { down: true } }),
          )
        ).grpcStatus,
        status.UNAVAILABLE,
      );
      assert.equal(
        (await rejection(alice.decide({ requestId: pending[1]!.requestId, decision: 'approve' }))).grpcStatus,
        status.UNAVAILABLE,
      );
      assert.equal((await fetch(`http://127.0.0.1:${broker.httpPort}/readyz`)).status, 503);
      await server.restart();
      const recovered = await eventually('the broker to answer again', async () => {
        try {
          return await deployer.requestOperation({
            operation: 'deploy',
            resource: 'staging/web',
            parameters: { after: true },
          });
        } catch {
          return undefined;
        }
      });
      assert.equal(recovered.state, 'APPROVED');
      issued.push(recovered.credentialId as string);
      assert.equal(broker.child.exitCode, null, 'the same broker process served before and after');
      assert.equal((await fetch(`http://127.0.0.1:${broker.httpPort}/readyz`)).status, 200);
      const stillPending = (await alice.listPending()).map((r) => r.id).sort();
      assert.deepEqual(stillPending, pending.map((p) => p.requestId).sort());
      for (const p of pending) {
        await alice.decide({ requestId: p.requestId, decision: 'approve' });
        issued.push((await deployer.collect(p.requestId)).credentialId as string);
      }
      const final = await watched;
      assert.equal(final?.state, 'APPROVED');
      assert.ok(final?.token);

      // Every credential that left the broker has its audit record.
      const check = await testRedis('redis-down-check', server.url);
      try {
        const audited = new Set(
          (await auditRecords(check.redis, prefix)).filter((r) => r.type === 'credential_issued').map((r) => r.jti),
        );
        assert.deepEqual(
          issued.filter((jti) => !audited.has(jti)),
          [],
        );
      } finally {
        check.redis.disconnect();
      }
      await broker.kill('SIGTERM');
    } finally {
      await server.destroy();
    }
  });

  it('runs the listeners and the queue workers in separate processes (--role api, --role worker)', async () => {
    const f = await files(uniquePrefix('roles'));
    const api = await spawnBroker(f.configFile, { role: 'api' });
    brokers.push(api);
    const worker = await spawnBroker(f.configFile, { role: 'worker' });
    brokers.push(worker);
    assert.equal((await fetch(`http://127.0.0.1:${worker.httpPort}/readyz`)).status, 200);

    const deployer = ids.deployer(api.address);
    const pending = await deployer.requestOperation({ operation: 'deploy', resource: 'quick/roles' });
    let final: OperationResult | undefined;
    for await (const u of deployer.watch(pending.requestId)) final = u;
    assert.equal(final?.state, 'EXPIRED');
    const expiredBy = (logs: string) =>
      logs.split('\n').some((l) => l.includes('"msg":"request expired"') && l.includes(pending.requestId));
    // The watcher hears of the expiry as it happens; the worker logs it (asynchronously) right after.
    await eventually('the worker process to log that it expired it', () => expiredBy(worker.logs()));
    assert.ok(!expiredBy(api.logs()), 'the API process runs no workers');
    assert.match(
      await (await fetch(`http://127.0.0.1:${worker.httpPort}/metrics`)).text(),
      /countersign_requests_resolved_total\{state="EXPIRED"\} 1/,
    );
  });

  describe('one broker', () => {
    let broker: BrokerProcess;
    let jwks: JSONWebKeySet;
    before(async () => {
      broker = await spawn(await files(uniquePrefix('one')));
      jwks = (await (await fetch(`http://127.0.0.1:${broker.httpPort}/.well-known/jwks.json`)).json()) as JSONWebKeySet;
    });

    it("delivers an approval that happened while the requester's stream was down, once it reconnects", async () => {
      const proxy = await TcpProxy.start(broker.grpcPort);
      try {
        const deployer = ids.deployer(proxy.address);
        const alice = ids.approver(broker.address, 'alice');
        const pending = await deployer.requestOperation({
          operation: 'deploy',
          resource: 'prod/web',
          parameters: { drop: 1 },
        });
        let reconnects = 0;
        const stream = deployer.watch(pending.requestId, { onReconnect: () => reconnects++, maxBackoffMs: 500 });
        assert.equal((await stream.next()).value?.state, 'PENDING_APPROVAL');

        const rest: OperationResult[] = [];
        const consumed = (async () => {
          for await (const u of stream) rest.push(u);
        })();
        proxy.cut();
        await alice.decide({ requestId: pending.requestId, decision: 'approve' });
        await eventually('the watch to notice the drop', () => reconnects > 0);
        assert.equal(rest.length, 0, 'nothing arrives while the connection is down');
        proxy.resume();
        await consumed;
        const final = rest[rest.length - 1];
        assert.equal(final?.state, 'APPROVED');
        const { claims } = await verifyCredential(final?.token as string, {
          jwks,
          audience: `https://deploy.${TD}`,
          clientCertificate: ids.deployerSvid.pem,
        });
        assert.equal(claims.approval?.request_id, pending.requestId);
      } finally {
        await proxy.close();
      }
    });

    it('ends a request with a 2 s timeout EXPIRED within 1 s of its deadline and refuses later votes', async () => {
      const deployer = ids.deployer(broker.address);
      const bob = ids.approver(broker.address, 'bob');
      const pending = await deployer.requestOperation({ operation: 'deploy', resource: 'quick/web' });
      assert.equal(pending.state, 'PENDING_APPROVAL');
      let final: OperationResult | undefined;
      for await (const u of deployer.watch(pending.requestId)) final = u;
      assert.equal(final?.state, 'EXPIRED');
      const request = final?.request;
      const deadline = request?.expiresAt?.getTime() as number;
      const ended = request?.resolvedAt?.getTime() as number;
      assert.equal(deadline - (request?.createdAt?.getTime() as number), 2000);
      assert.ok(ended >= deadline, 'not before the deadline');
      assert.ok(ended - deadline <= 1000, `ended ${ended - deadline} ms after the deadline`);

      const late = await rejection(bob.decide({ requestId: pending.requestId, decision: 'approve' }));
      assert.equal(late.grpcStatus, status.FAILED_PRECONDITION);
      assert.equal(late.code, 'ERR_REQUEST_EXPIRED');
      assert.match(late.message, /expired at .* with 0 of 1 approval\(s\); it no longer accepts votes/);
    });
  });
});
