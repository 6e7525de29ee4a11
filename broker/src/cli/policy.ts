// `countersign-broker policy check|explain|schema`: review and test a policy
// without running a broker.
import type { JsonObject, JsonValue } from '@countersign/proto';
import { systemClock, type Clock } from '../clock.js';
import { formatDuration, parseDuration } from '../config/duration.js';
import { CountersignError } from '../errors.js';
import { POLICY_TESTS_FAILED } from './constants.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import { describeDecision } from '../policy/combine.js';
import type { PolicyInput } from '../policy/decision.js';
import { policyJsonSchemaText } from '../policy/json-schema.js';
import { Policy } from '../policy/policy.js';
import { runPolicyTests } from '../policy/policy-tests.js';
import { Principals } from '../policy/principals.js';
import { policyInputOf, validateOperationRequest } from '../requests/validate.js';

/** Exit codes of the policy subcommands (beyond 0 ok, 2 usage, 3 invalid file). */

export interface CliIo {
  out(line?: string): void;
  err(line?: string): void;
  clock?: Clock;
}

const usage = (message: string) => new CountersignError('invalid_argument', 'ERR_USAGE', message);

async function loadPolicy(file: string, principalsFile: string | undefined): Promise<Policy> {
  const principals = principalsFile === undefined ? undefined : await Principals.load(principalsFile);
  return Policy.load(file, { principals });
}

export interface CheckOptions {
  principals?: string;
  output?: 'text' | 'json';
}

/** Validates FILE and runs its tests; returns the exit code (0 only when every test passes). */
export async function runPolicyCheck(file: string, options: CheckOptions, io: CliIo): Promise<number> {
  const policy = await loadPolicy(file, options.principals);
  const results = runPolicyTests(policy, (io.clock ?? systemClock).now());
  const failed = results.filter((r) => !r.passed);
  if (options.output === 'json') {
    io.out(
      JSON.stringify({
        file,
        valid: true,
        digest: policy.digest,
        rules: policy.ruleCount,
        principals_checked: options.principals !== undefined,
        tests: results.map((r) => ({ name: r.name, passed: r.passed, failures: r.failures, decision: r.decision })),
      }),
    );
    return failed.length === 0 ? 0 : POLICY_TESTS_FAILED;
  }
  io.out(`${file}: valid, ${policy.ruleCount} rule(s), ${results.length} test(s), ${policy.digest}`);
  if (options.principals === undefined) io.out('  (approver and group names not checked: pass --principals FILE)');
  for (const r of results) {
    io.out(`  ${r.passed ? 'ok  ' : 'FAIL'}  ${r.name}`);
    if (r.passed) io.out(`        ${describeDecision(r.decision)}`);
    for (const f of r.failures) io.out(`        ${f}`);
  }
  if (results.length === 0) io.out('  no tests: add a tests: section (see docs/policy.md) so changes are checked');
  io.out(`tests: ${results.length - failed.length} passed, ${failed.length} failed`);
  return failed.length === 0 ? 0 : POLICY_TESTS_FAILED;
}

export interface ExplainOptions {
  policy: string;
  workload: string;
  operation: string;
  resource: string;
  param: string[];
  parametersJson?: string;
  onBehalfOf?: string;
  reason?: string;
  ticket?: string;
  at?: string;
  svidAge: string;
  svidRemaining: string;
  requestRate: string;
  /** The caller's SVID was exchanged for a token of this issuer (workload.issuer)... */
  oidcIssuer?: string;
  /** ...with these claims: k=v or k:=JSON, like --param (workload.claims). */
  claim?: string[];
  principals?: string;
  output?: 'text' | 'json';
}

