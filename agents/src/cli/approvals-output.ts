// What the countersign CLI prints about pending requests and votes, for people.
import { createInterface } from 'node:readline/promises';
import { RequestState, VoteDecision, type Request, type Vote } from '@countersign/proto';
import type { OperationResult } from '../sdk/client.js';

type Print = (line: string) => void;

/** "14m05s" until a deadline, or "expired". */
export function timeLeft(until: Date | undefined, now = Date.now()): string {
  if (until === undefined) return '?';
  const s = Math.floor((until.getTime() - now) / 1000);
  if (s <= 0) return 'expired';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}

const deciders = (r: Request | undefined): string =>
  r ? [...r.approvers, ...r.groups.map((g) => `group ${g}`)].join(', ') : '';

/**
 * Who can approve, as the broker said when it answered "pending": it knows who the requester's
 * own people are (never their approvers). A request only read back (watch) lists every approver.
 */
export function whoCanApprove(result: OperationResult): string {
  const fromBroker = / approval\(s\) from (.+)$/.exec(result.message)?.[1];
  return fromBroker ?? deciders(result.request);
}

export function printPending(result: OperationResult, print: Print): void {
  const r = result.request;
  const approvals = r ? r.votes.filter((v) => v.decision === VoteDecision.VOTE_DECISION_APPROVE).length : 0;
  const needs = r ? `${approvals} of ${r.approvalsRequired} approval(s) from ${whoCanApprove(result)}` : result.message;
  print(`pending approval: request ${result.requestId} (rule ${result.rule}); ${needs}`);
  if (result.expiresAt) print(`expires at ${result.expiresAt.toISOString()} (in ${timeLeft(result.expiresAt)})`);
  print(
    r?.stepUp === 'webauthn'
      ? `an approver approves it with a passkey in the approver console (the Slack card and countersign approvals approve ${result.requestId} name the page)`
      : `an approver runs: countersign approvals approve ${result.requestId}`,
  );
}

export function voteLine(vote: Vote, request: Request | undefined): string {
  const approvals = request ? request.votes.filter((v) => v.decision === VoteDecision.VOTE_DECISION_APPROVE).length : 0;
  const what = vote.decision === VoteDecision.VOTE_DECISION_APPROVE ? 'approved' : 'denied';
  const progress = request ? ` (${approvals} of ${request.approvalsRequired} approval(s))` : '';
  return `${vote.principal} ${what} via ${vote.channel}${vote.reason ? `: ${vote.reason}` : ''}${progress}`;
}

const shorten = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 3)}...` : text);

/**
 * Text for a terminal: bidi overrides, zero-width and other invisible characters, and C0/C1
 * controls (a terminal obeys ESC and CSI) are shown as \uXXXX, never passed through.
 */
export const visible = (text: string): string =>
  text.replace(HIDDEN, (c) => `\\u${(c.codePointAt(0) as number).toString(16).padStart(4, '0')}`);

/**
 * What a terminal would obey or not show: controls, format characters (bidi, zero-width), line
 * and paragraph separators, private-use, unassigned and lone surrogates; and what shows as
 * nothing or as a blank that is not a space (so it can pad a forged line or hide text): every
 * space separator but U+0020, the braille blank, and every default-ignorable code point (the
 * Hangul fillers, the combining grapheme joiner, the variation selectors, ...).
 */
const HIDDEN =
  /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Cs}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u2800\p{Default_Ignorable_Code_Point}]/gu;

/**
 * JSON for a terminal: the same text, with every HIDDEN character written as a JSON \\u escape
 * (UTF-16 units, so astral ones as a surrogate pair); JSON.stringify escapes only C0 controls.
 */
export const terminalJson = (value: unknown): string =>
  // A raw newline is the layout's own: inside strings JSON.stringify has escaped every C0 control.
  (JSON.stringify(value, null, 2) ?? '').replace(HIDDEN, (c) =>
    c === '\n'
      ? c
      : c
          .split('')
          .map((unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`)
          .join(''),
  );

/** How many characters of the parameters the table shows before it says how many more there are. */
export const LIST_PARAMETERS_CHARS = 48;

/** The parameters as one table cell: whole, or cut with the count left and where to see them whole. */
export function parametersCell(r: Pick<Request, 'id' | 'parametersJson'>, max = LIST_PARAMETERS_CHARS): string {
  return cutCell(r.parametersJson || '{}', r.id, max);
}

/** Untrusted text as one table cell: escaped, whole or cut with the count left and where to see it whole. */
function cutCell(text: string, id: string, max: number): string {
  const chars = [...text];
  if (chars.length <= max) return visible(text);
  return `${visible(chars.slice(0, max).join(''))}…(${chars.length - max} more chars, see countersign approvals show ${id})`;
}

/** How many characters of the workload claims the table shows, like the parameters. */
export const LIST_CLAIMS_CHARS = 48;

/**
 * The OIDC token claims of a request made with an exchanged SVID as one table cell
 * ("github: repository=my-org/app, ref=..."), cut like the parameters; "-" for a plain SVID.
 * Untrusted text: shown escaped (visible), never interpreted.
 */
