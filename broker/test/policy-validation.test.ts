// A bad policy file is refused with every problem named: file:line:col, the key
// path, what was expected, and the name probably meant.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { YamlValidationError } from '../src/config/yaml-file.js';
import { policyJsonSchemaText } from '../src/policy/json-schema.js';
import { Policy } from '../src/policy/policy.js';
import { runPolicyTests } from '../src/policy/policy-tests.js';
import { Principals } from '../src/policy/principals.js';
import { MAX_POLICY_BYTES, MAX_RULES } from '../src/policy/schema.js';

const principals = Principals.parse(
  `version: 1
principals: [{ name: alice }, { name: bob }, { name: carol }]
groups:
  - { name: sre, members: [bob, carol] }
  - { name: oncall, slack_usergroup: S0ONCALL }
`,
  'principals.yaml',
);

/** The problems, one "where: path: message" line each. */
function problems(text: string, withPrincipals = true): string[] {
  try {
    Policy.parse(text, 'policy.yaml', withPrincipals ? { principals } : {});
  } catch (e) {
    assert.ok(e instanceof YamlValidationError, String(e));
    assert.equal(e.code, 'ERR_POLICY_INVALID');
    return e.message.split('\n');
  }
  return assert.fail('the policy was accepted');
}

const rule = (body: string) => `version: 1\nrules:\n  - name: r\n${body}`;

