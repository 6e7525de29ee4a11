// The policy file format, stage one: the shape of every key, with limits. What
// needs more than one key or another file (CEL, principal names, combined limits)
// is checked in compile.ts, still with file:line:col. docs/policy.md explains it;
// docs/policy.schema.json is generated from this schema (policy-schema.test.ts).
import { z } from 'zod';
import {
  canonicalPrincipalPattern,
  MAX_PRINCIPAL_NAME_INPUT,
  normalizePrincipalName,
  PRINCIPAL_NAME_GRAMMAR,
  principalNameProblem,
  principalPatternProblem,
} from './principal-name.js';
import { duration } from '../config/duration.js';
import { suggest } from '../config/yaml-file.js';
import { parseSpiffeId, parseTrustDomain } from '../identity/spiffe-id.js';
import { globProblem, MAX_GLOB_LENGTH } from './glob.js';

export const MAX_POLICY_BYTES = 1024 * 1024;
export const MAX_RULES = 5000;
export const MAX_TESTS = 2000;
export const MAX_FREEZE_WINDOWS = 256;
export const MAX_CEL_LENGTH = 4096;
export const MAX_TICKET_PATTERN_LENGTH = 256;
/** Patterns per match key (a list of alternatives). */
export const MAX_PATTERNS = 256;
/** People or groups named by one rule. */
export const MAX_APPROVERS = 256;
export const MAX_REQUIRED = 32;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
export const DEFAULT_APPROVAL_TIMEOUT_MS = 15 * MINUTE;
export const DEFAULT_RATE_WINDOW_MS = HOUR;

export const DECISIONS = ['allow', 'deny', 'approve', 'break_glass'] as const;
export type RuleDecision = (typeof DECISIONS)[number];
export const STEP_UPS = ['click', 'confirm', 'webauthn'] as const;

/** An enum whose error suggests the value meant ("did you mean approve?"). */
function choice<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, {
    error: (issue) => {
      const got = issue.input;
      const hint = typeof got === 'string' ? suggest(got, values) : undefined;
      return `expected one of ${values.join(', ')}, got ${JSON.stringify(got)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}`;
    },
  });
}

const glob = (what: string) =>
  z.string().superRefine((pattern, ctx) => {
    const problem = globProblem(pattern);
    if (problem !== undefined)
      ctx.addIssue({ code: 'custom', message: `bad ${what} glob ${JSON.stringify(pattern)}: ${problem}` });
  });

/** A SPIFFE ID, or a glob over SPIFFE IDs whose shape is still spiffe://<trust domain>/<path>. */
const workloadPattern = z.string().superRefine((pattern, ctx) => {
  const problem = globProblem(pattern);
  if (problem !== undefined) {
    ctx.addIssue({ code: 'custom', message: `bad workload glob ${JSON.stringify(pattern)}: ${problem}` });
    return;
  }
  // Checking the pattern with each wildcard replaced by one legal character
  // catches typos (a missing "//", an uppercase trust domain) early.
  const sample = pattern.replace(/\*\*|\*|\?/g, 'x');
  try {
    const id = parseSpiffeId(sample);
    if (id.path === '')
      ctx.addIssue({
        code: 'custom',
        message: `workload ${JSON.stringify(pattern)} names a trust domain, not a workload; use trust_domain: ${id.trustDomain}, or spiffe://${id.trustDomain}/** for every workload in it`,
      });
  } catch (e) {
    const reason = (e as Error).message.replace(/^spiffeid: /, '').replace(/ \(got .*\)$/s, '');
    ctx.addIssue({
      code: 'custom',
      message: `workload ${JSON.stringify(pattern)} is not a SPIFFE ID or SPIFFE ID pattern: ${reason}`,
    });
  }
});

const trustDomain = z.string().superRefine((name, ctx) => {
  try {
    parseTrustDomain(name);
  } catch (e) {
    ctx.addIssue({
      code: 'custom',
      message: `${JSON.stringify(name)} is not a trust domain name: ${(e as Error).message.replace(/^spiffeid: /, '').replace(/ \(got .*\)$/s, '')}`,
    });
  }
});

const oneOrMany = <T extends z.ZodType>(item: T) => z.union([item, z.array(item).min(1).max(MAX_PATTERNS)]);
export const ruleNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ruleName = z
  .string()
  .regex(ruleNamePattern, 'expected 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit');
/** A principal or group name; lists of them are folded to the canonical form (policy/principal-name.ts): "Alice" is alice. */
const principalName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,253}$/,
    'expected a principal or group name: a-z 0-9 . _ + - (or an e-mail address), starting with a letter or digit',
  )
  .superRefine((raw, ctx) => {
    const problem = principalNameProblem(raw);
    if (problem !== undefined)
      ctx.addIssue({
        code: 'custom',
        message: `${JSON.stringify(raw)} ${problem}; expected ${PRINCIPAL_NAME_GRAMMAR}`,
      });
  });
