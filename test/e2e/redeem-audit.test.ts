// The dev-mode story on a real broker: a workload gets a credential, a resource
// server verifies and redeems it once (a second redemption says when and by
// whom), `countersign-broker audit verify` passes, and after one event is edited
// in Redis it names the broken sequence number. Also: no credential leaves the
// broker when its audit record cannot be written.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import type { JSONWebKeySet } from 'jose';
import { CountersignClient, CountersignClientError, verifyCredential } from '@countersign/agent';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
// The bin: dist/ under npm test (fresh, just built), the sources through tsx on its own run.
const brokerCli = join(root, 'broker/bin/countersign-broker.js');

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [brokerCli, ...args], {
      cwd: root,
      env: { ...process.env, REDIS_URL: '' },
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('redeem once, audit verify, tamper detection', () => {
  let t: TestBroker;
  let workload: CountersignClient;
  let resourceServer: CountersignClient;
  let jwks: JSONWebKeySet;

  before(async () => {
    t = await startTestBroker({
      redeemers: [{ audience: 'https://deploy.example.org', workloads: ['spiffe://example.org/svc/deploy-api'] }],
    });
    const deployer = t.svid('ci/deployer');
    const api = t.svid('svc/deploy-api');
    workload = new CountersignClient({
      address: t.address,
      certChainPem: deployer.chainPem,
      keyPem: deployer.keyPem,
      caPem: t.ca.pem,
    });
    resourceServer = new CountersignClient({
      address: t.address,
      certChainPem: api.chainPem,
      keyPem: api.keyPem,
      caPem: t.ca.pem,
    });
    jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
  });
  after(async () => {
    workload?.close();
    resourceServer?.close();
    await t?.close();
  });

  it('redeems a credential once; the second redemption is refused with when and by whom', async () => {
    const result = await workload.requestOperation({
      operation: 'deploy',
      resource: 'staging/web',
      parameters: { version: '1.4.2' },
    });
    const token = result.token as string;
    const audience = `https://deploy.${t.trustDomain}`;
    const first = await verifyCredential(token, {
      jwks,
      audience,
      parameters: { version: '1.4.2' },
      redeem: resourceServer,
    });
    assert.ok(first.redeemedAt instanceof Date);

    await assert.rejects(
      verifyCredential(token, { jwks, audience, redeem: resourceServer }),
      (e: Error & { code: string }) => {
        assert.equal(e.code, 'ERR_CREDENTIAL_ALREADY_REDEEMED');
        assert.match(
          e.message,
          new RegExp(
            `already redeemed at ${first.redeemedAt!.toISOString().replace(/[.]/g, '\\.')} by spiffe://example\\.org/svc/deploy-api`,
          ),
        );
        return true;
      },
    );
    // The requester is no redeemer of its own credential (credentials.redeemers): refused before anything else.
    await assert.rejects(workload.redeemCredential(token), (e: unknown) => {
      assert.ok(e instanceof CountersignClientError);
      assert.equal(e.grpcStatus, status.PERMISSION_DENIED);
      assert.equal(e.code, 'ERR_REDEEMER_NOT_ALLOWED');
      return true;
    });

    const events = (await t.broker.redis.lrange(`${t.prefix}audit:chain`, 0, -1))
      .map((l) => (JSON.parse(l) as { event: Record<string, unknown> }).event)
      .filter((e) => e.type === 'credential_redeemed' && e.jti === result.credentialId);
    assert.deepEqual(
      events.map((e) => [e.outcome, e.by]),
      [
        ['redeemed', 'spiffe://example.org/svc/deploy-api'],
        ['refused', 'spiffe://example.org/svc/deploy-api'],
        ['forbidden', 'spiffe://example.org/ci/deployer'],
      ],
    );
  });

  it('does not hand out a credential whose audit record cannot be appended, and recovers', async () => {
    const head = await t.broker.redis.hgetall(`${t.prefix}audit:head`);
    await t.broker.redis.del(`${t.prefix}audit:head`);
    await assert.rejects(workload.requestOperation({ operation: 'deploy', resource: 'staging/web' }), (e: unknown) => {
      assert.ok(e instanceof CountersignClientError);
      assert.equal(e.grpcStatus, status.INTERNAL);
      return true;
    });
    await t.broker.redis.hset(`${t.prefix}audit:head`, head);
    const ok = await workload.requestOperation({ operation: 'deploy', resource: 'staging/web' });
    assert.equal(ok.state, 'APPROVED');
  });

  it('audit verify passes, then names the sequence number of an edited event; export + offline verify agree', async () => {
    await t.broker.checkpointer.checkpointNow();
    const config = join(t.dir, 'config.yaml');
    const clean = await cli(['audit', 'verify', '--config', config]);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /OK {4}hash chain intact/);
    assert.match(clean.stdout, /OK {4}1 checkpoint\(s\) verified/);

    const key = `${t.prefix}audit:chain`;
    const third = (await t.broker.redis.lindex(key, 2)) as string;
    await t.broker.redis.lset(key, 2, third.replace('staging/web', 'staging/api'));
    const broken = await cli(['audit', 'verify', '--config', config]);
    assert.equal(broken.code, 4, broken.stdout + broken.stderr);
    assert.match(broken.stdout, /FAIL {2}the chain breaks at seq 3\b/);

    const exported = join(t.dir, 'audit.jsonl');
    const exp = await cli(['audit', 'export', '--config', config, '--out', exported]);
    assert.equal(exp.code, 0, exp.stderr);
    const jwksFile = join(t.dir, 'jwks.json');
    const keys = await cli(['keys', 'jwks', '--config', config, '--all']);
    await import('node:fs/promises').then((fs) => fs.writeFile(jwksFile, keys.stdout));
    const offline = await cli(['audit', 'verify', '--file', exported, '--jwks', jwksFile]);
    assert.equal(offline.code, 4, offline.stdout + offline.stderr);
    assert.match(offline.stdout, /the chain breaks at seq 3\b/);

    await t.broker.redis.lset(key, 2, third);
    const restored = await cli(['audit', 'verify', '--config', config]);
    assert.equal(restored.code, 0, restored.stdout);
  });
});

describe('durability', () => {
  it('answers UNAVAILABLE, not a credential, when Redis cannot confirm the configured replicas', async () => {
    const t = await startTestBroker({
      extraConfig: 'audit:\n  durability:\n    wait_replicas: 1\n    timeout: 50ms\n',
    });
    const deployer = t.svid('ci/deployer');
    const client = new CountersignClient({
      address: t.address,
      certChainPem: deployer.chainPem,
      keyPem: deployer.keyPem,
      caPem: t.ca.pem,
    });
    try {
      await assert.rejects(client.requestOperation({ operation: 'deploy', resource: 'staging/web' }), (e: unknown) => {
        assert.ok(e instanceof CountersignClientError);
        assert.equal(e.grpcStatus, status.UNAVAILABLE);
        assert.equal(e.code, 'ERR_AUDIT_NOT_DURABLE');
        return true;
      });
    } finally {
      client.close();
      await t.close();
    }
  });
});
