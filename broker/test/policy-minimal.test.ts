import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { devPolicy } from '../src/dev/trust-domain.js';
import { YamlValidationError } from '../src/config/yaml-file.js';
import { Policy } from '../src/policy/policy.js';

const workload = (spiffeId: string) => {
  const [trustDomain, ...path] = spiffeId.slice('spiffe://'.length).split('/');
  return { spiffeId, trustDomain: trustDomain as string, path: `/${path.join('/')}`, notBefore: 0, notAfter: Date.now() + 3600_000, serial: '01' };
};
const request = { parameters: {}, reason: '', ticket: '', onBehalfOf: '', now: Date.now() };

describe('policy (minimal)', () => {
  const policy = Policy.parse(devPolicy('example.org'), 'policy.yaml');

  it('allows staging deploys from CI without approval', () => {
    const d = policy.evaluate({ ...request, workload: workload('spiffe://example.org/ci/deployer'), operation: 'deploy', resource: 'staging/web' });
    assert.equal(d.effect, 'allow');
    assert.equal(d.rule, 'staging-deploys');
  });

  it('requires approval for prod deploys', () => {
    const d = policy.evaluate({ ...request, workload: workload('spiffe://example.org/ci/deployer'), operation: 'deploy', resource: 'prod/web' });
    assert.equal(d.effect, 'approve');
    assert.ok(d.effect === 'approve' && d.approval.required === 1 && d.approval.approvers.includes('alice'));
  });

  it('denies by default: other operations, other workloads, other trust domains, nested resources', () => {
    for (const [id, op, res] of [
      ['spiffe://example.org/ci/deployer', 'drop-table', 'prod/orders'],
      ['spiffe://example.org/web/frontend', 'deploy', 'staging/web'],
      ['spiffe://other.org/ci/deployer', 'deploy', 'staging/web'],
      ['spiffe://example.org/ci/deployer', 'deploy', 'staging/eu/web'],
    ] as const) {
      const d = policy.evaluate({ ...request, workload: workload(id), operation: op, resource: res });
      assert.equal(d.effect, 'deny', `${id} ${op} ${res}`);
      assert.equal(d.rule, null);
    }
  });

  it('lets deny override allow', () => {
    const p = Policy.parse(
      `version: 1
rules:
  - name: all
    decision: allow
  - name: no-prod
    match: { resource: "prod/**" }
    decision: deny
    message: prod is frozen
`,
      'p.yaml',
    );
    const d = p.evaluate({ ...request, workload: workload('spiffe://example.org/x'), operation: 'deploy', resource: 'prod/eu/web' });
    assert.deepEqual(d, { effect: 'deny', rule: 'no-prod', message: 'prod is frozen' });
  });

  it('reports file:line:col and suggests the key meant', () => {
    assert.throws(
      () =>
        Policy.parse(
          `version: 1
rules:
  - name: prod
    decision: approve
    approval:
      aprovers: [alice]
`,
          'policy.yaml',
        ),
      (e: unknown) => {
        assert.ok(e instanceof YamlValidationError);
        assert.equal(e.code, 'ERR_POLICY_INVALID');
        assert.match(e.message, /policy\.yaml:6:7: rules\[0\]\.approval: unknown key "aprovers" \(did you mean "approvers"\?\)/);
        return true;
      },
    );
  });

  it('refuses required larger than the approver set', () => {
    assert.throws(
      () => Policy.parse('version: 1\nrules:\n  - name: r\n    decision: approve\n    approval: { approvers: [alice], required: 2 }\n', 'p.yaml'),
      /required is larger than the number of distinct approvers/,
    );
  });
});
