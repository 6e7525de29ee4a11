// From the rules that matched to one decision. The order of precedence:
//   deny > (a condition that failed to evaluate) > break_glass > approve > allow > no match (deny)
// Several approve rules combine into the strictest requirement; see docs/policy.md.
import { formatDuration } from '../config/duration.js';
import type { CompiledRule } from './compiled-rule.js';
import { approverPool } from './compile.js';
import type { ApprovalRequirement, Decision, NotifyTargets, PolicyInput, StepUp } from './decision.js';
import type { Principals } from './principals.js';
import type { ApprovalSection, BreakGlassSection } from './schema.js';

export interface ConditionFailure {
  rule: CompiledRule;
  error: string;
}

const unique = <T>(values: Iterable<T>): T[] => [...new Set(values)];
const minDefined = (values: (number | undefined)[]): number | undefined => {
  let min: number | undefined;
  for (const v of values) if (v !== undefined && (min === undefined || v < min)) min = v;
  return min;
};

/**
 * Several rules' approver sets as one: a person counts only when every rule
 * would let them approve. A group named by every rule stays a group; other
 * groups are expanded to their members when the principals file lists them
 * (Slack user groups cannot be expanded here, so they only count when shared).
 */
export function combineApprovers(
  sections: readonly { approvers: string[]; groups: string[] }[],
  principals: Principals | undefined,
): { approvers: string[]; groups: string[] } {
  if (sections.length === 1) {
    const only = sections[0] as { approvers: string[]; groups: string[] };
    return { approvers: [...only.approvers], groups: [...only.groups] };
  }
  const sharedGroups = (sections[0]?.groups ?? []).filter((g) => sections.every((s) => s.groups.includes(g)));
  const mayApprove = (person: string, section: { approvers: string[]; groups: string[] }) =>
    section.approvers.includes(person) ||
    section.groups.some((g) => principals?.staticMembers(g)?.includes(person) === true);
  const candidates = unique(
    sections.flatMap((s) => [...s.approvers, ...s.groups.flatMap((g) => principals?.staticMembers(g) ?? [])]),
  );
  return { approvers: candidates.filter((p) => sections.every((s) => mayApprove(p, s))), groups: sharedGroups };
}

/** A regular expression that matches only what every one of the patterns matches. */
export function allOf(patterns: string[]): string | undefined {
  const distinct = unique(patterns);
  if (distinct.length <= 1) return distinct[0];
  return `^${distinct.map((p) => `(?=[\\s\\S]*?(?:${p}))`).join('')}`;
}

/** One rule's requirement never changes, so it is built once; frozen, as every decision shares it. */
const singleRule = new WeakMap<CompiledRule, { requirement: ApprovalRequirement; pool: string[] | undefined }>();

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function requirementOf(
  rules: CompiledRule[],
  principals: Principals | undefined,
): { requirement: ApprovalRequirement; pool: string[] | undefined } {
  if (rules.length > 1) {
    const requirement = combineApprovals(rules, principals);
    return { requirement, pool: approverPool(requirement.approvers, requirement.groups, principals) };
  }
  const rule = rules[0] as CompiledRule;
  let known = singleRule.get(rule);
  if (known === undefined) {
    const requirement = deepFreeze(combineApprovals(rules, principals));
    known = { requirement, pool: approverPool(requirement.approvers, requirement.groups, principals) };
    singleRule.set(rule, known);
  }
  return known;
}

