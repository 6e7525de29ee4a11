// The console's pages, server-rendered. Values are escaped by html``; text that
// comes from a request goes through visible(), so hostile parameters stay inert
// and show what they are. Scripts come only from /static (see http.ts, CSP).
import type { StoredRequest, StoredVote } from '../requests/store.js';
import type { StoredPasskey } from '../passkeys/store.js';
import { hasDeceptive, html, raw, visible, type Html } from './html.js';
import { prettyLines, type ParameterChange } from './parameters.js';

export interface Viewer {
  principal: string;
  displayName: string;
  csrf: string;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const shortTime = (ms: number): string => `${iso(ms).slice(0, 16).replace('T', ' ')} UTC`;

export function timeLeft(ms: number): string {
  if (ms <= 0) return 'expired';
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${sec} s` : `${sec} s`;
}

const STEP_UP_LABEL: Record<string, string> = {
  click: 'one click',
  confirm: 're-type the resource',
  webauthn: 'passkey',
};

export function layout(title: string, body: Html, viewer?: Viewer): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Countersign</title>
<link rel="stylesheet" href="/static/console.css">
${viewer ? html`<meta name="csrf-token" content="${viewer.csrf}">` : ''}
<script src="/static/webauthn.js" defer></script>
<script src="/static/console.js" defer></script>
</head>
<body>
<header class="cs-top">
  <a class="cs-brand" href="/">Countersign</a>
  ${
    viewer
      ? html`<nav aria-label="Console">
    <a href="/">Pending requests</a>
    <a href="/passkeys">My passkeys</a>
    <form method="post" action="/sign-out" class="cs-inline"><input type="hidden" name="csrf" value="${viewer.csrf}"><button type="submit" class="cs-link">Sign out</button></form>
  </nav>
  <p class="cs-who">Signed in as <strong>${viewer.displayName}</strong> (${viewer.principal})</p>`
      : ''
  }
</header>
<main id="main">
${body}
</main>
</body>
</html>
`;
}

export function messageBlock(kind: 'error' | 'notice', text: string | undefined, code?: string): Html {
  if (text === undefined) return html``;
  return html`<div class="cs-${kind}" role="${kind === 'error' ? 'alert' : 'status'}">${visible(text)}${code ? html` <code>${code}</code>` : ''}</div>`;
}

// ---- sign-in ----

export function signInPage(input: {
  oidc: { displayName: string } | undefined;
  next: string;
  why?: string | undefined;
  error?: { code: string; message: string } | undefined;
}): Html {
  return layout(
    'Sign in',
    html`<h1>Sign in to approve</h1>
${messageBlock('notice', input.why)}
${input.error ? messageBlock('error', input.error.message, input.error.code) : ''}
${
  input.oidc
    ? html`<p><a class="cs-button cs-primary" href="/sign-in/oidc?next=${encodeURIComponent(input.next)}">Sign in with ${input.oidc.displayName}</a></p>`
    : ''
}
<p>Or open a one-time sign-in link: an operator prints one with <code>countersign-broker principals link YOUR-NAME</code>${
      input.oidc ? '' : ', and with Slack on, a request card offers “Sign in to approve”'
    }.</p>`,
  );
}

export function linkPage(input: { preCsrf: string; error?: { code: string; message: string } | undefined }): Html {
  return layout(
    'Sign in',
    html`<h1>Sign in to Countersign</h1>
${input.error ? messageBlock('error', input.error.message, input.error.code) : ''}
<p>This one-time link signs you in on this device. It works once, for a few minutes.</p>
<form method="post" action="/sign-in/link" id="cs-link-form">
  <input type="hidden" name="pre_csrf" value="${input.preCsrf}">
  <input type="hidden" name="token" value="" id="cs-link-token">
  <button type="submit" class="cs-button cs-primary">Sign in</button>
</form>
<noscript><p class="cs-error">JavaScript is needed to read the link (it never leaves your browser until you press Sign in).</p></noscript>`,
  );
}

/** After the identity provider: a same-site navigation, so the SameSite=Strict session cookie goes along. */
export function continuePage(next: string): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="0;url=${next}"><title>Signed in · Countersign</title><link rel="stylesheet" href="/static/console.css"></head>
<body><main id="main"><p>Signed in. <a href="${next}">Continue</a></p></main></body></html>
`;
}

export function errorPage(status: number, code: string, message: string, viewer?: Viewer): Html {
  return layout(
    `Error ${status}`,
    html`<h1>Something is not right</h1>${messageBlock('error', message, code)}<p><a href="/">Back to pending requests</a></p>`,
    viewer,
  );
}

// ---- pending list ----

export function listPage(
  viewer: Viewer,
  items: { request: StoredRequest; votes: StoredVote[] }[],
  now: number,
  passkeys: number,
  notice?: string,
): Html {
  const rows = items.map(({ request: r, votes }) => {
    const approvals = votes.filter((v) => v.decision === 'approve').length;
    return html`<li class="cs-card">
  <a class="cs-card-link" href="/requests/${r.id}"><span class="cs-op">${visible(r.operation)}</span> on <span class="cs-res">${visible(r.resource)}</span></a>
  <p class="cs-meta">by <code>${visible(r.requester)}</code>${r.onBehalfOf ? html` for <strong>${visible(r.onBehalfOf)}</strong>` : ''}</p>
  <p class="cs-meta">${approvals} of ${r.approvalsRequired} approval(s) · step-up ${STEP_UP_LABEL[r.stepUp] ?? r.stepUp} · expires <time datetime="${iso(r.expiresAt)}" data-countdown>in ${timeLeft(r.expiresAt - now)}</time></p>
</li>`;
  });
  return layout(
    'Pending requests',
    html`<h1>Pending requests</h1>
${messageBlock('notice', notice)}
${
  passkeys === 0
    ? html`<div class="cs-notice" role="status">You have no passkey yet. Rules with passkey step-up need one: <a href="/passkeys">register a passkey</a>.</div>`
    : ''
}
${items.length === 0 ? html`<p>Nothing is waiting for you.</p>` : html`<ul class="cs-list">${rows}</ul>`}`,
    viewer,
  );
}

// ---- one request ----

export interface RuleFacts {
  name: string;
  description: string | undefined;
  /** The rule's match keys and condition, as written in the policy. */
  criteria: { key: string; value: string }[];
  /** False when the policy changed since the request was decided. */
  samePolicy: boolean;
}

export interface RequestPageInput {
  viewer: Viewer;
  request: StoredRequest;
  votes: StoredVote[];
  now: number;
  whyNoVote: { code: string; message: string } | undefined;
  lastApproved: { requestId: string; approvedAt: number; changes: ParameterChange[]; truncated: boolean } | undefined;
  rule: RuleFacts | undefined;
  passkeys: number;
  /** Rules with step_up_max_age: the session's passkey sign-in is recent enough to approve without a new assertion. */
  recentPasskey: boolean;
  error?: { code: string; message: string } | undefined;
  notice?: string | undefined;
  reason?: string | undefined;
}

function parametersBlock(r: StoredRequest): Html {
  const lines = prettyLines(r.parametersJson);
  const flagged = hasDeceptive(r.parametersJson);
  return html`<section aria-labelledby="cs-params">
<h2 id="cs-params">Parameters <span class="cs-sub">exactly what is approved</span></h2>
${
  flagged
    ? html`<div class="cs-warning" role="note">These parameters contain characters that are invisible or change the direction of text. Each is shown as ⟦U+XXXX⟧ where it is.</div>`
    : ''
}
<pre class="cs-json" tabindex="0">${lines.map((line, i) => html`${i > 0 ? '\n' : ''}${visible(line)}`)}</pre>
<p class="cs-digest">SHA-256 of the RFC 8785 JSON: <code>${r.parametersDigest}</code></p>
</section>`;
}

function changesBlock(input: RequestPageInput): Html {
  const last = input.lastApproved;
  if (last === undefined)
    return html`<p class="cs-meta">No earlier approval of ${visible(input.request.operation)} on ${visible(input.request.resource)} is on record.</p>`;
  const items = last.changes.map(
    (c) =>
      html`<li><code>${visible(c.path)}</code>: ${
        c.kind === 'changed'
          ? html`<del>${visible(c.before ?? '')}</del> → <ins>${visible(c.after ?? '')}</ins>`
          : c.kind === 'added'
            ? html`added <ins>${visible(c.after ?? '')}</ins>`
            : html`removed <del>${visible(c.before ?? '')}</del>`
      }</li>`,
  );
  return html`<section aria-labelledby="cs-changes">
<h2 id="cs-changes">Changes since the last approval</h2>
<p class="cs-meta">Compared with request <code>${last.requestId}</code>, approved ${shortTime(last.approvedAt)}.</p>
${items.length === 0 ? html`<p>The parameters are the same.</p>` : html`<ul class="cs-changes">${items}</ul>`}
${last.truncated ? html`<p class="cs-meta">More changes are not listed.</p>` : ''}
</section>`;
}

function votesBlock(votes: StoredVote[], r: StoredRequest): Html {
  const approvals = votes.filter((v) => v.decision === 'approve').length;
  return html`<section aria-labelledby="cs-votes">
<h2 id="cs-votes">Votes <span class="cs-sub">${approvals} of ${r.approvalsRequired} approval(s)</span></h2>
${
  votes.length === 0
    ? html`<p>No votes yet.</p>`
    : html`<ul class="cs-votes">${votes.map(
        (v) =>
          html`<li><strong>${visible(v.principal)}</strong> ${v.decision === 'approve' ? 'approved' : 'denied'} ${shortTime(v.at)} via ${visible(v.channel)}${
            v.stepUp === 'webauthn' ? ' with a passkey' : v.stepUp === 'confirm' ? ', resource confirmed' : ''
          }${v.reason ? html`: <q>${visible(v.reason)}</q>` : ''}</li>`,
      )}</ul>`
}
</section>`;
}

function actionsBlock(input: RequestPageInput): Html {
  const r = input.request;
  if (r.state !== 'PENDING_APPROVAL')
    return html`<p class="cs-state">This request is ${r.state.toLowerCase().replace('_', ' ')}${r.resolutionMessage ? html`: ${visible(r.resolutionMessage)}` : ''}.</p>`;
  if (input.whyNoVote !== undefined)
    return html`<p class="cs-state" role="status">You cannot vote on this request: ${visible(input.whyNoVote.message)}</p>`;
  const webauthn = r.stepUp === 'webauthn';
  const passkeyMode = webauthn ? (input.recentPasskey ? 'recent' : 'assert') : 'none';
  let hint: Html = html``;
  if (webauthn && input.passkeys === 0) {
    hint = html`<p class="cs-warning">Approving needs a passkey, and you have none: <a href="/passkeys">register a passkey</a> first (Deny works without one).</p>`;
  } else if (passkeyMode === 'recent') {
    hint = html`<p class="cs-hint">You confirmed with your passkey recently; this rule accepts that, so Approve will not ask again.</p>`;
  } else if (webauthn) {
    hint = html`<p class="cs-hint">Approve asks for your passkey: it signs this request, its decision and its parameters digest, nothing else.</p>`;
  }
  return html`<section aria-labelledby="cs-decide">
<h2 id="cs-decide">Your decision</h2>
<form method="post" action="/requests/${r.id}/vote" class="cs-vote" data-passkey="${passkeyMode}" data-request="${r.id}">
  <input type="hidden" name="csrf" value="${input.viewer.csrf}">
  ${
    r.stepUp === 'confirm'
      ? html`<label for="cs-confirm">Type the resource to approve</label>
  <input id="cs-confirm" name="confirm_resource" autocomplete="off" spellcheck="false" maxlength="512">
  <p class="cs-hint">Rule ${r.rule} asks each approver to type it exactly.</p>`
      : ''
  }
  <label for="cs-reason">Reason</label>
  <textarea id="cs-reason" name="reason" rows="3" maxlength="2048">${input.reason ?? ''}</textarea>
  ${hint}
  <div class="cs-buttons">
    <button type="submit" name="decision" value="approve" class="cs-button cs-primary">Approve</button>
    <button type="submit" name="decision" value="deny" class="cs-button cs-danger">Deny</button>
  </div>
  <div class="cs-error" role="alert" data-vote-error hidden></div>
</form>
</section>`;
}

export function requestPage(input: RequestPageInput): Html {
  const r = input.request;
  const rule = input.rule;
  return layout(
    `${r.operation} ${r.resource}`,
    html`<p class="cs-back"><a href="/">← Pending requests</a></p>
<h1><span class="cs-op">${visible(r.operation)}</span> on <span class="cs-res">${visible(r.resource)}</span></h1>
${messageBlock('notice', input.notice)}
${input.error ? messageBlock('error', input.error.message, input.error.code) : ''}
<p class="cs-deadline">${
      r.state === 'PENDING_APPROVAL'
        ? html`Expires <time datetime="${iso(r.expiresAt)}" data-countdown>in ${timeLeft(r.expiresAt - input.now)}</time> (${shortTime(r.expiresAt)})`
        : html`Ended ${r.resolvedAt === undefined ? '' : shortTime(r.resolvedAt)}`
    }</p>
<dl class="cs-facts">
  <dt>Requested by</dt><dd><code>${visible(r.requester)}</code></dd>
  <dt>Its SVID</dt><dd>trust domain <code>${r.requesterTrustDomain}</code>, valid until ${shortTime(r.svidNotAfter)}, certificate <code title="x5t#S256">${r.certificateThumbprint}</code></dd>
  <dt>On behalf of</dt><dd>${r.onBehalfOf ? html`<strong>${visible(r.onBehalfOf)}</strong>` : html`<em>nobody (the workload itself)</em>`}</dd>
  ${r.workloadClaims ? html`<dt>Identity from an OIDC token</dt><dd>issuer <code>${visible(r.workloadClaims.issuer)}</code><ul class="cs-claims">${Object.entries(r.workloadClaims.claims).map(([name, value]) => html`<li>${visible(name)}: <code>${visible(value)}</code></li>`)}</ul></dd>` : ''}
  <dt>Reason</dt><dd class="cs-text">${r.reason ? visible(r.reason) : html`<em>none given</em>`}</dd>
  <dt>Ticket</dt><dd>${r.ticket ? html`<code>${visible(r.ticket)}</code>` : html`<em>none</em>`}</dd>
  <dt>Audience</dt><dd><code>${visible(r.audience)}</code></dd>
  <dt>Request</dt><dd><code>${r.id}</code>, made ${shortTime(r.createdAt)}</dd>
</dl>
${parametersBlock(r)}
${changesBlock(input)}
<section aria-labelledby="cs-rule">
<h2 id="cs-rule">Why it needs approval</h2>
<p>Policy rule <code>${r.rule}</code>${r.rules.length > 1 ? html` (with ${r.rules.filter((n) => n !== r.rule).join(', ')})` : ''} asks for ${r.approvalsRequired} approval(s) from ${
      [...r.approvers, ...r.groups.map((g) => `group ${g}`)].join(', ') || 'nobody'
    }, step-up ${STEP_UP_LABEL[r.stepUp] ?? r.stepUp}${r.stepUpMaxAgeMs === undefined ? '' : ` (a passkey sign-in within ${Math.round(r.stepUpMaxAgeMs / 60000)} min counts)`}.</p>
${rule?.description ? html`<p class="cs-text">${visible(rule.description)}</p>` : ''}
${
  rule && rule.criteria.length > 0
    ? html`<p>It matched because:</p><ul class="cs-criteria">${rule.criteria.map((c) => html`<li><code>${c.key}</code> matches <code>${visible(c.value)}</code></li>`)}</ul>`
    : ''
}
${rule && !rule.samePolicy ? html`<p class="cs-meta">The policy changed since this request was decided (digest <code>${r.policyDigest.slice(0, 16)}…</code>); the rule above is today's.</p>` : ''}
</section>
${votesBlock(input.votes, r)}
${actionsBlock(input)}`,
    input.viewer,
  );
}

// ---- passkeys ----

export function passkeysPage(input: {
  viewer: Viewer;
  passkeys: StoredPasskey[];
  canRegister: { ok: true } | { ok: false; why: string };
  notice?: string | undefined;
  error?: { code: string; message: string } | undefined;
}): Html {
  const { viewer } = input;
  const rows = input.passkeys.map(
    (p) => html`<li class="cs-card">
  <p><strong>${visible(p.name)}</strong> ${p.backed_up ? html`<span class="cs-badge">synced</span>` : html`<span class="cs-badge">device-bound</span>`}</p>
  <p class="cs-meta">registered ${shortTime(p.created_at)} · ${p.last_used_at ? html`last used ${shortTime(p.last_used_at)}` : 'never used'} · id <code>${p.credential_id.slice(0, 16)}…</code></p>
  ${
    input.canRegister.ok
      ? html`<form method="post" action="/passkeys/remove" class="cs-inline">
    <input type="hidden" name="csrf" value="${viewer.csrf}">
    <input type="hidden" name="credential_id" value="${p.credential_id}">
    <button type="submit" class="cs-button cs-danger" aria-label="Remove passkey ${p.name}">Remove</button>
  </form>`
      : ''
  }
</li>`,
  );
  return layout(
    'My passkeys',
    html`<h1>My passkeys</h1>
${messageBlock('notice', input.notice)}
${input.error ? messageBlock('error', input.error.message, input.error.code) : ''}
<p>A passkey proves it is you at the moment you approve: it signs the request itself, so a stolen chat session or password cannot approve in your name.</p>
${rows.length === 0 ? html`<p>You have no passkey yet.</p>` : html`<ul class="cs-list">${rows}</ul>`}
${
  input.canRegister.ok
    ? html`<form id="cs-register" class="cs-register" data-register>
  <label for="cs-passkey-name">Passkey name</label>
  <input id="cs-passkey-name" name="name" maxlength="64" placeholder="e.g. work laptop" autocomplete="off">
  <button type="submit" class="cs-button cs-primary">Register a passkey</button>
  <div class="cs-error" role="alert" data-register-error hidden></div>
</form>`
    : html`<div class="cs-notice" role="status">${input.canRegister.why}</div>`
}
${
  input.passkeys.length > 0
    ? html`<section aria-labelledby="cs-confirm-passkey"><h2 id="cs-confirm-passkey">Confirm it is you</h2>
<p>Some rules accept a recent passkey confirmation instead of one per vote.</p>
<button type="button" class="cs-button" data-passkey-sign-in>Confirm with my passkey</button>
<div class="cs-error" role="alert" data-sign-in-error hidden></div></section>`
    : ''
}`,
    viewer,
  );
}

export { raw };
