// What a policy decides, rule by rule: the semantics docs/policy.md promises.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { devPolicy, devPrincipals } from '../src/dev/trust-domain.js';
import type { JsonObject } from '@countersign/proto';
import type { Decision, PolicyInput } from '../src/policy/decision.js';
import { Policy } from '../src/policy/policy.js';
import { runPolicyTests } from '../src/policy/policy-tests.js';
import { Principals } from '../src/policy/principals.js';

const NOW = Date.parse('2026-03-02T10:30:00Z'); // a Monday

function input(spiffeId: string, operation: string, resource: string, extra: Partial<PolicyInput> = {}): PolicyInput {
  const [trustDomain, ...path] = spiffeId.slice('spiffe://'.length).split('/');
  return {
    workload: {
      spiffeId,
      trustDomain: trustDomain as string,
      path: `/${path.join('/')}`,
      notBefore: NOW - 60_000,
      notAfter: NOW + 3600_000,
      serial: '01',
    },
    operation,
    resource,
    parameters: {},
    reason: '',
    ticket: '',
    onBehalfOf: '',
    now: NOW,
    requestRate: 1,
    ...extra,
  };
}

const principals = Principals.parse(
  `version: 1
principals:
  - { name: alice, spiffe_ids: [spiffe://example.org/human/alice], email: alice@example.org }
  - { name: bob }
  - { name: carol }
  - { name: dave }
groups:
  - { name: sre, members: [carol, dave] }
  - { name: dba, members: [alice, carol] }
  - { name: oncall, slack_usergroup: S0ONCALL }
`,
  'principals.yaml',
);

const policy = (rules: string, extra = '') =>
  Policy.parse(`version: 1\n${extra}rules:\n${rules}`, 'policy.yaml', { principals });
const ci = 'spiffe://example.org/ci/deployer';

function approval(d: Decision) {
  assert.equal(d.effect, 'approve', JSON.stringify(d));
  return d.effect === 'approve' ? d : assert.fail();
}

