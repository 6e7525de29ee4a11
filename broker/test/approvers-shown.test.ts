// Who can approve, as people are told: `policy explain` and the "pending" answer leave out
// the requester's own people (separation of duties), and a rule that matches but refuses the
// request (a missing reason) says so instead of "matched; decides".
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CountersignClient } from '@countersign/agent';
import { devPolicy, devPrincipals } from '../src/dev/trust-domain.js';
import { startTestBroker } from './support/index.js';

const bin = fileURLToPath(new URL('../bin/countersign-broker.js', import.meta.url));
const run = (args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 120_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr }),
    );
  });

const REASON_POLICY = `version: 1
rules:
  - name: prod-deploys
    match: { workload: "spiffe://example.org/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, reason_required: true }
`;

describe('who can approve, as explain and the pending answer say', () => {
  let dir: string;
  const explain = (policy: string, extra: string[]) =>
    run([
      'policy',
      'explain',
      '--policy',
      join(dir, policy),
      '--principals',
      join(dir, 'principals.yaml'),
      '--workload',
      'spiffe://example.org/ci/deployer',
      '--operation',
      'deploy',
      '--resource',
      'prod/web',
      ...extra,
    ]);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-approvers-shown-'));
    await writeFile(join(dir, 'policy.yaml'), devPolicy('example.org'));
    await writeFile(join(dir, 'principals.yaml'), devPrincipals('example.org'));
    await writeFile(join(dir, 'reason.yaml'), REASON_POLICY);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('policy explain --on-behalf-of alice names bob only', async () => {
    const out = await explain('policy.yaml', ['--on-behalf-of', 'alice']);
    assert.equal(out.code, 0, out.stderr);
    const decision = out.stdout.split('\n')[0] as string;
    assert.match(
      decision,
      /^decision {2}approve \(rule prod-deploys\): 1 of bob \(not alice: the request is theirs, separation of duties\);/,
    );
    const plain = await explain('policy.yaml', []);
    assert.match(plain.stdout, /^decision {2}approve \(rule prod-deploys\): 1 of alice, bob;/);
  });

  it('a rule whose reason requirement fails is shown refusing, not deciding', async () => {
    const out = await explain('reason.yaml', []);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^decision {2}deny \(rule prod-deploys\): policy rule prod-deploys requires a reason/m);
    assert.match(
      out.stdout,
      /MATCH {2}prod-deploys +approve +matched, but refuses: policy rule prod-deploys requires a reason for deploy on prod\/web/,
    );
    assert.doesNotMatch(out.stdout, /decides/);
  });

  it('the pending answer over gRPC leaves out the person the request is for', async () => {
    const t = await startTestBroker();
    try {
      const svid = t.svid('ci/deployer');
      const client = new CountersignClient({
        address: t.address,
        certChainPem: svid.chainPem,
        keyPem: svid.keyPem,
        caPem: t.ca.pem,
      });
      const pending = await client.requestOperation({ operation: 'deploy', resource: 'prod/web', onBehalfOf: 'alice' });
      const plain = await client.requestOperation({ operation: 'deploy', resource: 'prod/api' });
      client.close();
      assert.equal(pending.state, 'PENDING_APPROVAL');
      assert.equal(
        pending.message,
        'waiting for 1 approval(s) from bob (not alice: the request is theirs, separation of duties)',
      );
      assert.equal(plain.message, 'waiting for 1 approval(s) from alice, bob');
    } finally {
      await t.close();
    }
  });
});
