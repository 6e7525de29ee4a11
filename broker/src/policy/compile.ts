// The policy file, stage two: what a schema cannot see alone. Every CEL condition
// is compiled and type-checked, names are checked against the principals
// directory, approver sets against `required`; each problem keeps file:line:col.
// The result is rules compiled into matchers, each able to say why it did not match.
import { keyPath, locate, suggest, type ParsedYaml, type YamlProblem } from '../config/yaml-file.js';
import { compileCondition, isCelProblem, type CompiledCondition } from './cel.js';
import type { PolicyInput } from './decision.js';
import { compileGlob, isLiteral } from './glob.js';
import type { Principals } from './principals.js';
import type { CompiledRule } from './compiled-rule.js';
import { literalKey } from './rule-index.js';
import type { PolicyDocument, PolicyRule } from './schema.js';

const toList = <T>(v: T | T[] | undefined): T[] | undefined =>
  v === undefined ? undefined : Array.isArray(v) ? v : [v];
const shown = (patterns: string[]): string =>
  patterns.length === 1 ? (patterns[0] as string) : `any of ${patterns.join(', ')}`;

interface Criterion {
  test(input: PolicyInput): boolean;
  why(input: PolicyInput): string;
}

function globCriterion(
  what: string,
  patterns: string[] | undefined,
  value: (input: PolicyInput) => string,
): Criterion | undefined {
  if (patterns === undefined) return undefined;
  const matchers = patterns.map(compileGlob);
  const test =
    matchers.length === 1
      ? (input: PolicyInput) => (matchers[0] as (v: string) => boolean)(value(input))
      : (input: PolicyInput) => {
          const v = value(input);
          for (const m of matchers) if (m(v)) return true;
          return false;
        };
  return { test, why: (input) => `${what} ${JSON.stringify(value(input))} does not match ${shown(patterns)}` };
}

function compileMatch(rule: PolicyRule): {
  criteria: Criterion[];
  operations: string[] | undefined;
  workloads: string[] | undefined;
  trustDomains: string[] | undefined;
  resources: string[] | undefined;
} {
  const workloads = toList(rule.match.workload);
  const trustDomainList = toList(rule.match.trust_domain);
  const operations = toList(rule.match.operation);
  const resources = toList(rule.match.resource);
  const humans = toList(rule.match.on_behalf_of);
  const criteria: Criterion[] = [];
  if (trustDomainList !== undefined) {
    const set = new Set(trustDomainList);
    criteria.push({
      test: (input) => set.has(input.workload.trustDomain),
      why: (input) => `trust domain ${JSON.stringify(input.workload.trustDomain)} is not ${shown(trustDomainList)}`,
    });
  }
  const optional = [
    globCriterion('operation', operations, (input) => input.operation),
    globCriterion('workload', workloads, (input) => input.workload.spiffeId),
    globCriterion('resource', resources, (input) => input.resource),
  ];
  for (const c of optional) if (c !== undefined) criteria.push(c);
  const human = globCriterion('on_behalf_of', humans, (input) => input.onBehalfOf);
  if (human !== undefined && humans !== undefined) {
    criteria.push({
      test: (input) => input.onBehalfOf !== '' && human.test(input),
      why: (input) =>
        input.onBehalfOf === ''
          ? `the request acts for nobody (on_behalf_of must match ${shown(humans)})`
          : human.why(input),
    });
  }
  return {
    criteria,
    operations: operations !== undefined && operations.every(isLiteral) ? operations : undefined,
    workloads,
    trustDomains: trustDomainList,
    resources,
  };
}