describe('policy validation', () => {
  it('names unknown keys with file:line:col and the key meant', () => {
    assert.deepEqual(problems(rule('    decision: approve\n    approval:\n      aprovers: [alice]\n')), [
      'policy.yaml:6:7: rule r: approval: unknown key "aprovers" (did you mean "approvers"?)',
    ]);
    assert.deepEqual(problems('version: 1\nrule: []\n'), [
      'policy.yaml:1:1: rules: is required (expected array)',
      'policy.yaml:2:1: unknown key "rule" (did you mean "rules"?)',
    ]);
    assert.deepEqual(problems(rule('    decision: allow\n    match: { operations: deploy }\n')), [
      'policy.yaml:5:14: rule r: match: unknown key "operations" (did you mean "operation"?)',
    ]);
  });

  it('suggests the decision meant and rejects keys that do not apply to it', () => {
    assert.deepEqual(problems(rule('    decision: aprove\n')), [
      'policy.yaml:4:15: rule r: decision: expected one of allow, deny, approve, break_glass, got "aprove" (did you mean "approve"?)',
    ]);
    assert.deepEqual(problems(rule('    decision: approve\n')), [
      'policy.yaml:3:5: rule r: approval: decision approve needs an approval section',
    ]);
    assert.deepEqual(problems(rule('    decision: allow\n    message: no\n    approval: { approvers: [alice] }\n')), [
      'policy.yaml:5:14: rule r: message: message is shown when a rule denies; it does not apply to decision allow',
      'policy.yaml:6:15: rule r: approval: the approval section only applies to decision approve, not allow',
    ]);
    assert.deepEqual(problems(rule('    decision: deny\n    ttl: 5m\n')), [
      'policy.yaml:5:10: rule r: ttl: ttl does not apply to decision deny',
    ]);
    assert.deepEqual(problems(rule('    decision: break_glass\n    break_glass: {}\n')), [
      'policy.yaml:5:18: rule r: break_glass: names nobody: give at least one of approvers or groups',
    ]);
  });

  it('refuses empty approver sets, unknown names, and required beyond the people who could approve', () => {
    assert.deepEqual(problems(rule('    decision: approve\n    approval: { approvers: [] }\n')), [
      'policy.yaml:5:15: rule r: approval: names nobody: give at least one of approvers or groups',
    ]);
    assert.deepEqual(
      problems(
        rule('    decision: approve\n    approval: { approvers: [alcie, sre, alice, alice], groups: [sres, bob] }\n'),
      ),
      [
        'policy.yaml:5:29: rule r: approval.approvers[0]: unknown principal "alcie" (did you mean "alice"?)',
        'policy.yaml:5:36: rule r: approval.approvers[1]: "sre" is a group, not a principal; list it under groups',
        'policy.yaml:5:48: rule r: approval.approvers[3]: "alice" is listed twice',
        'policy.yaml:5:65: rule r: approval.groups[0]: unknown group "sres" (did you mean "sre"?)',
        'policy.yaml:5:71: rule r: approval.groups[1]: "bob" is a principal, not a group; list it under approvers',
      ],
    );
    assert.deepEqual(
      problems(rule('    decision: approve\n    approval: { approvers: [alice, bob], groups: [sre], required: 4 }\n')),
      [
        'policy.yaml:5:67: rule r: approval.required: required is 4 but only 3 distinct people can approve (alice, bob, carol)',
      ],
    );
    assert.deepEqual(
      problems(rule('    decision: approve\n    approval: { approvers: [alice], deny_threshold: 2 }\n')),
      [
        'policy.yaml:5:53: rule r: approval.deny_threshold: deny_threshold is 2 but only 1 distinct person can approve (alice)',
      ],
    );
    // Without a principals file only what the file itself shows is checked; a Slack user group's size is unknown.
    assert.deepEqual(
      problems(rule('    decision: approve\n    approval: { approvers: [alice], required: 2 }\n'), false),
      ['policy.yaml:5:47: rule r: approval.required: required is 2 but only 1 distinct person can approve (alice)'],
    );
    Policy.parse(rule('    decision: approve\n    approval: { groups: [oncall], required: 5 }\n'), 'policy.yaml', {
      principals,
    });
  });

  it('refuses bad globs, SPIFFE ID patterns, trust domains and durations out of range', () => {
    assert.deepEqual(
      problems(
        rule(`    decision: allow
    ttl: 2d
    match:
      workload: [spiffe://Example.org/ci/*, "spiffe://example.org", example.org/ci]
      trust_domain: Example.org
      resource: "prod/[ab]"
      operation: "deploy***"
`),
      ),
      [
        'policy.yaml:5:10: rule r: ttl: duration 2d is out of range: expected between 10s and 24h',
        'policy.yaml:7:18: rule r: match.workload[0]: workload "spiffe://Example.org/ci/*" is not a SPIFFE ID or SPIFFE ID pattern: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
        'policy.yaml:7:45: rule r: match.workload[1]: workload "spiffe://example.org" names a trust domain, not a workload; use trust_domain: example.org, or spiffe://example.org/** for every workload in it',
        'policy.yaml:7:69: rule r: match.workload[2]: workload "example.org/ci" is not a SPIFFE ID or SPIFFE ID pattern: scheme is missing or invalid, expected "spiffe://"',
        'policy.yaml:8:21: rule r: match.trust_domain: "Example.org" is not a trust domain name: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
        'policy.yaml:9:17: rule r: match.resource: bad resource glob "prod/[ab]": character classes and braces are not supported; use "*", "**" or "?"',
        'policy.yaml:10:18: rule r: match.operation: bad operation glob "deploy***": pattern has "***"; use "*" (one segment) or "**" (any depth)',
      ],
    );
    assert.deepEqual(problems(rule('    decision: approve\n    approval: { approvers: [alice], timeout: 500ms }\n')), [
      'policy.yaml:5:46: rule r: approval.timeout: duration 500ms is out of range: expected between 1s and 168h',
    ]);
    assert.deepEqual(problems('version: 1\nsettings: { rate_window: soon, time_zone: Europe/Berln }\nrules: []\n'), [
      'policy.yaml:2:26: settings.rate_window: expected a duration such as "30s", "5m" or "1h", got "soon"',
      'policy.yaml:2:43: settings.time_zone: unknown time zone "Europe/Berln" (did you mean "Europe/Berlin"?); expected an IANA name such as Europe/Berlin or UTC',
    ]);
  });

  it('compiles and type-checks CEL at load, pointing at the column inside the expression', () => {
    const text = `version: 1
rules:
  - name: typo
    decision: allow
    when: request.parameters.n > 3 && request.reson != ""
  - name: types
    decision: allow
    when: |
      request.reason.size() > 3 &&
        caller.svid_age_seconds < "one hour"
  - name: syntax
    decision: allow
    when: "context.hour >= 9 &&"
  - name: not-bool
    decision: allow
    when: request.parameters.force
  - name: unknown-variable
    decision: allow
    when: 'user.name == "x"'
`;
    const lines = text.split('\n');
    const found = problems(text);
    assert.deepEqual(found, [
      'policy.yaml:5:47: rule typo: when: CEL condition does not type-check: No such key: reson',
      'policy.yaml:10:9: rule types: when: CEL condition does not type-check: no such overload: int < string',
      'policy.yaml:13:32: rule syntax: when: CEL condition does not parse: Unexpected token: EOF',
      'policy.yaml:16:11: rule not-bool: when: a condition must be a bool, this one is dyn (a parameter? compare it, e.g. request.parameters.force == true)',
      'policy.yaml:19:12: rule unknown-variable: when: CEL condition does not type-check: Unknown variable: user',
    ]);
    // The columns point at the offending text.
    assert.equal(lines[4]?.slice(46, 51), 'reson');
    assert.equal(lines[12]?.slice(31), '"', 'EOF: just past the expression');
    assert.equal(lines[9]?.slice(8, 14), 'caller');
    assert.equal(lines[18]?.slice(11, 15), 'user');
  });

  it('checks freeze windows, test cases and names', () => {
    assert.deepEqual(
      problems(`version: 1
freeze_windows:
  - { name: xmas, start: "2026-12-24T00:00:00Z", end: "2026-12-20T00:00:00Z" }
  - { name: xmas, start: "2026-12-24", end: "2026-12-28T00:00:00Z" }
rules:
  - { name: a, decision: allow }
  - { name: a, decision: allow }
tests:
  - name: t
    input: { workload: "spiffe://example.org/x", operation: deploy, resource: r }
    expect: { decision: alow }
`),
      [
        'policy.yaml:3:55: freeze_windows[0].end: end must be after start',
        'policy.yaml:4:26: freeze_windows[1].start: expected an RFC 3339 time with a zone, e.g. 2026-12-20T00:00:00Z',
        'policy.yaml:11:25: tests[0].expect.decision: expected one of allow, deny, approve, break_glass, got "alow" (did you mean "allow"?)',
      ],
    );
    assert.deepEqual(
      problems(`version: 1
rules:
  - { name: a, decision: allow }
  - { name: a, decision: allow }
tests:
  - name: t
    input: { workload: "spiffe://example.org/x", operation: deploy, resource: r }
    expect: { decision: allow, rule: b }
`),
      ['policy.yaml:4:13: rules[1].name: rule name "a" is already used by entry 0'],
    );
    assert.deepEqual(
      problems(`version: 1
rules:
  - { name: alpha, decision: allow }
tests:
  - name: t
    input: { workload: "spiffe://example.org/x", operation: deploy, resource: r }
    expect: { decision: allow, rule: aplha }
`),
      ['policy.yaml:7:38: tests[0].expect.rule: no rule is named "aplha" (did you mean "alpha"?)'],
    );
  });

  it('limits the file size and the number of rules', () => {
    const big = `version: 1\nrules: []\n# ${'x'.repeat(MAX_POLICY_BYTES)}\n`;
    assert.deepEqual(problems(big), [
      `policy.yaml: file is ${Buffer.byteLength(big)} bytes, at most ${MAX_POLICY_BYTES} are accepted`,
    ]);
    const many = `version: 1\nrules:\n${Array.from({ length: MAX_RULES + 1 }, (_, i) => `- {name: r${i}, decision: allow}`).join('\n')}\n`;
    assert.deepEqual(problems(many), [`policy.yaml:3:1: rules: a policy has at most ${MAX_RULES} rules`]);
    assert.deepEqual(problems('version: 2\nrules: []\n'), ['policy.yaml:1:10: version: expected version: 1, got 2']);
    assert.deepEqual(problems('- a\n- b\n'), ['policy.yaml: expected a mapping with version and rules']);
  });

  it('publishes a JSON Schema generated from the same schema (regenerate: countersign-broker policy schema > docs/policy.schema.json)', () => {
    const committed = readFileSync(fileURLToPath(new URL('../../docs/policy.schema.json', import.meta.url)), 'utf8');
    assert.equal(committed, policyJsonSchemaText());
    const schema = JSON.parse(committed) as { properties: Record<string, unknown>; required: string[] };
    assert.deepEqual(Object.keys(schema.properties), ['version', 'settings', 'freeze_windows', 'rules', 'tests']);
    assert.deepEqual(schema.required, ['version', 'rules']);
  });
});

