// Policy hot reload and the request-rate fact, against a real broker (mTLS gRPC,
// real Redis): a valid change is audited with its digest and then decides; an
// invalid one is refused, logged and counted, and the previous policy stays.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { CountersignClient } from '@countersign/agent';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { devPolicy } from '../../broker/src/dev/trust-domain.js';
import { createLogger } from '../../broker/src/observability/logger.js';

const digestOf = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('policy hot reload', () => {
  let t: TestBroker;
  let client: CountersignClient;
  const logLines: Record<string, unknown>[] = [];

  const auditEvents = () => t.auditEvents();
  const reloadFailures = async () =>
    (await t.broker.metrics.reloadFailures.get()).values.find((v) => v.labels.kind === 'policy')?.value ?? 0;
  const policyFile = () => join(t.dir, 'policy.yaml');
  /** Replaces the file the way editors and ConfigMaps do: write aside, then rename. */
  const replacePolicy = async (text: string) => {
    await writeFile(`${policyFile()}.tmp`, text);
    await rename(`${policyFile()}.tmp`, policyFile());
  };

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n'))
          if (line.trim() !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    t = await startTestBroker({ overrides: { logger: createLogger({ level: 'info', destination: sink }) } });
    const deployer = t.svid('ci/deployer');
    client = new CountersignClient({
      address: t.address,
      certChainPem: deployer.chainPem,
      keyPem: deployer.keyPem,
      caPem: t.ca.pem,
    });
  });
  after(async () => {
    client?.close();
    await t?.close();
  });

  it('swaps in a valid change, audits it with the new digest, and decides with it', async () => {
    const before = t.broker.policies.current.digest;
    assert.equal(before, digestOf(await readFile(policyFile(), 'utf8')));
    assert.equal((await client.requestOperation({ operation: 'read', resource: 'logs/web' })).state, 'DENIED');

    const text = `${devPolicy(t.trustDomain)}\n`.replace(
      'rules:\n',
      `rules:\n  - name: read-logs\n    match: { operation: read, resource: "logs/*" }\n    decision: allow\n    ttl: 1m\n\n`,
    );
    await replacePolicy(text);
    const outcome = await t.broker.policies.reload('manual');
    assert.deepEqual(outcome, { status: 'reloaded', digest: digestOf(text), previousDigest: before });
    assert.equal(t.broker.policies.current.digest, digestOf(text));

    const reloaded = (await auditEvents()).filter((e) => e.type === 'policy_reload');
    assert.equal(reloaded.length, 1);
    assert.equal(reloaded[0]?.policy_digest, digestOf(text));
    assert.equal(reloaded[0]?.previous_digest, before);
    assert.equal(reloaded[0]?.rules, 4);

    const result = await client.requestOperation({ operation: 'read', resource: 'logs/web' });
    assert.equal(result.state, 'APPROVED');
    assert.equal(result.rule, 'read-logs');
    const decision = (await auditEvents()).find((e) => e.type === 'decision' && e.request_id === result.requestId);
    assert.equal(decision?.policy_digest, digestOf(text));
    assert.equal(decision?.rule, 'read-logs');

    // Reading the same file again changes nothing and records nothing.
    assert.equal((await t.broker.policies.reload('manual')).status, 'unchanged');
    assert.equal((await auditEvents()).filter((e) => e.type === 'policy_reload').length, 1);
  });

  it('keeps the previous policy when the new file is invalid, and logs and counts it once', async () => {
    const inForce = t.broker.policies.current.digest;
    const failuresBefore = await reloadFailures();
    await replacePolicy('version: 1\nrules:\n  - name: broken\n    decision: alow\n');
    const outcome = await t.broker.policies.reload('manual');
    assert.equal(outcome.status, 'rejected');
    assert.equal(outcome.status === 'rejected' && (outcome.error as { code?: string }).code, 'ERR_POLICY_INVALID');
    assert.equal(t.broker.policies.current.digest, inForce);
    assert.equal(await reloadFailures(), failuresBefore + 1);
    const logged = logLines.find((l) => typeof l.msg === 'string' && l.msg.includes('policy reload rejected'));
    assert.ok(logged, 'the rejection is logged');
    assert.match(
      String(logged.msg),
      /policy\.yaml:4:15: rule broken: decision: expected one of allow, deny, approve, break_glass, got "alow" \(did you mean "allow"\?\)/,
    );
    assert.equal(logged.level, 50);

    // Polling the same bad file again neither recounts nor relogs it.
    assert.equal((await t.broker.policies.reload('poll')).status, 'rejected');
    assert.equal(await reloadFailures(), failuresBefore + 1);
    // Requests are still decided by the policy in force.
    assert.equal((await client.requestOperation({ operation: 'read', resource: 'logs/api' })).state, 'APPROVED');
  });

  it('refuses a policy whose own tests fail', async () => {
    const inForce = t.broker.policies.current.digest;
    await replacePolicy(
      devPolicy(t.trustDomain).replace(
        'expect: { decision: allow, rule: staging-deploys, ttl: 10m }',
        'expect: { decision: deny }',
      ),
    );
    const outcome = await t.broker.policies.reload('manual');
    assert.equal(outcome.status === 'rejected' && (outcome.error as { code?: string }).code, 'ERR_POLICY_TESTS_FAILED');
    assert.match(
      outcome.status === 'rejected' ? outcome.error.message : '',
      /test "CI deploys to staging without approval": decision: expected deny, got allow/,
    );
    assert.equal(t.broker.policies.current.digest, inForce);
  });

  it('notices a changed file on its own (watch, with polling as the fallback)', async () => {
    const text = `${devPolicy(t.trustDomain)}# edited at ${Date.now()}\n`;
    await replacePolicy(text);
    await until('the watcher to swap in the new policy', () =>
      t.broker.policies.current.digest === digestOf(text) ? true : undefined,
    );
    const reloaded = (await auditEvents()).filter((e) => e.type === 'policy_reload');
    assert.equal(reloaded.at(-1)?.policy_digest, digestOf(text));
    assert.ok(['watch', 'poll'].includes(String(reloaded.at(-1)?.trigger)));
  });
});

