// A loaded policy: validated rules compiled into matchers, and the decision they
// reach for a request. Deny overrides everything; several matching approve rules
// combine into the strictest requirement; with no match the answer is deny.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseYaml, validateYaml, YamlValidationError } from '../config/yaml-file.js';
import { compileGlob, type GlobMatcher } from './glob.js';
import type { ApprovalRequirement, Decision, PolicyInput } from './decision.js';
import { MAX_POLICY_BYTES, policySchema, type PolicyDocument, type PolicyRule } from './schema.js';

export type { Decision, PolicyInput } from './decision.js';

interface CompiledRule {
  rule: PolicyRule;
  matches(input: PolicyInput): boolean;
}

const toList = <T>(v: T | T[] | undefined): T[] | undefined => (v === undefined ? undefined : Array.isArray(v) ? v : [v]);

function anyOf(patterns: string[] | undefined): GlobMatcher | undefined {
  if (patterns === undefined) return undefined;
  const matchers = patterns.map(compileGlob);
  return (value) => matchers.some((m) => m(value));
}

function compileRule(rule: PolicyRule): CompiledRule {
  const workload = anyOf(toList(rule.match.workload));
  const trustDomains = toList(rule.match.trust_domain);
  const operation = anyOf(toList(rule.match.operation));
  const resource = anyOf(toList(rule.match.resource));
  return {
    rule,
    matches: (input) =>
      (workload === undefined || workload(input.workload.spiffeId)) &&
      (trustDomains === undefined || trustDomains.includes(input.workload.trustDomain)) &&
      (operation === undefined || operation(input.operation)) &&
      (resource === undefined || resource(input.resource)),
  };
}

const minDefined = (values: (number | undefined)[]): number | undefined => {
  const defined = values.filter((v): v is number => v !== undefined);
  return defined.length === 0 ? undefined : Math.min(...defined);
};

export class Policy {
  private readonly rules: CompiledRule[];

  constructor(
    readonly document: PolicyDocument,
    /** "sha256:<hex>" of the policy file's bytes; recorded with every decision. */
    readonly digest: string,
    readonly source: string,
  ) {
    this.rules = document.rules.map(compileRule);
  }

  static parse(text: string, source: string): Policy {
    const parsed = parseYaml(text, source, { maxBytes: MAX_POLICY_BYTES, errorCode: 'ERR_POLICY_INVALID' });
    const document = validateYaml(parsed, policySchema, 'ERR_POLICY_INVALID');
    return new Policy(document, `sha256:${createHash('sha256').update(text, 'utf8').digest('hex')}`, source);
  }

  static async load(file: string): Promise<Policy> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new YamlValidationError('ERR_POLICY_INVALID', file, [{ where: file, path: '', message: `cannot read: ${(e as Error).message}` }]);
    }
    return Policy.parse(text, file);
  }

  evaluate(input: PolicyInput): Decision {
    const matched = this.rules.filter((r) => r.matches(input)).map((r) => r.rule);
    const deny = matched.find((r) => r.decision === 'deny');
    if (deny !== undefined) {
      return { effect: 'deny', rule: deny.name, message: deny.message ?? `denied by policy rule ${deny.name}` };
    }
    const approves = matched.filter((r) => r.decision === 'approve');
    if (approves.length > 0) {
      const requirements = approves.map((r) => r.approval as NonNullable<PolicyRule['approval']>);
      // Strictest wins: the most approvals, the shortest timeout and TTL. Approvers
      // must satisfy every matching rule, so only people named by all of them count.
      const approvers = requirements.map((a) => new Set(a.approvers)).reduce((acc, set) => new Set([...acc].filter((p) => set.has(p))));
      const approval: ApprovalRequirement = {
        approvers: [...approvers],
        groups: [],
        required: Math.max(...requirements.map((a) => a.required)),
        denyThreshold: 1,
        timeoutMs: Math.min(...requirements.map((a) => a.timeout)),
        allowSelfApproval: false,
        stepUp: 'click',
        reasonRequired: false,
        ticketPattern: undefined,
        notify: { slackChannels: [], directMessages: false },
      };
      const first = approves[0] as PolicyRule;
      if (approval.approvers.length < approval.required) {
        return {
          effect: 'deny',
          rule: first.name,
          message: `rules ${approves.map((r) => r.name).join(', ')} require approval but no approver set satisfies them all`,
        };
      }
      return { effect: 'approve', rule: first.name, rules: approves.map((r) => r.name), approval, ttlMs: minDefined(approves.map((r) => r.ttl)) };
    }
    const allow = matched.find((r) => r.decision === 'allow');
    if (allow !== undefined) return { effect: 'allow', rule: allow.name, ttlMs: allow.ttl };
    return { effect: 'deny', rule: null, message: `no policy rule allows ${input.operation} on ${input.resource} for ${input.workload.spiffeId}` };
  }
}