// Folded after the list is checked (a transform on each item would drop the list's default from the JSON Schema).
const fold = (names: string[]): string[] => names.map((n) => normalizePrincipalName(n, 'name'));
const principalNames = () => z.array(principalName).max(MAX_APPROVERS).default([]).transform(fold);
const optionalPrincipalNames = () =>
  z
    .array(principalName)
    .max(MAX_APPROVERS)
    .optional()
    .transform((names) => (names === undefined ? undefined : fold(names)));
/** A glob over the human a request is made for, folded like the names it is matched against. */
const onBehalfOfPattern = glob('on_behalf_of').superRefine((raw, ctx) => {
  const problem = principalPatternProblem(raw);
  if (problem !== undefined)
    ctx.addIssue({ code: 'custom', message: `bad on_behalf_of pattern ${JSON.stringify(raw)}: ${problem}` });
});
const slackChannel = z
  .string()
  .regex(
    /^(#?[a-z0-9][a-z0-9._-]{0,79}|[CG][A-Z0-9]{2,20})$/,
    'expected a Slack channel name such as #deploys or a channel id such as C0DEPLOYS',
  );
const isoTime = z
  .string()
  .regex(
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/,
    'expected an RFC 3339 time with a zone, e.g. 2026-12-20T00:00:00Z',
  )
  .transform((text, ctx) => {
    const ms = Date.parse(text);
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(text)} is not a valid time` });
      return z.NEVER;
    }
    return ms;
  });

export const timeZone = z
  .string()
  .max(64)
  .superRefine((zone, ctx) => {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: zone });
    } catch {
      const hint = suggest(zone, Intl.supportedValuesOf('timeZone'));
      ctx.addIssue({
        code: 'custom',
        message: `unknown time zone ${JSON.stringify(zone)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}; expected an IANA name such as Europe/Berlin or UTC`,
      });
    }
  });

export const matchSchema = z
  .object({
    /** Caller SPIFFE ID: exact, or a glob ("/*" one segment, "/**" any depth). */
    workload: oneOrMany(workloadPattern)
      .optional()
      .describe(
        'Caller SPIFFE ID: exact, or a glob ("*" one path segment, "**" any depth, "?" one character). One or a list.',
      ),
    trust_domain: oneOrMany(trustDomain).optional().describe("The caller's trust domain. One or a list."),
    operation: oneOrMany(glob('operation')).optional().describe('Operation name or glob, e.g. deploy. One or a list.'),
    resource: oneOrMany(glob('resource')).optional().describe('Resource glob, e.g. prod/* or prod/**. One or a list.'),
    /** The human an agent acts for; never matches a request that acts for nobody. */
    // Folded outside the union: a failing transform inside one would hide the message behind "Invalid input".
    on_behalf_of: oneOrMany(onBehalfOfPattern)
      .transform((p) => (Array.isArray(p) ? p.map(canonicalPrincipalPattern) : canonicalPrincipalPattern(p)))
      .optional()
      .describe(
        'The human an agent acts for (name, e-mail or glob; compared in lower case); never matches a request that acts for nobody.',
      ),
  })
  .strict();

const celCondition = z
  .string()
  .min(1, 'a condition cannot be empty')
  .max(MAX_CEL_LENGTH, `a condition is at most ${MAX_CEL_LENGTH} characters`);

const notifySchema = z
  .object({
    slack_channels: z.array(slackChannel).max(16).default([]),
    /** Also DM every individual approver (named or through a group). */
    direct_messages: z.boolean().default(true),
  })
  .strict();

const ticketPattern = z
  .string()
  .min(1)
  .max(MAX_TICKET_PATTERN_LENGTH)
  .superRefine((pattern, ctx) => {
    try {
      new RegExp(pattern, 'u');
    } catch (e) {
      ctx.addIssue({
        code: 'custom',
        message: `ticket_pattern is not a valid regular expression: ${(e as Error).message}`,
      });
    }
  });

export const approvalSchema = z
  .object({
    approvers: principalNames().describe('Principal names (from the principals file) who may approve.'),
    groups: principalNames().describe('Group names whose members may approve.'),
    /** Distinct people whose approval is needed. */
    required: z
      .number()
      .int()
      .min(1)
      .max(MAX_REQUIRED)
      .default(1)
      .describe('Distinct people whose approval is needed (N of M).'),
    /** Deny votes that end the request DENIED. */
    deny_threshold: z
      .number()
      .int()
      .min(1)
      .max(MAX_REQUIRED)
      .default(1)
      .describe('Deny votes that end the request DENIED.'),
    timeout: duration(SECOND, 7 * DAY)
      .default(DEFAULT_APPROVAL_TIMEOUT_MS)
      .describe('How long approvers have, e.g. 15m (1s-168h).'),
    /** Whether the requester and the human it acts for may count as approvers. */
    allow_self_approval: z
      .boolean()
      .default(false)
      .describe('Let the requester and the human it acts for count as approvers.'),
    step_up: choice(STEP_UPS)
      .default('click')
      .describe(
        'click: approve with a click; confirm: re-type the resource and give a reason; webauthn: a passkey assertion bound to the request, in the approver console.',
      ),
    /** For webauthn: accept a passkey sign-in this recent instead of an assertion per vote. */
    step_up_max_age: duration(10 * SECOND, DAY)
      .optional()
      .describe(
        'step_up webauthn only: accept a passkey sign-in to the console at most this old (e.g. 5m) instead of an assertion made for each vote.',
      ),
    reason_required: z.boolean().default(false).describe('The request must carry a reason.'),
    ticket_pattern: ticketPattern.optional().describe("A regular expression the request's ticket must match."),
    notify: notifySchema.prefault({}),
  })
  .strict()
  .superRefine((approval, ctx) => {
    if (approval.step_up_max_age !== undefined && approval.step_up !== 'webauthn') {
      ctx.addIssue({
        code: 'custom',
        message: `step_up_max_age applies to step_up webauthn, not ${approval.step_up}`,
        path: ['step_up_max_age'],
      });
    }
  });

export const breakGlassSchema = z
  .object({
    /** Who is told at once; every one of them, always. */
    approvers: principalNames(),
    groups: principalNames(),
    slack_channels: z.array(slackChannel).max(16).default([]),
  })
  .strict();

export const ruleSchema = z
  .object({
    name: ruleName,
    description: z.string().max(1024).optional(),
    match: matchSchema.prefault({}),
    /** A CEL condition over request, caller and context; the rule matches only when it is true. */
    when: celCondition
      .optional()
      .describe('A CEL condition over request, caller and context; the rule matches only when it is true.'),
    decision: choice(DECISIONS).describe(
      'deny overrides everything, then break_glass (with a reason), approve, allow; no match is deny.',
    ),
    /** Credential lifetime cap for allow / approve / break_glass. */
    ttl: duration(10 * SECOND, DAY)
      .optional()
      .describe('Credential lifetime cap, e.g. 5m (10s-24h).'),
    /** Shown to the caller when this rule denies. */
    message: z.string().min(1).max(1024).optional().describe('Shown to the caller when this rule denies.'),
    approval: approvalSchema.optional(),
    break_glass: breakGlassSchema.optional(),
  })
  .strict()
  .superRefine((rule, ctx) => {
    const section = (key: 'approval' | 'break_glass', decision: RuleDecision) => {
      if (rule.decision === decision && rule[key] === undefined) {
        ctx.addIssue({ code: 'custom', message: `decision ${decision} needs an ${key} section`, path: [key] });
      }
      if (rule.decision !== decision && rule[key] !== undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `the ${key} section only applies to decision ${decision}, not ${rule.decision}`,
          path: [key],
        });
      }
    };
    section('approval', 'approve');
    section('break_glass', 'break_glass');
    if (rule.decision === 'deny' && rule.ttl !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'ttl does not apply to decision deny', path: ['ttl'] });
    }
    if (rule.decision !== 'deny' && rule.message !== undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `message is shown when a rule denies; it does not apply to decision ${rule.decision}`,
        path: ['message'],
      });
    }
  });

export const settingsSchema = z
  .object({
    /** Zone of context.hour, context.weekday, context.time and context.date. */
    time_zone: timeZone.default('UTC').describe('IANA zone of context.hour, weekday, time and date.'),
    /** Window over which context.request_rate counts the caller's requests. */
    rate_window: duration(SECOND, DAY)
      .default(DEFAULT_RATE_WINDOW_MS)
      .describe('Window of context.request_rate, e.g. 1h.'),
  })
  .strict();

export const freezeWindowSchema = z
  .object({
    name: ruleName,
    description: z.string().max(1024).optional(),
    start: isoTime,
    end: isoTime,
  })
  .strict()
  .superRefine((w, ctx) => {
    // Only when both times parsed; a bad start is reported on its own.
    if (typeof w.start === 'number' && typeof w.end === 'number' && w.start >= w.end) {
      ctx.addIssue({ code: 'custom', message: 'end must be after start', path: ['end'] });
    }
  });

const jsonObject = z.record(z.string(), z.json());

export const testCaseSchema = z
  .object({
    name: z.string().min(1).max(256),
    input: z
      .object({
        workload: z.string().superRefine((id, ctx) => {
          try {
            if (parseSpiffeId(id).path === '')
              ctx.addIssue({ code: 'custom', message: `${id} names a trust domain, not a workload` });
          } catch (e) {
            ctx.addIssue({ code: 'custom', message: (e as Error).message });
          }
        }),
        operation: z.string().min(1).max(128),
        resource: z.string().min(1).max(512),
        parameters: jsonObject.default({}),
        reason: z.string().max(2048).default(''),
        ticket: z.string().max(128).default(''),
        on_behalf_of: z
          .string()
          .max(MAX_PRINCIPAL_NAME_INPUT)
          .default('')
          .transform((raw, ctx) => {
            if (raw === '') return '';
            const problem = principalNameProblem(raw);
            if (problem === undefined) return normalizePrincipalName(raw, 'on_behalf_of');
            ctx.addIssue({
              code: 'custom',
              message: `${JSON.stringify(raw)} ${problem}; expected ${PRINCIPAL_NAME_GRAMMAR}`,
            });
            return z.NEVER;
          }),
        /** Evaluation time; default the time the tests run. */
        at: isoTime.optional(),
        /** How long ago the caller's SVID was issued, and how long it has left. */
        svid_age: duration(0, 366 * DAY).default(MINUTE),
        svid_remaining: duration(0, 366 * DAY).default(HOUR),
        /** context.request_rate for this case. */
        request_rate: z.number().int().min(0).max(1_000_000_000).default(1),
        /** The caller's SVID was exchanged for an OIDC token from this issuer (CEL workload.issuer)... */
        oidc_issuer: z
          .string()
          .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected an issuer name from identity.oidc, e.g. github')
          .optional(),
        /** ...with these claims (CEL workload.claims). */
        claims: jsonObject.optional(),
      })
      .strict(),
    expect: z
      .object({
        decision: choice(DECISIONS),
        /** The deciding rule; null for the default deny. */
        rule: z.union([ruleName, z.null()]).optional(),
        /** Text the deny message must contain. */
        message: z.string().min(1).max(1024).optional(),
        required: z.number().int().min(1).max(MAX_REQUIRED).optional(),
        approvers: optionalPrincipalNames(),
        groups: optionalPrincipalNames(),
        step_up: choice(STEP_UPS).optional(),
        timeout: duration(SECOND, 7 * DAY).optional(),
        ttl: duration(10 * SECOND, DAY).optional(),
      })
      .strict(),
  })
  .strict();

export const policySchema = z
  .object({
    version: z.literal(1, { error: (issue) => `expected version: 1, got ${JSON.stringify(issue.input)}` }),
    settings: settingsSchema.prefault({}),
    freeze_windows: z.array(freezeWindowSchema).max(MAX_FREEZE_WINDOWS).default([]),
    rules: z.array(ruleSchema).max(MAX_RULES, `a policy has at most ${MAX_RULES} rules`),
    tests: z.array(testCaseSchema).max(MAX_TESTS, `a policy has at most ${MAX_TESTS} test cases`).default([]),
  })
  .strict()
  .superRefine((policy, ctx) => {
    const unique = (names: string[], what: string, path: (i: number) => (string | number)[]) => {
      const seen = new Map<string, number>();
      names.forEach((name, i) => {
        const first = seen.get(name);
        if (first !== undefined)
          ctx.addIssue({
            code: 'custom',
            message: `${what} ${JSON.stringify(name)} is already used by entry ${first}`,
            path: path(i),
          });
        else seen.set(name, i);
      });
    };
    unique(
      policy.rules.map((r) => r.name),
      'rule name',
      (i) => ['rules', i, 'name'],
    );
    unique(
      policy.freeze_windows.map((w) => w.name),
      'freeze window name',
      (i) => ['freeze_windows', i, 'name'],
    );
    unique(
      policy.tests.map((t) => t.name),
      'test name',
      (i) => ['tests', i, 'name'],
    );
  });

export type PolicyDocument = z.output<typeof policySchema>;
export type PolicyRule = z.output<typeof ruleSchema>;
export type ApprovalSection = z.output<typeof approvalSchema>;
export type BreakGlassSection = z.output<typeof breakGlassSchema>;
export type PolicyTestCase = z.output<typeof testCaseSchema>;
export type FreezeWindow = z.output<typeof freezeWindowSchema>;
export { MAX_GLOB_LENGTH };
