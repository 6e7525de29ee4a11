// Issue 20: a pending request costs at most 2 KiB of Redis (its hash, its expiry job,
// its index entries; the audit chain is not in this budget), measured with MEMORY USAGE
// against the real Redis, and every field approvers and the audit need is still there.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApprovalsClient, CountersignClient } from '@countersign/agent';
import { parametersDigest } from '@countersign/proto';
import { connectRedis, startTestBroker, type TestBroker } from '@countersign/broker/testing';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: prod-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, spiffe_ids: [spiffe://${TD}/human/bob] }
`;
const N = 20;
const BUDGET = 2048;
// The approvals benchmark's request (bench/approvals.ts), with a non-ASCII parameter
// so that the 64-byte pieces of the stored parameters are cut between characters.
const parametersOf = (i: number) => ({
  version: `1.${i}.0`,
  replicas: 3,
  image: `registry.example.org/service-${i % 50}@sha256:${'ab'.repeat(32)}`,
  note: `déploiement ${'é'.repeat(40)} ✓`,
});

describe('memory per pending request (issue 20)', () => {
  let t: TestBroker;
  let admin: Awaited<ReturnType<typeof connectRedis>>;
  let deployer: CountersignClient;
  let alice: ApprovalsClient;

  before(async () => {
    t = await startTestBroker({ policy: POLICY, principals: PRINCIPALS });
    admin = await connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const svid = t.svid('ci/deployer');
    const connect = { address: t.address, certChainPem: svid.chainPem, keyPem: svid.keyPem, caPem: t.ca.pem };
    deployer = new CountersignClient(connect);
    const aliceSvid = t.svid('human/alice');
    alice = new ApprovalsClient({ ...connect, certChainPem: aliceSvid.chainPem, keyPem: aliceSvid.keyPem });
  });
  after(async () => {
    deployer?.close();
    alice?.close();
    admin?.disconnect();
    await t?.close();
  });

  /** Every key under the test's prefix (the audit chain's keys left out) with its MEMORY USAGE. */
  async function usage(): Promise<Map<string, number>> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await admin.scan(cursor, 'MATCH', `${t.prefix}*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...found.filter((k) => !k.startsWith(`${t.prefix}audit:`)));
    } while (cursor !== '0');
    const out = new Map<string, number>();
    for (const k of keys) out.set(k, Number(await admin.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')) || 0);
    return out;
  }

  it(`holds a pending request in at most ${BUDGET} bytes, hashes in their compact encoding`, async () => {
    // One request first, so that the queues and indexes exist before the measurement.
    await deployer.requestOperation({
      operation: 'deploy',
      resource: 'prod/service-warm',
      parameters: parametersOf(999),
      reason: 'warm-up',
    });
    const before = await usage();
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const r = await deployer.requestOperation({
        operation: 'deploy',
        resource: `prod/service-${i}`,
        parameters: parametersOf(i),
        reason: 'release train 42',
      });
      ids.push(r.requestId);
    }
    const after = await usage();
    let added = 0;
    for (const [k, bytes] of after) added += bytes - (before.get(k) ?? 0);
    const perRequest = added / N;
    assert.ok(
      perRequest <= BUDGET,
      `a pending request holds ${perRequest.toFixed(0)} bytes of Redis, more than ${BUDGET}`,
    );
    // Every hash a request added stays a listpack (a hashtable costs about three times as much).
    for (const [k] of after) {
      if (before.has(k) || !ids.some((id) => k.includes(id))) continue;
      if ((await admin.type(k)) !== 'hash') continue;
      assert.equal(await admin.object('ENCODING', k), 'listpack', `${k.slice(t.prefix.length)} is not a listpack`);
    }
  });

  it('gives approvers every field of the request, parameters exactly as canonicalised', async () => {
    const parameters = parametersOf(7);
    const r = await deployer.requestOperation({
      operation: 'deploy',
      resource: 'prod/service-7',
      parameters,
      reason: 'release train 43',
      ticket: 'CHG-7',
      onBehalfOf: 'carol@example.org',
    });
    const seen = (await alice.listPending()).find((p) => p.id === r.requestId);
    assert.ok(seen, 'alice sees the request');
    assert.deepEqual(JSON.parse(seen.parametersJson), parameters);
    assert.equal(seen.parametersDigest, parametersDigest(parameters));
    assert.equal(seen.requester, `spiffe://${TD}/ci/deployer`);
    assert.equal(seen.operation, 'deploy');
    assert.equal(seen.resource, 'prod/service-7');
    assert.equal(seen.reason, 'release train 43');
    assert.equal(seen.ticket, 'CHG-7');
    assert.equal(seen.onBehalfOf, 'carol@example.org');
    assert.equal(seen.rule, 'prod-deploys');
  });
});
