// Return codes of the Lua scripts in ./lua, in one place (as BullMQ does in
// enums/error-code.ts). Positive codes are outcomes, negative ones refusals;
// each script's header lists the ones it returns.
export enum ScriptCode {
  Created = 1,
  Existing = 2,
  Counted = 3,
  Approved = 4,
  Denied = 5,
  Expired = 6,
  Cancelled = 7,
  Stored = 8,
  CredentialExists = 9,
  Allowed = 10,

  NotFound = -1,
  IdempotencyConflict = -2,
  TooManyPending = -3,
  Resolved = -4,
  ExpiryDue = -5,
  AlreadyVoted = -6,
  NotDue = -7,
  NotApproved = -8,
  CertificateMismatch = -9,
  WindowClosed = -10,
  RateLimited = -11,
}

/** A script's reply: its code first, then strings whose meaning the header gives. */
export type ScriptReply = [ScriptCode, ...string[]];

export function scriptReply(reply: unknown): ScriptReply {
  if (!Array.isArray(reply) || typeof reply[0] !== 'number' || !(reply[0] in ScriptCode)) {
    throw new Error(`lua script returned an unexpected reply: ${JSON.stringify(reply)}`);
  }
  return [reply[0], ...reply.slice(1).map((v: unknown) => String(v))];
}
