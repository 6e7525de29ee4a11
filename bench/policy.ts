// Benchmark: one policy decision (Policy.evaluate) against a 1,000-rule policy,
// p99 per decision. Target: < 50 us p99 on this machine. The baseline, measured
// in the same run on the same requests, is a one-rule policy: what is left is the
// cost of the rules themselves. A second 1,000-rule policy whose resource patterns
// all start with a wildcard shows the case the index cannot narrow: every rule is
// checked, for every request.
import { Policy, type PolicyInput } from '../broker/src/policy/policy.js';
import { Principals } from '../broker/src/policy/principals.js';
import { fmt, table } from './harness.js';

const OPERATIONS = [
  'deploy',
  'rollback',
  'scale',
  'restart',
  'migrate',
  'read-secret',
  'exec',
  'drop-table',
  'export',
  'configure',
];
const TRUST_DOMAINS = Array.from({ length: 10 }, (_, i) => `td${i}.example`);
const SERVICES = 100;
const NOW = Date.parse('2026-03-02T10:30:00Z');

const principals = Principals.parse(
  `version: 1
principals: [{ name: alice }, { name: bob }, { name: carol }, { name: dave }]
groups: [{ name: sre, members: [carol, dave] }]
`,
  'bench-principals.yaml',
);

/** 100 services x 10 operations: a realistic spread, about a third with CEL conditions. */
function realisticPolicy(): string {
  const rules: string[] = [];
  for (let s = 0; s < SERVICES; s++) {
    const td = TRUST_DOMAINS[s % TRUST_DOMAINS.length] as string;
    OPERATIONS.forEach((op, o) => {
      const name = `svc${s}-${op}`;
      const match = `match: { workload: "spiffe://${td}/ci/svc${s}/*", operation: ${op}, resource: "prod/svc${s}/**" }`;
      switch ((s + o) % 5) {
        case 0:
          rules.push(`  - { name: ${name}, ${match}, decision: allow, ttl: 10m }`);
          break;
        case 1:
          rules.push(
            `  - { name: ${name}, ${match}, when: "request.parameters.replicas <= 10 && request.reason.size() > 3", decision: allow }`,
          );
          break;
        case 2:
          rules.push(
            `  - { name: ${name}, ${match}, decision: approve, approval: { approvers: [alice, bob], groups: [sre], required: 2, step_up: confirm } }`,
          );
          break;
        case 3:
          rules.push(
            `  - { name: ${name}, ${match}, when: "context.weekday in ['Sat', 'Sun'] || context.hour < 8", decision: deny, message: outside hours }`,
          );
          break;
        default:
          rules.push(
            `  - { name: ${name}, ${match}, when: 'caller.svid_age_seconds < 3600 && has(request.parameters.ticket)', decision: approve, approval: { approvers: [alice] } }`,
          );
      }
    });
  }
  // Two rules every request meets (in place of the last two): a freeze, a break-glass path.
  rules.length = 998;
  rules.push('  - { name: freeze, when: context.in_freeze, decision: deny, message: change freeze }');
  rules.push(
    `  - { name: glass, match: { resource: "prod/**" }, when: 'has(request.parameters.emergency) && request.parameters.emergency == true', decision: break_glass, break_glass: { groups: [sre] } }`,
  );
  return `version: 1\nsettings: { time_zone: Europe/Berlin }\nfreeze_windows: [{ name: xmas, start: "2026-12-20T00:00:00Z", end: "2027-01-04T00:00:00Z" }]\nrules:\n${rules.join('\n')}\n`;
}

/**
 * 1,000 rules the index cannot tell apart: the same operation, every caller, and
 * resources that start with a wildcard. Every rule is checked for every request.
 */
function unindexablePolicy(): string {
  const rules = Array.from(
    { length: 1000 },
    (_, i) =>
      `  - { name: r${i}, match: { operation: deploy, resource: "*/svc${i}/**" }, decision: ${i % 2 === 0 ? 'allow' : 'deny'} }`,
  );
  return `version: 1\nrules:\n${rules.join('\n')}\n`;
}

const baselinePolicy = `version: 1\nrules:\n  - { name: only, match: { operation: deploy, resource: "prod/**" }, decision: allow }\n`;

