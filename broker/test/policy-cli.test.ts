// `countersign-broker policy check|explain|schema` as a user runs them: the real
// binary, files on disk, exit codes and what is printed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { devPolicy, devPrincipals } from '../src/dev/trust-domain.js';

const bin = fileURLToPath(new URL('../bin/countersign-broker.js', import.meta.url));

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

describe('countersign-broker policy', () => {
  let dir: string;
  const file = (name: string) => join(dir, name);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-policy-cli-'));
    await writeFile(file('policy.yaml'), devPolicy('example.org'));
    await writeFile(file('principals.yaml'), devPrincipals('example.org'));
    await writeFile(
      file('broken.yaml'),
      `version: 1
rules:
  - name: prod
    match: { operation: deploy, resource: "prod/[a]" }
    when: request.reson != ""
    decision: approve
    approval:
      aprovers: [alice]
`,
    );
    await writeFile(
      file('unknown-approver.yaml'),
      `version: 1
rules:
  - name: prod
    when: request.reson != ""
    decision: approve
    approval: { approvers: [alcie], required: 1 }
`,
    );
    await writeFile(
      file('failing.yaml'),
      devPolicy('example.org').replace(
        'expect: { decision: deny, rule: null }\n  - name: other',
        'expect: { decision: allow }\n  - name: other',
      ),
    );
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('check: validates the dev policy and runs its tests, exit 0', async () => {
    const r = await run(['policy', 'check', file('policy.yaml'), '--principals', file('principals.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /policy\.yaml: valid, 3 rule\(s\), 5 test\(s\), sha256:[0-9a-f]{64}/);
    assert.match(
      r.stdout,
      /ok {4}a prod deploy needs one approval from alice or bob\n {8}approve \(rule prod-deploys\): 1 of alice, bob/,
    );
    assert.match(r.stdout, /^tests: 5 passed, 0 failed$/m);
  });

  it('check: a broken file exits 3 with every problem at file:line:col', async () => {
    const r = await run(['policy', 'check', file('broken.yaml')]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /broken\.yaml:4:43: rule prod: match\.resource: bad resource glob "prod\/\[a\]"/);
    assert.match(
      r.stderr,
      /broken\.yaml:8:7: rule prod: approval: unknown key "aprovers" \(did you mean "approvers"\?\)/,
    );
    const names = await run([
      'policy',
      'check',
      file('unknown-approver.yaml'),
      '--principals',
      file('principals.yaml'),
    ]);
    assert.equal(names.code, 3);
    assert.match(
      names.stderr,
      /unknown-approver\.yaml:4:19: rule prod: when: CEL condition does not type-check: No such key: reson/,
    );
    assert.match(
      names.stderr,
      /unknown-approver\.yaml:6:29: rule prod: approval\.approvers\[0\]: unknown principal "alcie" \(did you mean "alice"\?\)/,
    );
  });

  it('check: a failing test case exits 4 and says what differed', async () => {
    const r = await run(['policy', 'check', file('failing.yaml')]);
    assert.equal(r.code, 4);
    assert.match(r.stdout, /\(approver and group names not checked: pass --principals FILE\)/);
    assert.match(r.stdout, /FAIL {2}anything else is denied\n {8}decision: expected allow, got deny/);
    assert.match(r.stdout, /^tests: 4 passed, 1 failed$/m);
    const json = await run(['policy', 'check', file('failing.yaml'), '--output', 'json']);
    assert.equal(json.code, 4);
    const report = JSON.parse(json.stdout) as { tests: { name: string; passed: boolean }[] };
    assert.deepEqual(
      report.tests.filter((t) => !t.passed).map((t) => t.name),
      ['anything else is denied'],
    );
  });

  it('explain: prints the decision, the deciding rule and why each other rule did not match', async () => {
    const r = await run([
      'policy',
      'explain',
      '--policy',
      file('policy.yaml'),
      '--principals',
      file('principals.yaml'),
      '--workload',
      'spiffe://example.org/ci/deployer',
      '--operation',
      'deploy',
      '--resource',
      'prod/web',
      '--param',
      'version=1.4.2',
      '--on-behalf-of',
      'carol',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(
      lines[0],
      'decision  approve (rule prod-deploys): 1 of alice, bob; step-up click, timeout 15m, ttl 5m',
    );
    assert.match(
      r.stdout,
      /request {3}spiffe:\/\/example\.org\/ci\/deployer deploy prod\/web \{"version":"1\.4\.2"\} on behalf of carol/,
    );
    assert.match(r.stdout, /^ {2}no {5}staging-deploys {2}allow {4}resource "prod\/web" does not match staging\/\*$/m);
    assert.match(r.stdout, /^ {2}MATCH {2}prod-deploys {5}approve {2}matched; decides$/m);

    const denied = await run([
      'policy',
      'explain',
      '--policy',
      file('policy.yaml'),
      '--workload',
      'spiffe://example.org/ci/deployer',
      '--operation',
      'drop-table',
      '--resource',
      'prod/orders',
      '--output',
      'json',
    ]);
    assert.equal(denied.code, 0, denied.stderr);
    const explained = JSON.parse(denied.stdout) as {
      decision: { effect: string; rule: null };
      rules: { rule: string; matched: boolean; detail: string }[];
    };
    assert.deepEqual(explained.decision.effect, 'deny');
    assert.deepEqual(
      explained.rules.map((x) => x.detail),
      [
        'operation "drop-table" does not match deploy',
        'operation "drop-table" does not match deploy',
        'operation "drop-table" does not match db-migrate',
      ],
    );
  });

  it('explain: a malformed input is a usage error (exit 2)', async () => {
    const r = await run([
      'policy',
      'explain',
      '--policy',
      file('policy.yaml'),
      '--workload',
      'ci/deployer',
      '--operation',
      'deploy',
      '--resource',
      'prod/web',
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--workload: spiffeid: scheme is missing or invalid/);
    const param = await run([
      'policy',
      'explain',
      '--policy',
      file('policy.yaml'),
      '--workload',
      'spiffe://example.org/x',
      '--operation',
      'deploy',
      '--resource',
      'prod/web',
      '--param',
      'n:=nope',
    ]);
    assert.equal(param.code, 2);
    assert.match(param.stderr, /--param n:=nope: the value after ":=" must be JSON/);
  });

  it('schema: prints the JSON Schema published in docs/', async () => {
    const r = await run(['policy', 'schema']);
    assert.equal(r.code, 0);
    assert.equal(
      r.stdout,
      await readFile(fileURLToPath(new URL('../../docs/policy.schema.json', import.meta.url)), 'utf8'),
    );
  });
});
