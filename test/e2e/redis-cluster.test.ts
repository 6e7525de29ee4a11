// Redis Cluster (issue 19, docs/operations.md): the broker on a 3-primary cluster made
// with `redis-cli --cluster create`, every key under the prefix's hash tag. The core of
// the approvals flow runs against it (allowed requests, approval requests with a vote
// and a watching requester, expiry by a BullMQ delayed job), also while the slot that
// holds every key, the queues' included, is migrated to another node key by key
// (MOVED/ASK/TRYAGAIN answered by the cluster client). Then every credential received
// is audited and `audit verify --config` (through the cluster) passes.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { ApprovalsClient, CountersignClient, CountersignClientError, type OperationResult } from '@countersign/agent';
import { status } from '@grpc/grpc-js';
import {
  auditEvents,
  CertificateAuthority,
  eventually,
  spawnBroker,
  startRedisCluster,
  writeBrokerFiles,
  type BrokerFiles,
  type BrokerProcess,
  type IssuedSvid,
  type RedisCluster,
} from '@countersign/broker/testing';
import { BROKER_BIN, LIMITS, TD, topologyPolicy } from './support/redis-topology.js';

const POLICY = topologyPolicy('2s');
const RETRY = { attempts: 100, initialBackoffMs: 50, maxBackoffMs: 200 };