/** --param k=v (a string) and k:=JSON (any JSON value), like `countersign request`. */
export function parseParams(params: string[], parametersJson: string | undefined): JsonObject {
  let out: JsonObject = {};
  if (parametersJson !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(parametersJson);
    } catch (e) {
      throw usage(`--parameters-json is not valid JSON: ${(e as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      throw usage('--parameters-json must be a JSON object');
    out = { ...(parsed as JsonObject) };
  }
  for (const p of params) {
    const typed = /^([^=:]+):=(.*)$/s.exec(p);
    const plain = /^([^=]+)=(.*)$/s.exec(p);
    let key: string;
    let value: JsonValue;
    if (typed) {
      key = typed[1] as string;
      try {
        value = JSON.parse(typed[2] as string) as JsonValue;
      } catch {
        throw usage(`--param ${p}: the value after ":=" must be JSON (e.g. count:=3)`);
      }
    } else if (plain) {
      key = plain[1] as string;
      value = plain[2] as string;
    } else {
      throw usage(`--param ${JSON.stringify(p)}: expected key=value (a string) or key:=json`);
    }
    if (Object.hasOwn(out, key)) throw usage(`--param ${key} is given more than once`);
    out[key] = value;
  }
  return out;
}

function asUsage<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw usage((e as Error).message);
  }
}

function durationOption(name: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw usage(`${name}: expected a duration such as 5m or 1h, got ${JSON.stringify(text)}`);
  return ms;
}

export function explainInput(options: ExplainOptions, now: number): PolicyInput {
  let id;
  try {
    id = parseSpiffeId(options.workload);
  } catch (e) {
    throw usage(`--workload: ${(e as Error).message}`);
  }
  if (id.path === '') throw usage(`--workload: ${options.workload} names a trust domain, not a workload`);
  const at = options.at === undefined ? now : Date.parse(options.at);
  if (Number.isNaN(at))
    throw usage(`--at: expected an RFC 3339 time such as 2026-03-02T10:00:00Z, got ${JSON.stringify(options.at)}`);
  const requestRate = Number(options.requestRate);
  if (!Number.isInteger(requestRate) || requestRate < 0)
    throw usage(`--request-rate: expected a whole number, got ${JSON.stringify(options.requestRate)}`);
  const parameters = parseParams(options.param, options.parametersJson);
  // The same limits the broker applies to a real request.
  const op = asUsage(() =>
    validateOperationRequest({
      operation: options.operation,
      resource: options.resource,
      parametersJson: JSON.stringify(parameters),
      reason: options.reason ?? '',
      onBehalfOf: options.onBehalfOf ?? '',
      ticket: options.ticket ?? '',
      clientRequestId: '',
      audience: '',
      requestedTtl: undefined,
    }),
  );
  const workload = {
    spiffeId: id.id,
    trustDomain: id.trustDomain,
    path: id.path,
    notBefore: at - durationOption('--svid-age', options.svidAge),
    notAfter: at + durationOption('--svid-remaining', options.svidRemaining),
    serial: '00',
    ...(options.oidcIssuer !== undefined || (options.claim ?? []).length > 0
      ? { oidc: { issuer: options.oidcIssuer ?? '', claims: parseParams(options.claim ?? [], undefined) } }
      : {}),
  };
  return { ...policyInputOf(workload, op, at), requestRate };
}

/** Prints the decision, the rule that made it, and why each rule did or did not match. */
export async function runPolicyExplain(options: ExplainOptions, io: CliIo): Promise<number> {
  const policy = await loadPolicy(options.policy, options.principals);
  const input = explainInput(options, (io.clock ?? systemClock).now());
  const explanation = policy.explain(input);
  if (options.output === 'json') {
    io.out(JSON.stringify({ policy: options.policy, digest: policy.digest, input, ...explanation }));
    return 0;
  }
  io.out(`decision  ${describeDecision(explanation.decision)}`);
  io.out(`policy    ${options.policy}  ${policy.digest}  (${policy.ruleCount} rules)`);
  io.out(
    `request   ${input.workload.spiffeId} ${input.operation} ${input.resource} ${JSON.stringify(input.parameters)}` +
      `${input.onBehalfOf ? ` on behalf of ${input.onBehalfOf}` : ''} at ${new Date(input.now).toISOString()}` +
      ` (svid age ${formatDuration(input.now - input.workload.notBefore)}, ${formatDuration(input.workload.notAfter - input.now)} left)`,
  );
  io.out('');
  io.out('rules, in file order:');
  const width = Math.max(4, ...explanation.rules.map((r) => r.rule.length));
  const decisionWidth = Math.max(...explanation.rules.map((r) => r.decision.length), 4);
  for (const r of explanation.rules) {
    io.out(
      `  ${r.matched ? 'MATCH' : 'no   '}  ${r.rule.padEnd(width)}  ${r.decision.padEnd(decisionWidth)}  ${r.detail}`,
    );
  }
  if (explanation.rules.length === 0) io.out('  (none: everything is denied)');
  return 0;
}

export function runPolicySchema(io: CliIo): number {
  io.out(policyJsonSchemaText().trimEnd());
  return 0;
}