describe('policy semantics', () => {
  it('expresses the dev example: staging allowed, prod needs alice or bob, the rest denied', () => {
    const dev = Policy.parse(devPolicy('example.org'), 'policy.yaml', {
      principals: Principals.parse(devPrincipals('example.org'), 'principals.yaml'),
    });
    assert.deepEqual(dev.evaluate(input(ci, 'deploy', 'staging/web')), {
      effect: 'allow',
      rule: 'staging-deploys',
      ttlMs: 600_000,
    });
    const prod = approval(dev.evaluate(input(ci, 'deploy', 'prod/web')));
    assert.deepEqual(
      [prod.rule, prod.approval.approvers, prod.approval.required, prod.approval.timeoutMs, prod.ttlMs],
      ['prod-deploys', ['alice', 'bob'], 1, 900_000, 300_000],
    );
    for (const [id, op, res] of [
      [ci, 'drop-table', 'prod/orders'],
      ['spiffe://example.org/web/frontend', 'deploy', 'staging/web'],
      ['spiffe://other.org/ci/deployer', 'deploy', 'staging/web'],
      [ci, 'deploy', 'staging/eu/web'],
    ] as const) {
      const d = dev.evaluate(input(id, op, res));
      assert.equal(d.effect, 'deny', `${id} ${op} ${res}`);
      assert.equal(d.rule, null);
    }
    assert.ok(runPolicyTests(dev, NOW).every((r) => r.passed));
  });

  it('lets deny override everything, whatever the order of the rules', () => {
    const p = policy(`  - { name: all, decision: allow }
  - { name: glass, decision: break_glass, break_glass: { approvers: [alice] } }
  - { name: prod-approve, match: { resource: "*/**" }, decision: approve, approval: { approvers: [alice] } }
  - { name: frozen, match: { resource: "prod/**" }, decision: deny, message: prod is frozen }
`);
    assert.deepEqual(p.evaluate(input(ci, 'deploy', 'prod/eu/web', { reason: 'incident' })), {
      effect: 'deny',
      rule: 'frozen',
      message: 'prod is frozen',
    });
    assert.equal(
      p.evaluate(input(ci, 'deploy', 'staging/web', { reason: 'incident' })).effect,
      'break_glass',
      'break_glass over approve and allow',
    );
    assert.equal(
      p.evaluate(input(ci, 'deploy', 'staging/web')).effect,
      'approve',
      'approve over allow; break_glass needs a reason',
    );
    assert.equal(p.evaluate(input(ci, 'deploy', 'web')).effect, 'allow');
  });

  it('denies when no rule matches, and says why', () => {
    const d = policy('  - { name: x, match: { operation: deploy }, decision: allow }\n').evaluate(
      input(ci, 'read', 'prod/web'),
    );
    assert.deepEqual(d, { effect: 'deny', rule: null, message: `no policy rule allows read on prod/web for ${ci}` });
    assert.equal(Policy.parse('version: 1\nrules: []\n', 'p.yaml').evaluate(input(ci, 'read', 'x')).effect, 'deny');
  });

  it('combines several approve rules into the strictest requirement', () => {
    const p = policy(`  - name: prod
    match: { resource: "prod/*" }
    decision: approve
    ttl: 30m
    approval:
      approvers: [alice, bob, carol]
      required: 1
      timeout: 1h
      step_up: click
      notify: { slack_channels: ["#deploys"], direct_messages: false }
  - name: payments
    match: { resource: "*/payments" }
    decision: approve
    ttl: 10m
    approval:
      approvers: [bob, carol, dave]
      required: 2
      deny_threshold: 2
      timeout: 2h
      step_up: confirm
      reason_required: true
      notify: { slack_channels: ["#payments", "#deploys"] }
  - name: allow-all
    decision: allow
`);
    const d = approval(p.evaluate(input(ci, 'deploy', 'prod/payments', { reason: 'release' })));
    assert.equal(d.rule, 'prod');
    assert.deepEqual(d.rules, ['prod', 'payments']);
    assert.equal(d.approval.required, 2, 'highest count');
    assert.equal(d.approval.timeoutMs, 3600_000, 'shortest timeout');
    assert.equal(d.ttlMs, 600_000, 'shortest ttl');
    assert.equal(d.approval.stepUp, 'confirm', 'union of step-ups');
    assert.equal(d.approval.denyThreshold, 1, 'lowest deny threshold');
    assert.equal(d.approval.reasonRequired, true);
    assert.deepEqual(d.approval.approvers, ['bob', 'carol'], 'only people every rule accepts');
    assert.deepEqual(d.approval.notify, { slackChannels: ['#deploys', '#payments'], directMessages: true });
    // Approve wins over allow; a single rule keeps its own values.
    const single = approval(p.evaluate(input(ci, 'deploy', 'prod/web')));
    assert.deepEqual(
      [single.rules, single.approval.required, single.approval.stepUp, single.approval.approvers],
      [['prod'], 1, 'click', ['alice', 'bob', 'carol']],
    );
  });

  it('intersects approver sets across rules through static groups, keeps shared groups, and refuses what nobody can approve', () => {
    const p =
      policy(`  - { name: a, match: { resource: "db/*" }, decision: approve, approval: { groups: [dba, oncall] } }
  - { name: b, match: { resource: "*/orders" }, decision: approve, approval: { groups: [sre, oncall] } }
  - { name: c, match: { resource: "*/users" }, decision: approve, approval: { approvers: [bob], required: 1 } }
  - { name: d, match: { resource: "db/users" }, decision: approve, approval: { groups: [sre] } }
`);
    const both = approval(p.evaluate(input(ci, 'migrate', 'db/orders')));
    assert.deepEqual(both.approval.approvers, ['carol'], 'carol is in dba and sre');
    assert.deepEqual(both.approval.groups, ['oncall'], 'a group every rule names stays a group');
    const none = p.evaluate(input(ci, 'migrate', 'db/users'));
    assert.equal(none.effect, 'deny');
    assert.match(
      none.effect === 'deny' ? none.message : '',
      /rules a, c, d together need 1 approval\(s\) but only 0 person\(s\) can give them/,
    );
  });

  it('keeps the requester and the human it acts for out of the count unless the rule allows self-approval', () => {
    const p =
      policy(`  - { name: two, match: { operation: deploy }, decision: approve, approval: { approvers: [alice, bob], required: 2 } }
  - { name: self-ok, match: { operation: restart }, decision: approve, approval: { approvers: [alice, bob], required: 2, allow_self_approval: true } }
`);
    assert.equal(p.evaluate(input(ci, 'deploy', 'x')).effect, 'approve');
    for (const who of ['alice', 'alice@example.org']) {
      const d = p.evaluate(input(ci, 'deploy', 'x', { onBehalfOf: who }));
      assert.equal(d.effect, 'deny', who);
      assert.match(d.effect === 'deny' ? d.message : '', /once the requester's own people \(alice\) are left out/);
    }
    assert.equal(
      p.evaluate(input('spiffe://example.org/human/alice', 'deploy', 'x')).effect,
      'deny',
      'alice requesting with her own SVID',
    );
    assert.equal(p.evaluate(input(ci, 'restart', 'x', { onBehalfOf: 'alice' })).effect, 'approve');
  });

  it('requires a reason and a ticket matching the pattern before asking anyone', () => {
    const p = policy(`  - name: prod
    decision: approve
    approval: { approvers: [alice], reason_required: true, ticket_pattern: "^OPS-[0-9]+$" }
  - name: change
    match: { operation: deploy }
    decision: approve
    approval: { approvers: [alice], ticket_pattern: "^[A-Z]+-[0-9]{3}$" }
`);
    const noReason = p.evaluate(input(ci, 'read', 'x', { ticket: 'OPS-1' }));
    assert.deepEqual([noReason.effect, noReason.rule], ['deny', 'prod']);
    assert.match(noReason.effect === 'deny' ? noReason.message : '', /requires a reason/);
    const badTicket = p.evaluate(input(ci, 'read', 'x', { reason: 'r', ticket: 'JIRA-1' }));
    assert.match(
      badTicket.effect === 'deny' ? badTicket.message : '',
      /requires a ticket matching \^OPS-\[0-9\]\+\$ \(got "JIRA-1"\)/,
    );
    assert.equal(p.evaluate(input(ci, 'read', 'x', { reason: 'r', ticket: 'OPS-12' })).effect, 'approve');
    // Both patterns apply when both rules match; the combined pattern demands both.
    assert.equal(p.evaluate(input(ci, 'deploy', 'x', { reason: 'r', ticket: 'OPS-12' })).effect, 'deny');
    const both = approval(p.evaluate(input(ci, 'deploy', 'x', { reason: 'r', ticket: 'OPS-123' })));
    const combined = new RegExp(both.approval.ticketPattern as string, 'u');
    assert.ok(combined.test('OPS-123') && !combined.test('OPS-12') && !combined.test('ABC-123'));
  });

  it('grants break_glass only with a reason, notifies everyone named, and still yields to deny', () => {
    const p = policy(`  - name: prod
    match: { resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice] }
  - name: glass
    match: { resource: "prod/*" }
    when: request.parameters.emergency == true
    decision: break_glass
    ttl: 15m
    break_glass: { approvers: [alice, bob], groups: [sre], slack_channels: ["#incidents"] }
  - name: never-db
    match: { resource: prod/db }
    decision: deny
`);
    const glass = p.evaluate(input(ci, 'deploy', 'prod/web', { parameters: { emergency: true }, reason: 'site down' }));
    assert.deepEqual(glass, {
      effect: 'break_glass',
      rule: 'glass',
      ttlMs: 900_000,
      approvers: ['alice', 'bob'],
      groups: ['sre'],
      notify: { slackChannels: ['#incidents'], directMessages: true },
    });
    assert.equal(
      p.evaluate(input(ci, 'deploy', 'prod/web', { parameters: { emergency: true } })).effect,
      'approve',
      'no reason: the approval path',
    );
    assert.equal(
      p.evaluate(input(ci, 'deploy', 'prod/web', { parameters: { emergency: false }, reason: 'x' })).effect,
      'approve',
    );
    assert.equal(
      p.evaluate(input(ci, 'deploy', 'prod/db', { parameters: { emergency: true }, reason: 'x' })).effect,
      'deny',
    );
    const alone = policy('  - { name: glass, decision: break_glass, break_glass: { approvers: [bob] } }\n').evaluate(
      input(ci, 'deploy', 'x'),
    );
    assert.match(
      alone.effect === 'deny' ? alone.message : '',
      /rule glass allows it as break-glass, which needs a reason/,
    );
  });

  it('uses the smallest ttl among matching allow rules and reports the first', () => {
    const p = policy(`  - { name: wide, decision: allow, ttl: 1h }
  - { name: narrow, match: { operation: deploy }, decision: allow, ttl: 2m }
  - { name: no-ttl, decision: allow }
`);
    assert.deepEqual(p.evaluate(input(ci, 'deploy', 'x')), { effect: 'allow', rule: 'wide', ttlMs: 120_000 });
    assert.deepEqual(p.evaluate(input(ci, 'read', 'x')), { effect: 'allow', rule: 'wide', ttlMs: 3600_000 });
  });

  it('matches callers by exact SPIFFE ID, one-segment and any-depth prefixes, globs and trust domain', () => {
    const p =
      policy(`  - { name: exact, match: { workload: spiffe://example.org/ci/deployer, operation: a }, decision: allow }
  - { name: one-level, match: { workload: "spiffe://example.org/ci/*", operation: b }, decision: allow }
  - { name: subtree, match: { workload: "spiffe://example.org/ci/**", operation: c }, decision: allow }
  - { name: glob, match: { workload: "spiffe://*.example.org/agent-?/**", operation: d }, decision: allow }
  - { name: domain, match: { trust_domain: [partner.org, other.org], operation: e }, decision: allow }
  - { name: list, match: { workload: [spiffe://a.org/x, spiffe://b.org/y], operation: f }, decision: allow }
`);
    const cases: [string, string, boolean][] = [
      [ci, 'a', true],
      ['spiffe://example.org/ci/deployer2', 'a', false],
      [ci, 'b', true],
      ['spiffe://example.org/ci/eu/deployer', 'b', false],
      ['spiffe://example.org/ci/eu/deployer', 'c', true],
      ['spiffe://example.org/cid/x', 'c', false],
      ['spiffe://eu.example.org/agent-1/run/7', 'd', true],
      ['spiffe://eu.example.org/agent-12/run', 'd', false],
      ['spiffe://partner.org/x', 'e', true],
      ['spiffe://example.org/x', 'e', false],
      ['spiffe://b.org/y', 'f', true],
      ['spiffe://b.org/x', 'f', false],
    ];
    for (const [id, op, allowed] of cases)
      assert.equal(p.evaluate(input(id, op, 'r')).effect, allowed ? 'allow' : 'deny', `${id} ${op}`);
  });

  it('matches on_behalf_of by name or glob, and never a request acting for nobody', () => {
    const p = policy(`  - { name: for-alice, match: { on_behalf_of: [alice, "*@example.org"] }, decision: allow }
  - { name: for-anyone, match: { on_behalf_of: "**", operation: read }, decision: allow }
`);
    assert.equal(p.evaluate(input(ci, 'deploy', 'x', { onBehalfOf: 'alice' })).rule, 'for-alice');
    assert.equal(p.evaluate(input(ci, 'deploy', 'x', { onBehalfOf: 'bob@example.org' })).rule, 'for-alice');
    assert.equal(p.evaluate(input(ci, 'deploy', 'x', { onBehalfOf: 'bob' })).effect, 'deny');
    assert.equal(p.evaluate(input(ci, 'read', 'x', { onBehalfOf: 'bob' })).rule, 'for-anyone');
    assert.equal(
      p.evaluate(input(ci, 'read', 'x')).effect,
      'deny',
      'acting for nobody matches no on_behalf_of pattern',
    );
  });

  it('evaluates CEL over the request, the caller SVID freshness and the context', () => {
    const p = policy(
      `  - name: small
    when: request.parameters.replicas + 1 <= 5 && request.reason.startsWith("release")
    decision: allow
  - name: fresh
    when: caller.svid_age_seconds < 300 && caller.svid_remaining_seconds > 600 && caller.path.startsWith("/ci/")
    match: { operation: fresh }
    decision: allow
  - name: office-hours
    match: { operation: office }
    when: context.weekday in ["Mon", "Tue", "Wed", "Thu", "Fri"] && context.hour >= 9 && context.time < "17:30"
    decision: allow
  - name: freeze
    match: { operation: deploy }
    when: context.in_freeze && !("hotfix" in request.parameters)
    decision: deny
    message: change freeze
  - name: named-freeze
    match: { operation: release }
    when: '"year-end" in context.freezes'
    decision: deny
  - name: rate
    match: { operation: scan }
    when: context.request_rate <= 3
    decision: allow
  - { name: deploys, match: { operation: [deploy, release] }, decision: allow }
`,
      `settings: { time_zone: Europe/Berlin, rate_window: 10m }
freeze_windows:
  - { name: year-end, start: "2026-12-20T00:00:00Z", end: "2027-01-04T00:00:00+01:00" }
`,
    );
    assert.equal(p.evaluate(input(ci, 'x', 'r', { parameters: { replicas: 4 }, reason: 'release 1' })).effect, 'allow');
    assert.equal(p.evaluate(input(ci, 'x', 'r', { parameters: { replicas: 5 }, reason: 'release 1' })).effect, 'deny');
    assert.equal(p.evaluate(input(ci, 'x', 'r', { parameters: { replicas: 1 }, reason: 'hotfix' })).effect, 'deny');

    assert.equal(p.evaluate(input(ci, 'fresh', 'r')).effect, 'allow');
    const stale = input(ci, 'fresh', 'r');
    stale.workload.notBefore = NOW - 600_000;
    assert.equal(p.evaluate(stale).effect, 'deny');
    const expiring = input(ci, 'fresh', 'r');
    expiring.workload.notAfter = NOW + 60_000;
    assert.equal(p.evaluate(expiring).effect, 'deny');

    // 10:30Z on a Monday is 11:30 in Berlin; 16:45Z is 17:45 there.
    assert.equal(p.evaluate(input(ci, 'office', 'r')).effect, 'allow');
    assert.equal(p.evaluate(input(ci, 'office', 'r', { now: Date.parse('2026-03-02T16:45:00Z') })).effect, 'deny');
    assert.equal(
      p.evaluate(input(ci, 'office', 'r', { now: Date.parse('2026-03-01T10:30:00Z') })).effect,
      'deny',
      'a Sunday',
    );
    assert.equal(
      p.evaluate(input(ci, 'office', 'r', { now: Date.parse('2026-03-02T08:30:00Z') })).effect,
      'allow',
      '08:30 UTC is 09:30 in Berlin (CET)',
    );
    assert.equal(
      p.evaluate(input(ci, 'office', 'r', { now: Date.parse('2026-03-02T07:30:00Z') })).effect,
      'deny',
      '07:30 UTC is 08:30 in Berlin',
    );
    assert.equal(
      p.evaluate(input(ci, 'office', 'r', { now: Date.parse('2026-07-06T07:30:00Z') })).effect,
      'allow',
      'in summer (CEST) 07:30 UTC is 09:30',
    );

    const inFreeze = Date.parse('2026-12-24T12:00:00Z');
    assert.deepEqual(p.evaluate(input(ci, 'deploy', 'r', { now: inFreeze })), {
      effect: 'deny',
      rule: 'freeze',
      message: 'change freeze',
    });
    assert.equal(
      p.evaluate(input(ci, 'deploy', 'r', { now: inFreeze, parameters: { hotfix: 'CVE-1' } })).effect,
      'allow',
    );
    assert.equal(p.evaluate(input(ci, 'release', 'r', { now: inFreeze })).rule, 'named-freeze');
    assert.equal(
      p.evaluate(input(ci, 'deploy', 'r', { now: Date.parse('2027-01-03T23:30:00Z') })).effect,
      'allow',
      'the window ended at 23:00Z',
    );
    assert.equal(p.evaluate(input(ci, 'deploy', 'r')).effect, 'allow');

    assert.equal(p.evaluate(input(ci, 'scan', 'r', { requestRate: 3 })).effect, 'allow');
    assert.equal(p.evaluate(input(ci, 'scan', 'r', { requestRate: 4 })).effect, 'deny');
    assert.equal(p.usesRequestRate, true);
  });

  it('denies, naming the rule, when a condition cannot be evaluated; an unknown request rate fails the same way', () => {
    const p =
      policy(`  - { name: needs-key, match: { operation: deploy }, when: request.parameters.max < 3, decision: allow }
  - { name: approve-big, match: { operation: deploy }, when: "has(request.parameters.replicas) && request.parameters.replicas >= 3", decision: approve, approval: { approvers: [bob] } }
  - { name: rate, match: { operation: scan }, when: context.request_rate < 10, decision: allow }
`);
    const d = p.evaluate(input(ci, 'deploy', 'x'));
    assert.equal(d.effect, 'deny');
    assert.equal(d.rule, 'needs-key');
    assert.match(d.effect === 'deny' ? d.message : '', /could not be evaluated \(No such key: max\)/);
    assert.equal(p.evaluate(input(ci, 'deploy', 'x', { parameters: { max: 2 } })).effect, 'allow');
    assert.equal(
      p.evaluate(input(ci, 'deploy', 'x', { parameters: { replicas: 3 } })).effect,
      'deny',
      'approve-big matched but needs-key failed: denied',
    );
    const unknownRate = p.evaluate(input(ci, 'scan', 'x', { requestRate: undefined }));
    assert.deepEqual([unknownRate.effect, unknownRate.rule], ['deny', 'rate']);
  });

  it('reaches the same decision through the index as explain does by reading every rule', () => {
    const rules: string[] = [];
    const ops = ['deploy', 'rollback', 'scale', 'read'];
    const decisions = ['allow', 'approve', 'allow', 'deny', 'break_glass', 'allow', 'approve'];
    for (let i = 0; i < 120; i++) {
      const match: string[] = [];
      if (i % 3 !== 0) match.push(`operation: ${i % 7 === 0 ? '"*"' : ops[i % ops.length]}`);
      const workloads = [
        '"spiffe://example.org/ci/*"',
        '"spiffe://other.org/ci/*"',
        '"spiffe://*.org/ci/**"',
        'spiffe://other.org/ci/x',
        '"spiffe://example.org/**"',
      ];
      if (i % 4 === 1) match.push(`workload: ${workloads[i % workloads.length]}`);
      if (i % 5 === 2) match.push(`trust_domain: ${i % 10 === 2 ? 'example.org' : 'other.org'}`);
      const resources = ['"prod/*"', '"staging/*"', '"*/b"', 'prod/a', '"**"', '"dev/?"', '[prod/a, "staging/**"]'];
      const decision = decisions[(i * 3) % decisions.length] as string;
      // Deny rules stay narrow, or one of them would decide everything.
      if (i % 2 === 0 || decision === 'deny')
        match.push(`resource: ${resources[Math.floor(i / 2) % resources.length]}`);
      if (decision === 'deny' && !match.some((m) => m.startsWith('operation'))) match.push('operation: read');
      const section =
        decision === 'approve'
          ? `, approval: { approvers: [alice, bob, carol], required: ${1 + (i % 3)} }`
          : decision === 'break_glass'
            ? ', break_glass: { approvers: [alice] }'
            : '';
      // Mostly guarded conditions; rule 50 (operation scale) fails without n, which denies.
      const when =
        i === 50
          ? ', when: "request.parameters.n > 0"'
          : i % 9 === 0
            ? ', when: "has(request.parameters.n) && request.parameters.n > 2"'
            : i % 11 === 0
              ? ', when: "has(request.parameters.n) && request.parameters.n < 4"'
              : '';
      rules.push(`  - { name: r${i}, match: { ${match.join(', ')} }, decision: ${decision}${section}${when} }`);
    }
    const p = policy(`${rules.join('\n')}\n`);
    let checked = 0;
    const effects = new Set<string>();
    for (const id of [ci, 'spiffe://other.org/ci/x', 'spiffe://example.org/web/y']) {
      for (const op of [...ops, 'other']) {
        for (const res of ['prod/a', 'staging/b', 'dev/c']) {
          for (const parameters of [{}, { n: 1 }, { n: 3 }, { n: 5 }] as JsonObject[]) {
            for (const reason of ['', 'why']) {
              const i = input(id, op, res, { parameters, reason });
              const decision = p.evaluate(i);
              assert.deepEqual(
                decision,
                p.explain(i).decision,
                `${id} ${op} ${res} ${JSON.stringify(parameters)} ${reason}`,
              );
              effects.add(`${decision.effect}:${decision.rule}`);
              checked++;
            }
          }
        }
      }
    }
    assert.equal(checked, 3 * 5 * 3 * 4 * 2);
    assert.ok(effects.size > 20, `the inputs reach many different decisions (${[...effects].join(', ')})`);
  });

  it('explains every rule: why it did not match, or how it counted', () => {
    const p = policy(`  - { name: staging, match: { resource: "staging/*" }, decision: allow }
  - { name: prod, match: { resource: "prod/*" }, decision: approve, approval: { approvers: [alice] } }
  - { name: prod-allow, match: { resource: "prod/*" }, decision: allow }
  - { name: small, when: request.parameters.n < 2, decision: allow }
  - { name: for-humans, match: { on_behalf_of: alice }, decision: allow }
  - { name: other-domain, match: { trust_domain: other.org }, decision: deny }
`);
    const e = p.explain(input(ci, 'deploy', 'prod/web', { parameters: { n: 5 } }));
    assert.equal(e.decision.effect, 'approve');
    assert.deepEqual(
      e.rules.map((r) => [r.rule, r.matched, r.detail]),
      [
        ['staging', false, 'resource "prod/web" does not match staging/*'],
        ['prod', true, 'matched; decides'],
        ['prod-allow', true, 'matched, but approve (rule prod) takes precedence over allow'],
        ['small', false, 'condition is false: request.parameters.n < 2'],
        ['for-humans', false, 'the request acts for nobody (on_behalf_of must match alice)'],
        ['other-domain', false, 'trust domain "example.org" is not other.org'],
      ],
    );
  });

  it('runs the tests: cases of a policy file and reports each difference', () => {
    const p = Policy.parse(
      `version: 1
rules:
  - { name: prod, match: { resource: "prod/*" }, decision: approve, ttl: 5m, approval: { approvers: [alice, bob], required: 2, step_up: confirm, timeout: 30m } }
tests:
  - name: passes
    input: { workload: "${ci}", operation: deploy, resource: prod/web }
    expect: { decision: approve, rule: prod, required: 2, approvers: [bob, alice], step_up: confirm, timeout: 30m, ttl: 5m }
  - name: fails
    input: { workload: "${ci}", operation: deploy, resource: prod/web }
    expect: { decision: approve, rule: prod, required: 1, approvers: [alice], step_up: click }
  - name: wrong decision
    input: { workload: "${ci}", operation: deploy, resource: dev/web }
    expect: { decision: allow, message: nothing }
`,
      'p.yaml',
      { principals },
    );
    const results = runPolicyTests(p, NOW);
    assert.deepEqual(
      results.map((r) => [r.name, r.passed, r.failures]),
      [
        ['passes', true, []],
        [
          'fails',
          false,
          [
            'required: expected 1, got 2',
            'step_up: expected click, got confirm',
            'approvers: expected [alice], got [alice, bob]',
          ],
        ],
        [
          'wrong decision',
          false,
          [
            'decision: expected allow, got deny',
            `message: expected a deny message containing "nothing", got "no policy rule allows deploy on dev/web for ${ci}"`,
          ],
        ],
      ],
    );
  });
});
