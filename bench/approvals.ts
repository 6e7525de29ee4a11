// Benchmark: approvals with 10,000 pending requests, on a redis-server of the
// bench's own (no persistence, so other users of the machine's Redis neither
// disturb nor are disturbed). Three figures, each beside a baseline measured in
// the same run:
//   - Redis memory per pending request vs a bare hash holding the same fields;
//   - expiry lateness (end EXPIRED minus deadline) vs a bare BullMQ delayed no-op job;
//   - vote-to-delivery (Decide sent -> the watching requester has its credential)
//     vs a bare Redis PUBLISH -> subscriber round trip. Target p99 <= 50 ms.
// BENCH_APPROVALS_N changes the number of requests (default 10000).
import { Metadata, credentials as grpcCredentials } from '@grpc/grpc-js';
import { Queue, Worker } from 'bullmq';
import { BrokerClient, RequestState, type WatchRequestResponse } from '@countersign/proto';
import { ApprovalsClient, CountersignClient } from '@countersign/agent';
import { connectRedis, startRedisServer, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { fmt, table } from './harness.js';

const TD = 'example.org';
const TIMEOUT_S = 60;
const policy = `version: 1
rules:
  - name: prod-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: ${TIMEOUT_S}s }
`;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function usedMemory(redis: Awaited<ReturnType<typeof connectRedis>>): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1]);
}