describe('Redis Cluster', () => {
  const ca = CertificateAuthority.createRoot(TD);
  const deployerSvid: IssuedSvid = ca.issueSvid(`spiffe://${TD}/ci/deployer`);
  const aliceSvid: IssuedSvid = ca.issueSvid(`spiffe://${TD}/human/alice`);
  const closers: { close(): void }[] = [];
  const options = (address: string, svid: IssuedSvid) => ({
    address,
    certChainPem: svid.chainPem,
    keyPem: svid.keyPem,
    caPem: ca.pem,
    timeoutMs: 10_000,
    retry: RETRY,
  });
  // One hash tag for the whole keyspace: every key of this broker lives in one slot.
  const prefix = `{cs-test-${randomBytes(4).toString('hex')}}:`;
  let cluster: RedisCluster;
  let files: BrokerFiles;
  let broker: BrokerProcess;
  let deployer: CountersignClient;
  let alice: ApprovalsClient;
  const issued = new Set<string>();

  before(async () => {
    cluster = await startRedisCluster();
    files = await writeBrokerFiles({
      ca,
      policy: POLICY,
      redisUrl: 'redis://127.0.0.1:6379',
      prefix,
      extraConfig: LIMITS,
      redisExtra: `  cluster:\n    nodes: [${cluster.nodes.join(', ')}]\n`,
    });
    broker = await spawnBroker(files.configFile);
    deployer = new CountersignClient(options(broker.address, deployerSvid));
    alice = new ApprovalsClient(options(broker.address, aliceSvid));
    closers.push(deployer, alice);
  });
  after(async () => {
    for (const c of closers) c.close();
    await broker?.kill('SIGKILL');
    await cluster?.destroy();
    if (files) await rm(files.dir, { recursive: true, force: true });
  });

  /** One approval: requested, watched by the requester, approved by alice; returns the credential id. */
  const approval = async (n: number): Promise<string> => {
    const pending = await deployer.request({ operation: 'deploy', resource: 'prod/web', parameters: { n } });
    assert.equal(pending.state, 'PENDING_APPROVAL');
    const watched = deployer.waitForApproval(pending, { pollIntervalMs: 200 });
    for (;;) {
      try {
        await alice.decide({ requestId: pending.requestId, decision: 'approve' });
        break;
      } catch (e) {
        if (e instanceof CountersignClientError && e.code === 'ERR_REQUEST_RESOLVED') break;
        if (!(e instanceof CountersignClientError && e.grpcStatus === status.UNAVAILABLE)) throw e;
        // Retry pacing while the cluster is unavailable (a client's back-off), not a wait for an event.
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    const final: OperationResult = await watched;
    assert.equal(final.state, 'APPROVED');
    return final.credentialId as string;
  };

  it('runs the approvals core on a 3-primary cluster: allow, approve while watching, expire', async () => {
    const allowed = await deployer.request({ operation: 'deploy', resource: 'staging/web' });
    assert.equal(allowed.state, 'APPROVED');
    issued.add(allowed.credentialId as string);
    issued.add(await approval(0));
    const quick = await deployer.request({ operation: 'deploy', resource: 'quick/web' });
    const expired = await deployer.waitForApproval(quick);
    assert.equal(expired.state, 'EXPIRED', 'the expiry job (a BullMQ delayed job on the cluster) fired');
  });

  it("keeps serving while the slot of every key (the queues' included) migrates to another node", async () => {
    const before = await cluster.ownerOf(prefix);
    let stop = false;
    let failures = 0;
    const loop = async (fn: (n: number) => Promise<string>) => {
      for (let n = 1; !stop; n++) {
        try {
          issued.add(await fn(n));
        } catch (e) {
          failures++;
          // What the broker logged about it (an INTERNAL answer names only an id).
          process.stderr.write(
            `${broker
              .logs()
              .split('\n')
              .filter((l) => /"level":(50|60)/.test(l))
              .join('\n')}\n`,
          );
          throw e;
        }
      }
    };
    const allowLoop = loop(
      async (n) =>
        (await deployer.request({ operation: 'deploy', resource: 'staging/web', parameters: { n } }))
          .credentialId as string,
    );
    const approvalLoop = loop(approval);
    await eventually('traffic before the migration', () => issued.size >= 10, 30_000, 20);
    const migration = await cluster.migrateSlotOf(prefix, { batch: 5, pauseMs: 20 });
    assert.equal(migration.slot, before.slot);
    assert.ok(migration.keys > 10, `migrated ${migration.keys} keys`);
    assert.notEqual((await cluster.ownerOf(prefix)).port, before.port, 'the slot moved');
    const afterMigration = issued.size;
    await eventually('traffic after the migration', () => issued.size >= afterMigration + 10, 30_000, 20);
    stop = true;
    await Promise.all([allowLoop, approvalLoop]);
    assert.equal(failures, 0);

    const redis = await cluster.connect();
    try {
      const records = (await auditEvents(redis, prefix)) as { type: string; jti?: string }[];
      const audited = new Set(records.filter((r) => r.type === 'credential_issued').map((r) => r.jti));
      assert.deepEqual(
        [...issued].filter((jti) => !audited.has(jti)),
        [],
        'every credential received is audited',
      );
    } finally {
      redis.disconnect();
    }
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
    process.stderr.write(
      `cluster: slot ${migration.slot} (${migration.keys} keys) moved from :${migration.from} to :${migration.to} under load; ${issued.size} credentials, all audited\n`,
    );
  });
  it('waits for the replica of the node that serves the slot (redis.durability), and fails closed without it', async () => {
    const { port } = await cluster.ownerOf(prefix);
    const replica = await cluster.addReplica(port);
    // Another deployment's keys under the same hash tag: the same slot, the same node.
    const durable = await writeBrokerFiles({
      ca,
      policy: POLICY,
      redisUrl: 'redis://127.0.0.1:6379',
      prefix: `${prefix}durable:`,
      extraConfig: LIMITS,
      redisExtra: `  cluster:\n    nodes: [${cluster.nodes.join(', ')}]\n  durability: { replicas: 1, timeout: 500ms }\n`,
    });
    const second = await spawnBroker(durable.configFile);
    try {
      const client = new CountersignClient({ ...options(second.address, deployerSvid), retry: { attempts: 1 } });
      closers.push(client);
      // WAIT on any other primary (none has a replica) would count 0: this one counts the slot's replica.
      const allowed = await client.requestOperation({ operation: 'deploy', resource: 'staging/web' });
      assert.equal(allowed.state, 'APPROVED');
      assert.equal((await fetch(`http://127.0.0.1:${second.httpPort}/readyz`)).status, 200);

      await replica.stop('SIGKILL');
      await assert.rejects(
        client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: { n: 1 } }),
        (e: CountersignClientError) => {
          assert.equal(e.grpcStatus, 14);
          assert.equal(e.code, 'ERR_AUDIT_NOT_DURABLE');
          return true;
        },
      );
      const notReady = await fetch(`http://127.0.0.1:${second.httpPort}/readyz`);
      assert.equal(notReady.status, 503);
      assert.match(
        JSON.stringify(await notReady.json()),
        /redis_durability.*replicas is 1 but the Redis primary has 0 replica/,
      );
    } finally {
      await second.kill('SIGKILL');
      await rm(durable.dir, { recursive: true, force: true });
    }
  });
});