describe('docs/policy.md', () => {
  const doc = readFileSync(fileURLToPath(new URL('../../docs/policy.md', import.meta.url)), 'utf8');
  const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string);
  const people = Principals.parse(
    'version: 1\nprincipals: [{ name: alice }, { name: bob }, { name: carol }, { name: dave }]\ngroups: [{ name: sre, members: [carol, dave] }]\n',
    'principals.yaml',
  );

  it('opens with an example policy that is valid and passes its own tests', () => {
    const policy = Policy.parse(blocks[0] as string, 'docs/policy.md', { principals: people });
    assert.equal(policy.ruleCount, 4);
    assert.ok(runPolicyTests(policy, Date.parse('2026-03-02T10:00:00Z')).every((r) => r.passed));
  });

  it('combines the two approve rules of its example as it says', () => {
    const rules = blocks.find((b) => b.includes('name: payments')) as string;
    const policy = Policy.parse(`version: 1\nrules:\n${rules}`, 'docs/policy.md', { principals: people });
    const spiffeId = 'spiffe://example.org/ci/deployer';
    const d = policy.evaluate({
      workload: {
        spiffeId,
        trustDomain: 'example.org',
        path: '/ci/deployer',
        notBefore: 0,
        notAfter: Date.parse('2030-01-01'),
        serial: '01',
      },
      operation: 'deploy',
      resource: 'prod/payments',
      parameters: {},
      reason: '',
      ticket: '',
      onBehalfOf: '',
      now: Date.parse('2026-03-02T10:00:00Z'),
    });
    assert.ok(d.effect === 'approve');
    assert.deepEqual(
      [d.approval.required, d.approval.approvers, d.approval.timeoutMs, d.approval.stepUp, d.ttlMs],
      [2, ['bob', 'carol'], 1800_000, 'confirm', 300_000],
    );
  });
});