export function workloadCell(r: Pick<Request, 'id' | 'workload'>, max = LIST_CLAIMS_CHARS): string {
  if (r.workload === undefined) return '-';
  // Values quoted (JSON), so a value holding ", name=..." cannot pass for another claim.
  const claims = Object.entries(r.workload.claims).map(([name, value]) => `${name}=${JSON.stringify(value)}`);
  return cutCell(`${r.workload.issuer}: ${claims.join(', ')}`, r.id, max);
}

export function printPendingList(requests: Request[], output: 'table' | 'json', print: Print): void {
  if (output === 'json') {
    print(
      terminalJson(
        requests.map((r) => ({
          id: r.id,
          requester: r.requester,
          on_behalf_of: r.onBehalfOf || undefined,
          operation: r.operation,
          resource: r.resource,
          parameters: JSON.parse(r.parametersJson || '{}') as unknown,
          parameters_digest: r.parametersDigest,
          reason: r.reason || undefined,
          ticket: r.ticket || undefined,
          rule: r.rule,
          approvals: r.votes.filter((v) => v.decision === VoteDecision.VOTE_DECISION_APPROVE).length,
          approvals_required: r.approvalsRequired,
          step_up: r.stepUp,
          expires_at: r.expiresAt?.toISOString(),
          workload: r.workload && { issuer: r.workload.issuer, claims: r.workload.claims },
        })),
      ),
    );
    return;
  }
  if (requests.length === 0) {
    print('no pending requests that you may decide');
    return;
  }
  // The claims column only when a listed request was made with an exchanged SVID.
  const withClaims = requests.some((r) => r.workload !== undefined);
  const rows = requests.map((r) => ({
    ID: r.id,
    REQUESTER: r.requester + (r.onBehalfOf ? ` (for ${r.onBehalfOf})` : ''),
    OPERATION: r.operation,
    RESOURCE: r.resource,
    PARAMETERS: parametersCell(r),
    // After what is decided on, so long claims never push it off screen.
    ...(withClaims ? { 'OIDC CLAIMS': workloadCell(r) } : {}),
    VOTES: `${r.votes.filter((v) => v.decision === VoteDecision.VOTE_DECISION_APPROVE).length}/${r.approvalsRequired}`,
    'STEP-UP': r.stepUp,
    'EXPIRES IN': timeLeft(r.expiresAt),
    REASON: visible(shorten(r.reason, 40)),
  }));
  const headers = Object.keys(rows[0] as object) as (keyof (typeof rows)[number])[];
  const widths = headers.map((h) => Math.max(h.length, ...rows.map((row) => (row[h] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  print(line(headers));
  for (const row of rows) print(line(headers.map((h) => row[h] ?? '')));
}

/** One pending request, everything an approver decides on, parameters whole and pretty-printed. */
export function printRequest(r: Request, print: Print): void {
  const approvals = r.votes.filter((v) => v.decision === VoteDecision.VOTE_DECISION_APPROVE).length;
  const rows: [string, string][] = [
    ['request', r.id],
    ['requester', r.requester],
    ...(r.onBehalfOf ? ([['on behalf of', r.onBehalfOf]] as [string, string][]) : []),
    ['operation', r.operation],
    ['resource', r.resource],
    ['rule', r.rule],
    ['reason', r.reason || '-'],
    ...(r.ticket ? ([['ticket', r.ticket]] as [string, string][]) : []),
    ['votes', `${approvals} of ${r.approvalsRequired} approval(s) from ${deciders(r)}`],
    ['step-up', r.stepUp],
    ['expires', r.expiresAt ? `${r.expiresAt.toISOString()} (in ${timeLeft(r.expiresAt)})` : '?'],
    ['parameters digest', r.parametersDigest],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) print(`${k.padEnd(width)}  ${visible(v)}`);
  for (const v of r.votes) print(`${' '.repeat(width)}  ${visible(voteLine(v, undefined))}`);
  if (r.workload !== undefined) {
    // Untrusted text from the token, escaped like the parameters: what the approvers see in Slack and the console.
    print(`identity from an OIDC token (issuer ${visible(r.workload.issuer)}):`);
    const claims = Object.entries(r.workload.claims);
    if (claims.length === 0) print('  (no claims to show)');
    // Values quoted (JSON): a value padded to wrap onto a line of its own cannot pass for a claim.
    for (const [name, value] of claims) print(`  ${visible(name)}: ${visible(JSON.stringify(value))}`);
  }
  print('parameters:');
  const pretty = JSON.stringify(JSON.parse(r.parametersJson || '{}'), null, 2);
  for (const line of pretty.split('\n')) print(`  ${visible(line)}`);
}

export function decisionSummary(request: Request, decision: 'approve' | 'deny'): string {
  const vote = decision === 'approve' ? 'approval' : 'denial';
  switch (request.state) {
    case RequestState.REQUEST_STATE_APPROVED:
      return `request ${request.id} is APPROVED (${request.resolutionMessage})`;
    case RequestState.REQUEST_STATE_DENIED:
      return `request ${request.id} is DENIED (${request.resolutionMessage})`;
    default: {
      const approvals = request.votes.filter((v) => v.decision === VoteDecision.VOTE_DECISION_APPROVE).length;
      return `your ${vote} of request ${request.id} is recorded; ${approvals} of ${request.approvalsRequired} approval(s), still pending`;
    }
  }
}

/** One line from the terminal (for step-up confirm). */
export async function promptLine(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return (await rl.question(question)).trim();
  } finally {
    rl.close();
  }
}
