// A loaded policy: the validated file compiled into indexed rules, and the
// decision they reach for a request. Immutable once built; a reload builds a new
// one (policy/reloader.ts) and swaps it in whole.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseYaml, validateYaml, YamlValidationError } from '../config/yaml-file.js';
import type { CelActivation } from './cel.js';
import { decide, type ConditionFailure } from './combine.js';
import { compileRules } from './compile.js';
import type { CompiledRule } from './compiled-rule.js';
import { buildActivation, ZonedClock } from './context.js';
import type { Decision, PolicyInput } from './decision.js';
import type { Principals } from './principals.js';
import type { RequestRateCounter } from './request-rate.js';
import { RuleIndex } from './rule-index.js';
import { MAX_POLICY_BYTES, policySchema, type PolicyDocument, type RuleDecision } from './schema.js';

export type { Decision, PolicyInput } from './decision.js';

export interface PolicyOptions {
  /** Approver and group names are checked against this directory; without it they are not checked. */
  principals?: Principals | undefined;
  /** Counts the caller's requests for context.request_rate (Policy.decide). */
  requestRate?: RequestRateCounter | undefined;
}

/** How one rule fared against one input, for `policy explain`. */
export interface RuleTrace {
  rule: string;
  decision: RuleDecision;
  matched: boolean;
  /** Why it did not match, or how it counted when it did. */
  detail: string;
}

export interface Explanation {
  decision: Decision;
  rules: RuleTrace[];
}

/** "sha256:<hex>" of the policy file's bytes. */
export const policyDigest = (text: string): string =>
  `sha256:${createHash('sha256').update(text, 'utf8').digest('hex')}`;

export class Policy {
  private readonly index: RuleIndex;
  private readonly clock: ZonedClock;
  /** Whether any condition reads context.request_rate; then every decision counts in Redis. */
  readonly usesRequestRate: boolean;

  private constructor(
    readonly document: PolicyDocument,
    /** "sha256:<hex>" of the policy file's bytes; recorded with every decision. */
    readonly digest: string,
    readonly source: string,
    private readonly rules: readonly CompiledRule[],
    private readonly options: PolicyOptions,
  ) {
    this.index = new RuleIndex(rules);
    this.clock = new ZonedClock(document.settings.time_zone);
    this.usesRequestRate = rules.some((r) => r.condition?.usesRequestRate === true);
  }

  /** Validates and compiles policy text; throws YamlValidationError (ERR_POLICY_INVALID) listing every problem. */
  static parse(text: string, source: string, options: PolicyOptions = {}): Policy {
    const parsed = parseYaml(text, source, { maxBytes: MAX_POLICY_BYTES, errorCode: 'ERR_POLICY_INVALID' });
    if (parsed.value === null || typeof parsed.value !== 'object' || Array.isArray(parsed.value)) {
      throw new YamlValidationError('ERR_POLICY_INVALID', source, [
        { where: source, path: '', message: 'expected a mapping with version and rules' },
      ]);
    }
    let document: PolicyDocument;
    try {
      document = validateYaml(parsed, policySchema, 'ERR_POLICY_INVALID');
    } catch (e) {
      throw e instanceof YamlValidationError ? inFileOrder(e, parsed.value) : e;
    }
    const { rules, problems } = compileRules(document, { parsed, text, principals: options.principals });
    if (problems.length > 0)
      throw inFileOrder(new YamlValidationError('ERR_POLICY_INVALID', source, problems), parsed.value);
    return new Policy(document, policyDigest(text), source, rules, options);
  }