function combineApprovals(rules: CompiledRule[], principals: Principals | undefined): ApprovalRequirement {
  const sections = rules.map((r) => r.source.approval as ApprovalSection);
  const { approvers, groups } = combineApprovers(sections, principals);
  // The strongest step-up wins: a passkey assertion bound to the request covers a re-typed resource.
  const stepUp: StepUp = sections.some((s) => s.step_up === 'webauthn')
    ? 'webauthn'
    : sections.some((s) => s.step_up === 'confirm')
      ? 'confirm'
      : 'click';
  // Per vote unless every webauthn rule accepts a recent sign-in; then the shortest age.
  const webauthn = sections.filter((s) => s.step_up === 'webauthn');
  const stepUpMaxAgeMs = webauthn.some((s) => s.step_up_max_age === undefined)
    ? undefined
    : minDefined(webauthn.map((s) => s.step_up_max_age));
  const notify: NotifyTargets = {
    slackChannels: unique(sections.flatMap((s) => s.notify.slack_channels)),
    directMessages: sections.some((s) => s.notify.direct_messages),
  };
  return {
    approvers,
    groups,
    required: Math.max(...sections.map((s) => s.required)),
    denyThreshold: Math.min(...sections.map((s) => s.deny_threshold)),
    timeoutMs: Math.min(...sections.map((s) => s.timeout)),
    allowSelfApproval: sections.every((s) => s.allow_self_approval),
    stepUp,
    stepUpMaxAgeMs,
    reasonRequired: sections.some((s) => s.reason_required),
    ticketPattern: allOf(sections.flatMap((s) => (s.ticket_pattern === undefined ? [] : [s.ticket_pattern]))),
    notify,
  };
}

/** Who the requester is as a person, for separation of duties: its own SPIFFE ID and the human it acts for. */
function selves(input: PolicyInput, principals: Principals | undefined): string[] {
  if (principals === undefined) return input.onBehalfOf === '' ? [] : [input.onBehalfOf];
  const names = [principals.bySpiffeId(input.workload.spiffeId)?.name];
  if (input.onBehalfOf !== '')
    names.push(
      principals.byName(input.onBehalfOf)?.name ?? principals.byEmail(input.onBehalfOf)?.name ?? input.onBehalfOf,
    );
  return names.filter((n): n is string => n !== undefined);
}

export function decide(
  matched: readonly CompiledRule[],
  failure: ConditionFailure | undefined,
  input: PolicyInput,
  principals: Principals | undefined,
): Decision {
  const deny = matched.find((r) => r.decision === 'deny');
  if (deny !== undefined) {
    return { effect: 'deny', rule: deny.name, message: deny.source.message ?? `denied by policy rule ${deny.name}` };
  }
  if (failure !== undefined) {
    return {
      effect: 'deny',
      rule: failure.rule.name,
      message: `the condition of policy rule ${failure.rule.name} could not be evaluated (${failure.error}), so the request is denied`,
    };
  }

  const hasReason = input.reason.trim() !== '';
  const breakGlass = matched.filter((r) => r.decision === 'break_glass');
  if (breakGlass.length > 0 && hasReason) {
    const sections = breakGlass.map((r) => r.source.break_glass as BreakGlassSection);
    return {
      effect: 'break_glass',
      rule: (breakGlass[0] as CompiledRule).name,
      ttlMs: minDefined(breakGlass.map((r) => r.source.ttl)),
      approvers: unique(sections.flatMap((s) => s.approvers)),
      groups: unique(sections.flatMap((s) => s.groups)),
      notify: { slackChannels: unique(sections.flatMap((s) => s.slack_channels)), directMessages: true },
    };
  }

  const approves = matched.filter((r) => r.decision === 'approve');
  if (approves.length > 0) {
    const first = approves[0] as CompiledRule;
    const names = approves.map((r) => r.name);
    const { requirement: approval, pool: knownPool } = requirementOf(approves, principals);
    const needsReason = approves.find((r) => r.source.approval?.reason_required === true);
    if (needsReason !== undefined && !hasReason) {
      return {
        effect: 'deny',
        rule: needsReason.name,
        message: `policy rule ${needsReason.name} requires a reason for ${input.operation} on ${input.resource}`,
      };
    }
    for (const rule of approves) {
      if (rule.ticketPattern !== undefined && !rule.ticketPattern.test(input.ticket)) {
        const got = input.ticket === '' ? 'none was given' : `got ${JSON.stringify(input.ticket)}`;
        return {
          effect: 'deny',
          rule: rule.name,
          message: `policy rule ${rule.name} requires a ticket matching ${rule.ticketPattern.source} (${got})`,
        };
      }
    }
    const pool = knownPool ?? approval.approvers;
    const excluded = approval.allowSelfApproval ? [] : selves(input, principals).filter((p) => pool.includes(p));
    // Refuse at once what no vote could ever approve, rather than let it time out.
    if (knownPool !== undefined) {
      const eligible = pool.filter((p) => !excluded.includes(p));
      if (eligible.length < approval.required) {
        const why = excluded.length > 0 ? ` once the requester's own people (${excluded.join(', ')}) are left out` : '';
        return {
          effect: 'deny',
          rule: first.name,
          message: `${names.length > 1 ? `rules ${names.join(', ')} together need` : `rule ${first.name} needs`} ${approval.required} approval(s) but only ${eligible.length} person(s) can give them${why}`,
        };
      }
    }
    return {
      effect: 'approve',
      rule: first.name,
      rules: names,
      approval,
      ttlMs: minDefined(approves.map((r) => r.source.ttl)),
      excluded,
    };
  }

  const allows = matched.filter((r) => r.decision === 'allow');
  if (allows.length > 0) {
    return {
      effect: 'allow',
      rule: (allows[0] as CompiledRule).name,
      ttlMs: minDefined(allows.map((r) => r.source.ttl)),
    };
  }

  const target = `${input.operation} on ${input.resource} for ${input.workload.spiffeId}`;
  if (breakGlass.length > 0) {
    return {
      effect: 'deny',
      rule: null,
      message: `no policy rule allows ${target}; rule ${(breakGlass[0] as CompiledRule).name} allows it as break-glass, which needs a reason`,
    };
  }
  return { effect: 'deny', rule: null, message: `no policy rule allows ${target}` };
}

