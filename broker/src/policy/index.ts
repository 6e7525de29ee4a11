// Policy: what the rest of the broker uses. The file format is in schema.ts and
// docs/policy.md; the decision contract in decision.ts.
export type { ApprovalRequirement, Decision, NotifyTargets, PolicyInput, StepUp } from './decision.js';
export { Policy, policyDigest, type Explanation, type PolicyOptions, type RuleTrace } from './policy.js';
export { describeDecision, whoCanApprove } from './combine.js';
export { runPolicyTests, assertPolicyTestsPass, type PolicyTestResult } from './policy-tests.js';
export { loadPolicyFile, PolicyReloader, type ReloadOutcome, type ReloadTrigger } from './reloader.js';
export { RedisRequestRate, type RequestRateCounter } from './request-rate.js';
export { Principals, type SlackUsergroupResolver } from './principals.js';
export { policyJsonSchema } from './json-schema.js';
export { normalizePrincipalName, canonicalPrincipalName, PRINCIPAL_NAME_GRAMMAR } from './principal-name.js';
