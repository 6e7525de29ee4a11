// A rule as compile.ts leaves it: what the index (rule-index.ts), the combination of
// matched rules (combine.ts) and the policy use, in a module of its own so that none
// of them needs the compiler (which files rules under the index's keys).
import type { CompiledCondition } from './cel.js';
import type { PolicyInput } from './decision.js';
import type { PolicyRule, RuleDecision } from './schema.js';

export interface CompiledRule {
  /** Position in the file; rules are reported and combined in file order. */
  readonly index: number;
  readonly name: string;
  readonly decision: RuleDecision;
  readonly source: PolicyRule;
  /** Literal operations, for the index; undefined when any operation matches or a glob is used. */
  readonly operations: readonly string[] | undefined;
  /** Index keys of the workload patterns (see rule-index.ts); undefined when any caller may match. */
  readonly workloadKeys: readonly string[] | undefined;
  /** The trust_domain key, for the index when there are no workload patterns. */
  readonly trustDomains: readonly string[] | undefined;
  /** Index keys of the resource patterns; undefined when any resource may match. */
  readonly resourceKeys: readonly string[] | undefined;
  /** Every match key (not the condition): cheap, no allocation. */
  matchesStatic(input: PolicyInput): boolean;
  /** Why the match keys do not match this input, or undefined when they do. */
  whyNot(input: PolicyInput): string | undefined;
  readonly condition: CompiledCondition | undefined;
  readonly ticketPattern: RegExp | undefined;
}
