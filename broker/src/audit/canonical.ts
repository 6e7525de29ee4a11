// RFC 8785 (JCS) text of audit events, computed once: normalizeEventText (events.ts)
// canonicalises each event and the chain (chain.ts) hashes and stores that very text.
// A leaf, so that the event types and the chain do not import each other. The walk itself
// is jcs.ts (checked against the `canonicalize` package in broker/test/audit-jcs.test.ts).
import { jcs as canonical } from './jcs.js';

export function jcs(value: unknown): string {
  return canonical(value).text;
}

/** Canonicalises an event once: the plain event (JSON, undefined fields dropped) and its RFC 8785 text. */
export function canonicalEvent<E extends object>(event: E): { event: E; text: string } {
  // The plain copy is made in the same walk (what JSON.parse of the text gives), not parsed back.
  const { text, plain: copy } = canonical(event);
  if (copy === null || typeof copy !== 'object' || Array.isArray(copy)) throw new TypeError('not an object');
  return { event: copy as E, text };
}