  static async load(file: string, options: PolicyOptions = {}): Promise<Policy> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new YamlValidationError('ERR_POLICY_INVALID', file, [
        { where: file, path: '', message: `cannot read: ${(e as Error).message}` },
      ]);
    }
    return Policy.parse(text, file, options);
  }

  /** The same policy, counting request rates with this counter. */
  withRequestRate(requestRate: RequestRateCounter): Policy {
    return new Policy(this.document, this.digest, this.source, this.rules, { ...this.options, requestRate });
  }

  get ruleCount(): number {
    return this.rules.length;
  }

  get principals(): Principals | undefined {
    return this.options.principals;
  }

  /**
   * The decision for a request, counting it for context.request_rate first when
   * the policy uses that (one Redis round trip; none otherwise).
   */
  async decide(input: PolicyInput): Promise<Decision> {
    if (!this.usesRequestRate || input.requestRate !== undefined) return this.evaluate(input);
    const counter = this.options.requestRate;
    // Without a count the conditions that read it fail, which denies: fail closed.
    if (counter === undefined) return this.evaluate(input);
    const requestRate = await counter.record(input.workload.spiffeId, input.now, this.document.settings.rate_window);
    return this.evaluate({ ...input, requestRate });
  }

  /** The decision for a request whose facts are all in the input. Synchronous and allocation-light. */
  evaluate(input: PolicyInput): Decision {
    const candidates = this.index.candidates(input.operation, input.workload.spiffeId, input.resource);
    const matched: CompiledRule[] = [];
    let failure: ConditionFailure | undefined;
    let activation: CelActivation | undefined;
    for (const rule of candidates) {
      if (!rule.matchesStatic(input)) continue;
      if (rule.condition !== undefined) {
        activation ??= buildActivation(input, this.clock, this.document.freeze_windows);
        try {
          if (!rule.condition.evaluate(activation)) continue;
        } catch (e) {
          failure ??= { rule, error: firstLine(e) };
          continue;
        }
      }
      // Deny overrides everything, so the first matching deny rule is the answer.
      if (rule.decision === 'deny') return decide([rule], undefined, input, this.options.principals);
      matched.push(rule);
    }
    return decide(matched, failure, input, this.options.principals);
  }

  /** Every rule, in file order, with why it did or did not match, and the decision (the same evaluate reaches). */
  explain(input: PolicyInput): Explanation {
    const activation = buildActivation(input, this.clock, this.document.freeze_windows);
    const matched: CompiledRule[] = [];
    let failure: ConditionFailure | undefined;
    const traces = new Map<CompiledRule, RuleTrace>();
    for (const rule of this.rules) {
      const trace: RuleTrace = { rule: rule.name, decision: rule.decision, matched: false, detail: '' };
      traces.set(rule, trace);
      const why = rule.whyNot(input);
      if (why !== undefined) {
        trace.detail = why;
        continue;
      }
      if (rule.condition !== undefined) {
        try {
          if (!rule.condition.evaluate(activation)) {
            trace.detail = `condition is false: ${rule.condition.source}`;
            continue;
          }
        } catch (e) {
          failure ??= { rule, error: firstLine(e) };
          trace.detail = `condition could not be evaluated: ${firstLine(e)}`;
          continue;
        }
      }
      trace.matched = true;
      matched.push(rule);
    }
    const decision = decide(matched, failure, input, this.options.principals);
    for (const rule of matched) (traces.get(rule) as RuleTrace).detail = roleOf(rule, decision);
    if (failure !== undefined && decision.rule === failure.rule.name) {
      const trace = traces.get(failure.rule) as RuleTrace;
      trace.detail = `${trace.detail}; a condition that fails denies the request`;
    }
    return { decision, rules: [...traces.values()] };
  }
}

/**
 * "rules[3].approval" as people know the rule: "rule prod-deploys: approval". The index stays
 * when the rule has no usable name or shares it with another rule.
 */
function byRuleName(path: string, raw: unknown): string {
  const m = /^rules\[(\d+)\](?:\.(.*))?$/s.exec(path);
  const rules = (raw as { rules?: unknown }).rules;
  if (m === null || !Array.isArray(rules)) return path;
  const nameOf = (r: unknown) => (r !== null && typeof r === 'object' ? (r as { name?: unknown }).name : undefined);
  const name = nameOf(rules[Number(m[1])]);
  if (
    typeof name !== 'string' ||
    !/^[\x21-\x7e]{1,128}$/.test(name) ||
    rules.filter((r) => nameOf(r) === name).length > 1
  )
    return path;
  return m[2] === undefined ? `rule ${name}` : `rule ${name}: ${m[2]}`;
}

/** The same error with its problems sorted by line and column, as an editor lists them, and rules named. */
function inFileOrder(error: YamlValidationError, raw: unknown): YamlValidationError {
  const position = (where: string): [number, number] => {
    const m = /:(\d+):(\d+)$/.exec(where);
    return m === null ? [0, 0] : [Number(m[1]), Number(m[2])];
  };
  const sorted = error.problems
    .map((p, i) => ({ p, i, at: position(p.where) }))
    .sort((a, b) => a.at[0] - b.at[0] || a.at[1] - b.at[1] || a.i - b.i)
    .map((x) => ({ ...x.p, path: byRuleName(x.p.path, raw) }));
  return new YamlValidationError(error.code, error.file, sorted);
}

const firstLine = (e: unknown): string => ((e as Error).message ?? String(e)).split('\n')[0] as string;

function roleOf(rule: CompiledRule, decision: Decision): string {
  if (decision.effect === 'approve' && decision.rules.includes(rule.name)) {
    return decision.rules.length > 1
      ? `matched; combined with ${decision.rules.filter((r) => r !== rule.name).join(', ')} into the approval requirement`
      : 'matched; decides';
  }
  // A rule can match and still refuse the request (a reason or ticket it requires is missing).
  if (decision.rule === rule.name)
    return decision.effect === 'deny' && rule.decision !== 'deny'
      ? `matched, but refuses: ${decision.message}`
      : 'matched; decides';
  if (rule.decision === 'break_glass' && decision.effect !== 'break_glass' && decision.effect !== 'deny') {
    return 'matched, but break-glass needs a reason';
  }
  if (decision.effect === 'deny' && decision.rule === null) return 'matched, but break-glass needs a reason';
  if (decision.effect === rule.decision) return `matched; ${decision.rule} decides (first in file order)`;
  return `matched, but ${decision.effect} (rule ${decision.rule}) takes precedence over ${rule.decision}`;
}