describe('context.request_rate from Redis', () => {
  let t: TestBroker;

  before(async () => {
    t = await startTestBroker({
      policy: `version: 1
settings: { rate_window: 1h }
rules:
  - name: scans
    match: { operation: scan }
    when: context.request_rate <= 2
    decision: allow
`,
    });
  });
  after(async () => t?.close());

  it("counts each caller's requests in Redis and lets the condition see them", async () => {
    const clientFor = (path: string) => {
      const svid = t.svid(path);
      return new CountersignClient({
        address: t.address,
        certChainPem: svid.chainPem,
        keyPem: svid.keyPem,
        caPem: t.ca.pem,
      });
    };
    const scanner = clientFor('ci/scanner');
    const other = clientFor('ci/other');
    try {
      const states = [];
      for (let i = 0; i < 3; i++)
        states.push((await scanner.requestOperation({ operation: 'scan', resource: 'repo/web' })).state);
      assert.deepEqual(states, ['APPROVED', 'APPROVED', 'DENIED']);
      assert.equal(
        (await other.requestOperation({ operation: 'scan', resource: 'repo/web' })).state,
        'APPROVED',
        'counted per caller',
      );
      const keys = await t.broker.redis.keys(`${t.prefix}rate:*`);
      assert.equal(keys.length, 2);
      const counts = await Promise.all(keys.map((k) => t.broker.redis.zcard(k)));
      assert.deepEqual(counts.sort(), [1, 3]);
      for (const k of keys) assert.ok((await t.broker.redis.pttl(k)) > 0, 'the window expires');
    } finally {
      scanner.close();
      other.close();
    }
  });
});