/** Bytes the audit chain holds (every element counted: MEMORY USAGE samples only 5 by default). */
async function auditMemory(redis: Awaited<ReturnType<typeof connectRedis>>, prefix: string): Promise<number> {
  return Number(await redis.call('MEMORY', 'USAGE', `${prefix}audit:chain`, 'SAMPLES', '0')) || 0;
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchApprovals(options: { requests: number }): Promise<void> {
  const n = options.requests;
  const server = await startRedisServer({ persistence: 'none' });
  const admin = await connectRedis(server.url);
  let t: TestBroker | undefined;
  try {
    t = await startTestBroker({
      redisUrl: server.url,
      policy,
      extraConfig: `requests:
  limits: { max_pending_per_workload: ${n + 10}, requests_per_second: 100000, burst: 100000 }
`,
    });
    const svid = t.svid('ci/deployer');
    const connect = { address: t.address, certChainPem: svid.chainPem, keyPem: svid.keyPem, caPem: t.ca.pem };
    const deployer = new CountersignClient(connect);
    const aliceSvid = t.svid('human/alice');
    const alice = new ApprovalsClient({ ...connect, certChainPem: aliceSvid.chainPem, keyPem: aliceSvid.keyPem });

    // 1. Memory: n pending requests, everything they hold (hash, indexes, expiry job, outbox, audit excluded).
    const before = await usedMemory(admin);
    const auditBefore = await auditMemory(admin, t.prefix);
    const ids: string[] = [];
    const createdStart = performance.now();
    await pool(
      Array.from({ length: n }, (_, i) => i),
      32,
      async (i) => {
        const r = await deployer.requestOperation({
          operation: 'deploy',
          resource: `prod/service-${i % 50}`,
          parameters: {
            version: `1.${i}.0`,
            replicas: 3,
            image: `registry.example.org/service-${i % 50}@sha256:${'ab'.repeat(32)}`,
          },
          reason: 'release train 42',
        });
        ids.push(r.requestId);
      },
    );
    const createSeconds = (performance.now() - createdStart) / 1000;
    const afterCreate = await usedMemory(admin);
    const auditAfter = await auditMemory(admin, t.prefix);
    const perRequest = (afterCreate - before - (auditAfter - auditBefore)) / n;
    // Baseline: the same fields in bare hashes.
    const sample = await admin.hgetall(`${t.prefix}req:${ids[0]}`);
    const baseBefore = await usedMemory(admin);
    const batch = admin.pipeline();
    for (let i = 0; i < n; i++) batch.hset(`bench-baseline:${i}`, sample);
    await batch.exec();
    const perBareHash = ((await usedMemory(admin)) - baseBefore) / n;
    await pool(
      Array.from({ length: Math.ceil(n / 1000) }, (_, i) => i),
      1,
      async (chunk) => {
        const keys = Array.from(
          { length: Math.min(1000, n - chunk * 1000) },
          (_, j) => `bench-baseline:${chunk * 1000 + j}`,
        );
        if (keys.length > 0) await admin.unlink(...keys);
      },
    );

    // 2. Vote-to-delivery on the newest requests (still pending), one at a time, with n pending around.
    const samples = Math.min(500, Math.floor(n / 5));
    const raw = new BrokerClient(
      t.address,
      grpcCredentials.createSsl(Buffer.from(t.ca.pem), Buffer.from(svid.keyPem), Buffer.from(svid.chainPem), {
        checkServerIdentity: () => undefined,
      }),
      { 'grpc.ssl_target_name_override': TD },
    );
    const voteLatencies: number[] = [];
    for (const id of ids.slice(-samples)) {
      const stream = raw.watchRequest({ requestId: id }, new Metadata());
      let firstSeen!: () => void;
      const first = new Promise<void>((resolve) => (firstSeen = resolve));
      const delivered = new Promise<number>((resolve, reject) => {
        stream.on('data', (m: WatchRequestResponse) => {
          if (m.request?.state === RequestState.REQUEST_STATE_PENDING_APPROVAL) firstSeen();
          if (m.request?.state === RequestState.REQUEST_STATE_APPROVED && m.credential?.token)
            resolve(performance.now());
        });
        stream.on('error', reject);
      });
      await first;
      const sent = performance.now();
      await alice.decide({ requestId: id, decision: 'approve' });
      voteLatencies.push((await delivered) - sent);
    }
    raw.close();
    // Baseline: a bare PUBLISH -> subscriber round trip on the same Redis.
    const subscriber = await connectRedis(server.url);
    const publisher = await connectRedis(server.url);
    await subscriber.subscribe('bench-channel');
    const pubLatencies: number[] = [];
    for (let i = 0; i < samples; i++) {
      const got = new Promise<number>((resolve) => subscriber.once('message', () => resolve(performance.now())));
      const sent = performance.now();
      await publisher.publish('bench-channel', String(i));
      pubLatencies.push((await got) - sent);
    }
    subscriber.disconnect();
    publisher.disconnect();

    // 3. Expiry: the rest reach their deadlines (spread over the creation time); lateness from what Redis recorded.
    const expiring = ids.slice(0, -samples);
    const lastDeadline = Math.max(
      ...(await Promise.all(expiring.slice(-10).map((id) => admin.hget(`${t!.prefix}req:${id}`, 'expires_at')))).map(
        Number,
      ),
    );
    await sleep(Math.max(0, lastDeadline - Date.now()) + 3000);
    const lateness: number[] = [];
    let notExpired = 0;
    for (let i = 0; i < expiring.length; i += 500) {
      const p = admin.pipeline();
      for (const id of expiring.slice(i, i + 500))
        p.hmget(`${t.prefix}req:${id}`, 'state', 'expires_at', 'resolved_at');
      for (const [, fields] of (await p.exec()) ?? []) {
        const [state, expiresAt, resolvedAt] = fields as [string, string, string];
        if (state !== 'EXPIRED') notExpired++;
        else lateness.push(Number(resolvedAt) - Number(expiresAt));
      }
    }
    deployer.close();
    alice.close();
    await t.close();
    t = undefined;

    // Baseline: bare BullMQ delayed no-op jobs, spread over the same time, 16 at a time like the expiry worker.
    const bullLateness: number[] = [];
    const connection = await connectRedis(server.url, { forBullmq: true });
    const producer = await connectRedis(server.url);
    const queue = new Queue('bench-expiry', { connection: producer, prefix: 'bench-bull' });
    const worker = new Worker(
      'bench-expiry',
      async (job) => {
        bullLateness.push(Date.now() - (job.data as { due: number }).due);
      },
      { connection, prefix: 'bench-bull', concurrency: 16 },
    );
    const spreadMs = createSeconds * 1000;
    const start = Date.now() + 2000;
    for (let i = 0; i < expiring.length; i += 500) {
      await queue.addBulk(
        expiring.slice(i, i + 500).map((_, j) => {
          const due = start + Math.floor(((i + j) / expiring.length) * spreadMs);
          return { name: 'expire', data: { due }, opts: { delay: due - Date.now(), removeOnComplete: true } };
        }),
      );
    }
    while (bullLateness.length < expiring.length && Date.now() < start + spreadMs + 60_000) await sleep(200);
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
    connection.disconnect();
    producer.disconnect();

    const rows = [
      {
        figure: 'Redis memory per pending request',
        countersign: `${fmt(perRequest, 0)} B`,
        baseline: `${fmt(perBareHash, 0)} B (bare hash, same fields)`,
        ratio: fmt(perRequest / perBareHash, 2),
      },
      {
        figure: 'expiry lateness p50 / p99',
        countersign: `${fmt(percentile(lateness, 50), 0)} / ${fmt(percentile(lateness, 99), 0)} ms`,
        baseline: `${fmt(percentile(bullLateness, 50), 0)} / ${fmt(percentile(bullLateness, 99), 0)} ms (BullMQ delayed no-op job)`,
        ratio: fmt(percentile(lateness, 99) / Math.max(1, percentile(bullLateness, 99)), 2),
      },
      {
        figure: 'vote-to-delivery p50 / p99',
        countersign: `${fmt(percentile(voteLatencies, 50), 1)} / ${fmt(percentile(voteLatencies, 99), 1)} ms`,
        baseline: `${fmt(percentile(pubLatencies, 50), 2)} / ${fmt(percentile(pubLatencies, 99), 2)} ms (PUBLISH -> subscriber)`,
        ratio: fmt(percentile(voteLatencies, 99) / percentile(pubLatencies, 99), 1),
      },
    ];
    process.stdout.write(
      `\nApprovals: ${n} pending requests (created in ${fmt(createSeconds, 1)} s, ${fmt(n / createSeconds, 0)}/s, 32 concurrent callers)\n`,
    );
    process.stdout.write(
      `(own redis-server without persistence; broker, workers and callers in one process; ${lateness.length} expired, ${notExpired} not expired; ${samples} votes; target vote-to-delivery p99 <= 50 ms)\n`,
    );
    process.stdout.write(`${table(rows)}\n`);
  } finally {
    await t?.close();
    admin.disconnect();
    await server.destroy();
  }
}
