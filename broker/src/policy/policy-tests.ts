// A policy's own `tests:` cases: sample requests and the decision each must get.
// `countersign-broker policy check` runs them, and so does the broker before it
// accepts a policy (at start and on every reload).
import { formatDuration } from '../config/duration.js';
import { CountersignError } from '../errors.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import type { Decision, PolicyInput } from './decision.js';
import type { Policy } from './policy.js';
import type { PolicyTestCase } from './schema.js';

export interface PolicyTestResult {
  name: string;
  passed: boolean;
  /** What differed from `expect`, one line each. */
  failures: string[];
  decision: Decision;
}

/** The PolicyInput a test case describes; `now` is used when the case gives no `at`. */
export function testInput(test: PolicyTestCase, now: number): PolicyInput {
  const at = test.input.at ?? now;
  const id = parseSpiffeId(test.input.workload);
  return {
    workload: {
      spiffeId: id.id,
      trustDomain: id.trustDomain,
      path: id.path,
      notBefore: at - test.input.svid_age,
      notAfter: at + test.input.svid_remaining,
      serial: '00',
      ...(test.input.oidc_issuer !== undefined || test.input.claims !== undefined
        ? { oidc: { issuer: test.input.oidc_issuer ?? '', claims: test.input.claims ?? {} } }
        : {}),
    },
    operation: test.input.operation,
    resource: test.input.resource,
    parameters: test.input.parameters,
    reason: test.input.reason,
    ticket: test.input.ticket,
    onBehalfOf: test.input.on_behalf_of,
    now: at,
    requestRate: test.input.request_rate,
  };
}

const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && new Set(a).size === new Set([...a, ...b]).size;
const list = (values: readonly string[]) => `[${values.join(', ')}]`;

function compare(test: PolicyTestCase, decision: Decision): string[] {
  const expect = test.expect;
  const failures: string[] = [];
  if (decision.effect !== expect.decision)
    failures.push(`decision: expected ${expect.decision}, got ${decision.effect}`);
  if (expect.rule !== undefined && decision.rule !== expect.rule) {
    failures.push(
      `rule: expected ${expect.rule ?? 'none (default deny)'}, got ${decision.rule ?? 'none (default deny)'}`,
    );
  }
  if (expect.message !== undefined && !(decision.effect === 'deny' && decision.message.includes(expect.message))) {
    failures.push(
      `message: expected a deny message containing ${JSON.stringify(expect.message)}, got ${decision.effect === 'deny' ? JSON.stringify(decision.message) : decision.effect}`,
    );
  }
  if (expect.ttl !== undefined) {
    const ttl = decision.effect === 'deny' ? undefined : decision.ttlMs;
    if (ttl !== expect.ttl)
      failures.push(
        `ttl: expected ${formatDuration(expect.ttl)}, got ${ttl === undefined ? 'none' : formatDuration(ttl)}`,
      );
  }
  const approval = decision.effect === 'approve' ? decision.approval : undefined;
  const approvalCheck = <K extends 'required' | 'step_up' | 'timeout'>(
    key: K,
    actual: unknown,
    show: (v: never) => string = String,
  ) => {
    const wanted = expect[key];
    if (wanted === undefined) return;
    if (approval === undefined)
      failures.push(`${key}: expected ${show(wanted as never)}, but the decision is ${decision.effect}`);
    else if (actual !== wanted)
      failures.push(`${key}: expected ${show(wanted as never)}, got ${show(actual as never)}`);
  };
  approvalCheck('required', approval?.required);
  approvalCheck('step_up', approval?.stepUp);
  approvalCheck('timeout', approval?.timeoutMs, formatDuration);
  for (const key of ['approvers', 'groups'] as const) {
    const wanted = expect[key];
    if (wanted === undefined) continue;
    const actual =
      decision.effect === 'approve'
        ? decision.approval[key]
        : decision.effect === 'break_glass'
          ? decision[key]
          : undefined;
    if (actual === undefined) failures.push(`${key}: expected ${list(wanted)}, but the decision is ${decision.effect}`);
    else if (!sameSet(actual, wanted)) failures.push(`${key}: expected ${list(wanted)}, got ${list(actual)}`);
  }
  return failures;
}

export function runPolicyTests(policy: Policy, now: number): PolicyTestResult[] {
  return policy.document.tests.map((test) => {
    const decision = policy.evaluate(testInput(test, now));
    const failures = compare(test, decision);
    return { name: test.name, passed: failures.length === 0, failures, decision };
  });
}

/** Throws ERR_POLICY_TESTS_FAILED naming each failing case, so a policy that contradicts its own tests is never used. */
export function assertPolicyTestsPass(policy: Policy, now: number): PolicyTestResult[] {
  const results = runPolicyTests(policy, now);
  const failed = results.filter((r) => !r.passed);
  if (failed.length > 0) {
    const lines = failed.map((r) => `  test ${JSON.stringify(r.name)}: ${r.failures.join('; ')}`);
    throw new CountersignError(
      'invalid_argument',
      'ERR_POLICY_TESTS_FAILED',
      `${policy.source}: ${failed.length} of ${results.length} policy test(s) failed:\n${lines.join('\n')}`,
      { file: policy.source, failed: failed.map((r) => r.name) },
    );
  }
  return results;
}