/** Offset of character `offset` of a scalar's value in the file, when it can be worked out exactly. */
function scalarOffset(
  parsed: ParsedYaml,
  text: string,
  path: (string | number)[],
  offset: number,
  value: string,
): number | undefined {
  const node = parsed.doc.getIn(path, true) as { range?: [number, number, number]; type?: string } | undefined;
  const start = node?.range?.[0];
  if (start === undefined) return undefined;
  const before = value.slice(0, offset);
  const line = (before.match(/\n/g) ?? []).length;
  const column = offset - (before.lastIndexOf('\n') + 1);
  switch (node?.type) {
    case 'PLAIN':
      return line === 0 ? start + offset : undefined;
    case 'QUOTE_SINGLE':
    case 'QUOTE_DOUBLE':
      return line === 0 && !/["'\\]/.test(before) ? start + 1 + offset : undefined;
    case 'BLOCK_LITERAL': {
      // Header line ("|", "|-"), then the content lines, all at one indentation.
      const lines = text.slice(start, node.range?.[1]).split('\n');
      const first = lines.slice(1).find((l) => l.trim() !== '') ?? '';
      const indent = first.length - first.trimStart().length;
      let at = start + (lines[0] as string).length + 1;
      for (let i = 1; i < 1 + line; i++) at += (lines[i] ?? '').length + 1;
      return at + indent + column;
    }
    default:
      return undefined;
  }
}

export interface CompileOptions {
  parsed: ParsedYaml;
  text: string;
  /** When given, approver and group names must exist in it. */
  principals: Principals | undefined;
}

/** Compiles the rules, or returns every problem found. */
export function compileRules(
  document: PolicyDocument,
  options: CompileOptions,
): { rules: CompiledRule[]; problems: YamlProblem[] } {
  const { parsed, text, principals } = options;
  const problems: YamlProblem[] = [];
  const problem = (path: (string | number)[], message: string, where = locate(parsed, path)) =>
    problems.push({ where, path: keyPath(path), message });

  /** Reports unknown, misplaced and repeated names; true when the set is usable. */
  const checkNames = (path: (string | number)[], approvers: string[], groups: string[]): boolean => {
    const before = problems.length;
    const seen = new Set<string>();
    approvers.forEach((name, i) => {
      if (seen.has(name)) problem([...path, 'approvers', i], `${JSON.stringify(name)} is listed twice`);
      seen.add(name);
      if (principals === undefined || principals.byName(name) !== undefined) return;
      if (principals.hasGroup(name)) {
        problem([...path, 'approvers', i], `${JSON.stringify(name)} is a group, not a principal; list it under groups`);
      } else {
        const hint = suggest(name, principals.principalNames());
        problem(
          [...path, 'approvers', i],
          `unknown principal ${JSON.stringify(name)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ' (not in the principals file)'}`,
        );
      }
    });
    const seenGroups = new Set<string>();
    groups.forEach((name, i) => {
      if (seenGroups.has(name)) problem([...path, 'groups', i], `${JSON.stringify(name)} is listed twice`);
      seenGroups.add(name);
      if (principals === undefined || principals.hasGroup(name)) return;
      if (principals.byName(name) !== undefined) {
        problem([...path, 'groups', i], `${JSON.stringify(name)} is a principal, not a group; list it under approvers`);
      } else {
        const hint = suggest(name, principals.groupNames());
        problem(
          [...path, 'groups', i],
          `unknown group ${JSON.stringify(name)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ' (not in the principals file)'}`,
        );
      }
    });
    if (approvers.length === 0 && groups.length === 0)
      problem(path, 'names nobody: give at least one of approvers or groups');
    return problems.length === before;
  };

  const rules = document.rules.map((rule, index): CompiledRule => {
    const at = ['rules', index];
    let condition: CompiledCondition | undefined;
    if (rule.when !== undefined) {
      const compiled = compileCondition(rule.when);
      if (isCelProblem(compiled)) {
        const offset = scalarOffset(parsed, text, [...at, 'when'], compiled.offset, rule.when);
        let where = locate(parsed, [...at, 'when']);
        if (offset !== undefined) {
          const pos = parsed.lines.linePos(offset);
          where = `${parsed.file}:${pos.line}:${pos.col}`;
        }
        problem([...at, 'when'], compiled.message, where);
      } else {
        condition = compiled;
      }
    }
    const approval = rule.approval;
    if (approval !== undefined) {
      const usable = checkNames([...at, 'approval'], approval.approvers, approval.groups);
      const pool = usable ? approverPool(approval.approvers, approval.groups, principals) : undefined;
      for (const key of ['required', 'deny_threshold'] as const) {
        if (pool !== undefined && approval[key] > pool.length) {
          problem(
            [...at, 'approval', key],
            `${key} is ${approval[key]} but only ${pool.length} distinct ${pool.length === 1 ? 'person' : 'people'} can approve${pool.length > 0 ? ` (${pool.join(', ')})` : ''}`,
          );
        }
      }
    }
    if (rule.break_glass !== undefined)
      checkNames([...at, 'break_glass'], rule.break_glass.approvers, rule.break_glass.groups);
    const match = compileMatch(rule);
    const criteria = match.criteria;
    return {
      index,
      name: rule.name,
      decision: rule.decision,
      source: rule,
      operations: match.operations,
      workloadKeys: match.workloads?.map(literalKey),
      trustDomains: match.trustDomains,
      resourceKeys: match.resources?.map(literalKey),
      matchesStatic: (input) => {
        for (const c of criteria) if (!c.test(input)) return false;
        return true;
      },
      whyNot: (input) => {
        for (const c of criteria) if (!c.test(input)) return c.why(input);
        return undefined;
      },
      condition,
      ticketPattern: approval?.ticket_pattern === undefined ? undefined : new RegExp(approval.ticket_pattern, 'u'),
    };
  });

  const names = new Set(document.rules.map((r) => r.name));
  document.tests.forEach((test, i) => {
    const rule = test.expect.rule;
    if (typeof rule === 'string' && !names.has(rule)) {
      const hint = suggest(rule, [...names]);
      problem(
        ['tests', i, 'expect', 'rule'],
        `no rule is named ${JSON.stringify(rule)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}`,
      );
    }
  });
  return { rules, problems };
}

/**
 * Everyone who could approve under one approver set, when that is knowable
 * without asking Slack: named principals plus members of static groups.
 * Undefined when a group's members are not known here.
 */
export function approverPool(
  approvers: readonly string[],
  groups: readonly string[],
  principals: Principals | undefined,
): string[] | undefined {
  const pool = new Set(approvers);
  for (const group of groups) {
    const members = principals?.staticMembers(group);
    if (members === undefined) return undefined;
    for (const m of members) pool.add(m);
  }
  return [...pool];
}