function inputs(count: number): PolicyInput[] {
  const out: PolicyInput[] = [];
  for (let i = 0; i < count; i++) {
    const s = (i * 37) % (SERVICES + 10); // a few services no rule names
    const td = TRUST_DOMAINS[s % TRUST_DOMAINS.length] as string;
    const spiffeId = `spiffe://${td}/ci/svc${s}/runner`;
    out.push({
      workload: {
        spiffeId,
        trustDomain: td,
        path: `/ci/svc${s}/runner`,
        notBefore: NOW - 600_000,
        notAfter: NOW + 3600_000,
        serial: '01',
      },
      operation: OPERATIONS[(i * 7) % OPERATIONS.length] as string,
      resource: `prod/svc${s}/${i % 3 === 0 ? 'eu/' : ''}api`,
      parameters: i % 4 === 0 ? { replicas: i % 15, ticket: 'OPS-1' } : { replicas: 3, version: '1.2.3' },
      reason: i % 5 === 0 ? '' : 'release',
      ticket: '',
      onBehalfOf: '',
      now: NOW + (i % 24) * 3600_000,
      requestRate: 1,
    });
  }
  return out;
}

interface Latency {
  decisions: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

function measure(policy: Policy, requests: PolicyInput[], durationMs: number): Latency {
  for (let i = 0; i < 20_000; i++) policy.evaluate(requests[i % requests.length] as PolicyInput);
  const samples: number[] = [];
  const end = performance.now() + durationMs;
  let i = 0;
  while (performance.now() < end) {
    for (let k = 0; k < 1000; k++, i++) {
      const request = requests[i % requests.length] as PolicyInput;
      const t0 = performance.now();
      policy.evaluate(request);
      samples.push(performance.now() - t0);
    }
  }
  samples.sort((a, b) => a - b);
  const at = (p: number) => (samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] as number) * 1000;
  return {
    decisions: samples.length,
    p50Us: at(0.5),
    p99Us: at(0.99),
    maxUs: (samples[samples.length - 1] as number) * 1000,
  };
}

export async function benchPolicy(options: { durationMs: number }): Promise<void> {
  const compileStart = performance.now();
  const realistic = Policy.parse(realisticPolicy(), 'bench-policy.yaml', { principals });
  const compileMs = performance.now() - compileStart;
  const unindexable = Policy.parse(unindexablePolicy(), 'bench-unindexable.yaml', { principals });
  const baseline = Policy.parse(baselinePolicy, 'bench-baseline.yaml', { principals });
  const requests = inputs(1000);
  const effects = new Map<string, number>();
  for (const r of requests) {
    const e = realistic.evaluate(r).effect;
    effects.set(e, (effects.get(e) ?? 0) + 1);
  }

  const base = measure(baseline, requests, options.durationMs);
  const rows: Record<string, string>[] = [];
  const row = (label: string, rules: number, m: Latency) =>
    rows.push({
      policy: label,
      rules: String(rules),
      decisions: String(m.decisions),
      'p50 us': fmt(m.p50Us, 2),
      'p99 us': fmt(m.p99Us, 2),
      'max us': fmt(m.maxUs, 0),
      'p99 / baseline p99': fmt(m.p99Us / base.p99Us, 1),
    });
  row('baseline: one rule', baseline.ruleCount, base);
  const real = measure(realistic, requests, options.durationMs);
  row('1,000 rules, realistic (indexed)', realistic.ruleCount, real);
  row(
    '1,000 rules, leading wildcards (no index)',
    unindexable.ruleCount,
    measure(
      unindexable,
      requests.map((r) => ({ ...r, operation: 'deploy' })),
      options.durationMs,
    ),
  );

  process.stdout.write('\nPolicy decision: Policy.evaluate per request, 1,000 distinct requests, timed one by one\n');
  process.stdout.write(
    `(target: p99 < 50 us for the 1,000-rule policy; compiled in ${fmt(compileMs, 0)} ms; decisions ${[...effects].map(([k, v]) => `${k} ${v}`).join(', ')})\n`,
  );
  process.stdout.write(`${table(rows)}\n`);
  process.stdout.write(
    `1,000-rule p99 ${fmt(real.p99Us, 2)} us: ${real.p99Us < 50 ? 'within' : 'OVER'} the 50 us target\n`,
  );
}