/**
 * Who may decide, without the requester's own people: "bob, group deployers (not alice: the
 * request is theirs, separation of duties)".
 */
export function whoCanApprove(
  approvers: readonly string[],
  groups: readonly string[],
  excluded: readonly string[],
): string {
  const who =
    [...approvers.filter((a) => !excluded.includes(a)), ...groups.map((g) => `group ${g}`)].join(', ') || 'nobody';
  return excluded.length === 0
    ? who
    : `${who} (not ${excluded.join(', ')}: the request is theirs, separation of duties)`;
}

/** One line summing up a decision, for people (explain, check). */
export function describeDecision(decision: Decision): string {
  const ttl = (ms: number | undefined) => (ms === undefined ? 'default ttl' : `ttl ${formatDuration(ms)}`);
  switch (decision.effect) {
    case 'deny':
      return `deny (${decision.rule === null ? 'no rule matched' : `rule ${decision.rule}`}): ${decision.message}`;
    case 'allow':
      return `allow (rule ${decision.rule}), ${ttl(decision.ttlMs)}`;
    case 'break_glass':
      return `break_glass (rule ${decision.rule}), ${ttl(decision.ttlMs)}; notifies ${[...decision.approvers, ...decision.groups.map((g) => `group ${g}`), ...decision.notify.slackChannels].join(', ') || 'nobody'}`;
    case 'approve': {
      const a = decision.approval;
      const who = whoCanApprove(a.approvers, a.groups, decision.excluded);
      const extras = [
        `step-up ${a.stepUp}${a.stepUpMaxAgeMs === undefined ? '' : ` (a passkey sign-in within ${formatDuration(a.stepUpMaxAgeMs)})`}`,
        `timeout ${formatDuration(a.timeoutMs)}`,
        ttl(decision.ttlMs),
        ...(a.reasonRequired ? ['reason required'] : []),
        ...(a.ticketPattern !== undefined ? [`ticket ${a.ticketPattern}`] : []),
        ...(a.allowSelfApproval ? ['self-approval allowed'] : []),
      ];
      return `approve (rule${decision.rules.length > 1 ? `s ${decision.rules.join(' + ')}` : ` ${decision.rule}`}): ${a.required} of ${who}; ${extras.join(', ')}`;
    }
  }
}
