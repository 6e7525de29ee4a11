// The policy file format. Rules match a request and decide deny / allow / approve;
// a request no rule matches is denied.
import { z } from 'zod';
import { duration } from '../config/duration.js';
import { globProblem } from './glob.js';

export const MAX_POLICY_BYTES = 1024 * 1024;
export const MAX_RULES = 5000;
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const glob = z
  .string()
  .max(512)
  .superRefine((pattern, ctx) => {
    const problem = globProblem(pattern);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `bad glob ${JSON.stringify(pattern)}: ${problem}` });
  });
const oneOrMany = <T extends z.ZodType>(item: T) => z.union([item, z.array(item).min(1).max(256)]);
const ruleName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'expected 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit');
const principalName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/, 'expected a principal or group name');

export const matchSchema = z
  .object({
    workload: oneOrMany(glob).optional(),
    trust_domain: oneOrMany(z.string().min(1).max(255)).optional(),
    operation: oneOrMany(glob).optional(),
    resource: oneOrMany(glob).optional(),
  })
  .strict();

export const approvalSchema = z
  .object({
    approvers: z.array(principalName).min(1, 'an approve rule needs at least one approver').max(256),
    required: z.number().int().min(1).max(32).default(1),
    timeout: duration(SECOND, 7 * DAY).default(15 * MINUTE),
  })
  .strict()
  .refine((a) => a.required <= new Set(a.approvers).size, {
    message: 'required is larger than the number of distinct approvers',
    path: ['required'],
  });

export const ruleSchema = z
  .object({
    name: ruleName,
    description: z.string().max(1024).optional(),
    match: matchSchema.prefault({}),
    decision: z.enum(['allow', 'deny', 'approve']),
    /** Credential lifetime cap for allow / approve. */
    ttl: duration(10 * SECOND, DAY).optional(),
    /** Shown to the caller when this rule denies. */
    message: z.string().max(1024).optional(),
    approval: approvalSchema.optional(),
  })
  .strict()
  .superRefine((rule, ctx) => {
    if (rule.decision === 'approve' && rule.approval === undefined) {
      ctx.addIssue({ code: 'custom', message: 'decision approve needs an approval section', path: ['approval'] });
    }
    if (rule.decision !== 'approve' && rule.approval !== undefined) {
      ctx.addIssue({ code: 'custom', message: `an approval section only applies to decision approve, not ${rule.decision}`, path: ['approval'] });
    }
    if (rule.decision === 'deny' && rule.ttl !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'ttl does not apply to decision deny', path: ['ttl'] });
    }
  });

export const policySchema = z
  .object({
    version: z.literal(1),
    rules: z.array(ruleSchema).max(MAX_RULES),
  })
  .strict()
  .superRefine((policy, ctx) => {
    const seen = new Map<string, number>();
    policy.rules.forEach((rule, i) => {
      const first = seen.get(rule.name);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', message: `rule name ${JSON.stringify(rule.name)} is already used by rules[${first}]`, path: ['rules', i, 'name'] });
      } else {
        seen.set(rule.name, i);
      }
    });
  });

export type PolicyDocument = z.output<typeof policySchema>;
export type PolicyRule = z.output<typeof ruleSchema>;
export type ApprovalRequirement = z.output<typeof approvalSchema>;
