// What an exchanged SVID's token said (identity.oidc): the claims policy reads and approvers
// see. Pure functions of the claims, so requests/ and the console can use them without the
// exchange itself (exchange/oidc-exchange.ts).
import type { JsonObject } from '@countersign/proto';

/** Claims worth an approver's eye, in this order, when the token has them (GitHub, GitLab, Kubernetes). */
const DISPLAYED_CLAIMS = [
  'repository',
  'project_path',
  'workflow',
  'job_workflow_ref',
  'ref',
  'environment',
  'event_name',
  'pipeline_source',
  'run_id',
  'run_attempt',
  'pipeline_id',
  'job_id',
  'sha',
  'actor',
  'triggering_actor',
  'user_login',
  'user_email',
  'kubernetes.io.namespace',
  'kubernetes.io.serviceaccount.name',
  'kubernetes.io.pod.name',
  'sub',
];

/** The run's page, from a GitHub or GitLab token's claims (shown as text, never as a link). */
export function runUrl(claims: JsonObject): string | undefined {
  const { iss, repository, run_id: runId, project_path: projectPath, pipeline_id: pipelineId } = claims;
  if (typeof iss !== 'string' || !/^https?:\/\//.test(iss)) return undefined;
  if (typeof repository === 'string' && typeof runId === 'string') {
    // github.com's tokens come from token.actions.githubusercontent.com; GitHub Enterprise Server's from https://HOST/_services/token.
    const site =
      iss === 'https://token.actions.githubusercontent.com'
        ? 'https://github.com'
        : iss.endsWith('/_services/token')
          ? new URL(iss).origin
          : undefined;
    return site === undefined ? undefined : `${site}/${repository}/actions/runs/${runId}`;
  }
  // GitLab's iss is the instance's URL.
  if (typeof projectPath === 'string' && typeof pipelineId === 'string')
    return `${iss.replace(/\/$/, '')}/${projectPath}/-/pipelines/${pipelineId}`;
  return undefined;
}

/** The claims approvers see, as short strings (what a Slack card or the console shows, inert). */
export function displayedClaims(oidc: { issuer: string; claims: JsonObject }): {
  issuer: string;
  claims: Record<string, string>;
} {
  const claims: Record<string, string> = {};
  const run = runUrl(oidc.claims);
  if (run !== undefined) claims.run = run.slice(0, 512);
  for (const name of DISPLAYED_CLAIMS) {
    const value = claimAt(oidc.claims, name);
    if (typeof value === 'string' ? value !== '' : typeof value === 'number' || typeof value === 'boolean')
      claims[name] = String(value).slice(0, 256);
  }
  return { issuer: oidc.issuer, claims };
}

/** What the token of an exchanged SVID said, as policy and approvers see it. */
export interface ExchangedClaims {
  /** The issuer's name (identity.oidc[].name). */
  issuer: string;
  subject: string;
  /** The token's claims (registered ones included), JSON. */
  claims: JsonObject;
  /** The person who started the run, when the issuer maps an actor claim. */
  actor?: { claim: string; value: string; field: string };
  /** That person as a principal name (or their login, normalised, when no principal has it): the request's on_behalf_of. */
  onBehalfOf?: string;
  /** Every on_behalf_of that names that same person (principal name, e-mail), canonical. */
  actorNames?: string[];
}

/** A claim by name: the whole name first (kubernetes.io is one claim), then dotted steps into objects. */
export function claimAt(claims: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  const parts = name.split('.');
  for (let i = parts.length - 1; i > 0; i--) {
    const head = parts.slice(0, i).join('.');
    if (Object.hasOwn(claims, head)) {
      const inner = claims[head];
      if (inner !== null && typeof inner === 'object' && !Array.isArray(inner))
        return claimAt(inner as Record<string, unknown>, parts.slice(i).join('.'));
      return undefined;
    }
  }
  return undefined;
}
