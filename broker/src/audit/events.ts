// What the audit trail records. Every part of the broker appends through
// AuditLog using these event types; `audit verify` relies on the fields named
// here to prove that every issued credential had its approval.
import { CountersignError } from '../errors.js';
import { canonicalEvent } from './canonical.js';

/**
 * Every event type, with the fields an event of that type must carry (more are
 * welcome). Times are milliseconds since the epoch.
 */
export const AUDIT_EVENT_FIELDS = {
  /** A validated RequestOperation: requester, operation, resource, parameters_digest, audience. */
  request_received: ['request_id', 'requester', 'operation', 'resource', 'parameters_digest'],
  /** Policy's answer: decision (allow | deny | approve | break_glass), rule, policy_digest. */
  decision: ['request_id', 'decision', 'rule', 'policy_digest'],
  /** An approver was told (channel: slack | cli ..., target: who or where). */
  notification_sent: ['request_id', 'channel'],
  /** One approver's vote: principal, decision (approve | deny), channel, step_up; a passkey vote keeps its assertion (webauthn). */
  vote: ['request_id', 'principal', 'decision', 'channel'],
  /** A vote that did not count (not an approver, self-approval, second vote, too late ...): code says why. */
  vote_refused: ['request_id', 'principal', 'channel', 'code'],
  /** A request reached an end state: APPROVED | DENIED | EXPIRED | CANCELLED. */
  resolution: ['request_id', 'state'],
  /** A credential left the broker: jti, kid, subject, audience, expires_at, and approval evidence when approved. */
  credential_issued: ['request_id', 'jti', 'subject', 'audience', 'expires_at'],
  /** RedeemCredential: outcome redeemed | refused (already redeemed) | forbidden (not a redeemer for its audience), by (the redeemer's SPIFFE ID). */
  credential_redeemed: ['jti', 'outcome', 'by'],
  /** An OIDC token was exchanged for an SVID (Identity.ExchangeToken): issuer (its name), subject, spiffe_id, jti_hash, serial, expires_at. */
  svid_exchanged: ['issuer', 'subject', 'spiffe_id', 'jti_hash', 'serial', 'expires_at'],
  /** A client certificate was refused: peer, code. */
  identity_refused: ['peer', 'code'],
  /** The policy file was (re)loaded: policy_digest, outcome (applied | rejected). */
  policy_reload: ['policy_digest', 'outcome'],
  /** The key that signs credentials changed: signing_kid, previous_kid, published (kids). */
  key_rotation: ['signing_kid', 'published'],
  /** An approver registered a passkey in the console: its public key (COSE), RP ID and origin, so votes verify offline. */
  passkey_registered: ['principal', 'credential_id', 'public_key', 'rp_id', 'origin'],
  /** An approver (or an operator) removed a passkey. */
  passkey_removed: ['principal', 'credential_id', 'by'],
  /** Someone signed in to the approver console: method (oidc | link | slack_link). */
  console_sign_in: ['principal', 'method'],
  /** A one-time sign-in link was issued: for (principal), by (who asked: cli, slack, dev), expires_at. */
  console_link_issued: ['principal', 'by', 'expires_at'],
  /**
   * The broker found the chain in Redis not where it last knew it (records lost or
   * replaced, or a head it cannot verify) and continued from what Redis holds:
   * reason, found_seq / found_hash (the head found), last_known_seq /
   * last_known_hash and source (memory | file | checkpoint) of what it knew.
   */
  chain_restart: ['reason', 'found_seq'],
} as const satisfies Record<string, readonly string[]>;

export type AuditEventType = keyof typeof AUDIT_EVENT_FIELDS;
export const AUDIT_EVENT_TYPES = Object.keys(AUDIT_EVENT_FIELDS) as AuditEventType[];

/** One event. Values must be JSON (undefined fields are dropped). */
export interface AuditEvent {
  type: string;
  [field: string]: unknown;
}

export const MAX_AUDIT_EVENT_BYTES = 256 * 1024;

const invalid = (message: string): CountersignError =>
  // A malformed event is a bug in the broker, never the caller's fault: it must not
  // be recorded half-way, and the request it belongs to fails (closed).
  new CountersignError('internal', 'ERR_AUDIT_EVENT_INVALID', `audit event: ${message}`);

/** An event checked and canonicalised: the plain event and its RFC 8785 text, which the chain hashes and stores. */
export interface NormalizedEvent {
  event: AuditEvent;
  text: string;
}

/**
 * Checks an event's type and required fields, and returns it as plain JSON (undefined fields
 * dropped) with its RFC 8785 text, which the chain hashes and stores. Throws on anything else.
 */
export function normalizeEventText(event: AuditEvent): NormalizedEvent {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) throw invalid('expected an object');
  const fields = AUDIT_EVENT_FIELDS[event.type as AuditEventType] as readonly string[] | undefined;
  if (fields === undefined)
    throw invalid(`unknown type ${JSON.stringify(event.type)}; known: ${AUDIT_EVENT_TYPES.join(', ')}`);
  let text: string;
  let plain: AuditEvent;
  try {
    // Canonical (RFC 8785) once, here: the chain hashes and stores this text as it is.
    ({ event: plain, text } = canonicalEvent(event));
  } catch (e) {
    throw invalid(`${event.type} is not JSON: ${(e as Error).message}`);
  }
  if (text.length > MAX_AUDIT_EVENT_BYTES)
    throw invalid(`${event.type} is ${text.length} bytes, at most ${MAX_AUDIT_EVENT_BYTES}`);
  // null is an explicit "none" (a deny that no rule matched has rule: null); absent is a bug.
  const missing = fields.filter((f) => plain[f] === undefined || plain[f] === '');
  if (missing.length > 0) throw invalid(`${event.type} lacks ${missing.join(', ')}`);
  return { event: plain, text };
}
