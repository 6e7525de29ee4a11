// RFC 8785 (JCS) text of audit events, computed once: normalizeEvent (events.ts)
// canonicalises each event and the chain (chain.ts) hashes and stores that very text.
// A leaf, so that the event types and the chain do not import each other. The walk itself
// is jcs.ts (checked against the `canonicalize` package in broker/test/audit-jcs.test.ts).
import { jcs as canonical } from './jcs.js';

export function jcs(value: unknown): string {
  return canonical(value).text;
}

/**
 * The canonical text of events that normalizeEvent already canonicalised (with the plain
 * event, in one walk), so that chaining does not canonicalise them a second time.
 */
const canonicalTexts = new WeakMap<object, string>();

/** Canonicalises an event once: the plain event (JSON, undefined fields dropped) and its RFC 8785 text. */
export function canonicalEvent<E extends object>(event: E): { event: E; text: string } {
  // The plain copy is made in the same walk (what JSON.parse of the text gives), not parsed back.
  const { text, plain: copy } = canonical(event);
  if (copy === null || typeof copy !== 'object' || Array.isArray(copy)) throw new TypeError('not an object');
  return { event: copy as E, text };
}

/** Remembers the text canonicalEvent gave a plain event, for chainRecords (callers that pass only the event). */
export function rememberCanonicalText(event: object, text: string): void {
  canonicalTexts.set(event, text);
}

/** The text canonicalEvent gave this very (plain) event, if it made it. */
export function canonicalTextOf(event: object): string | undefined {
  return canonicalTexts.get(event);
}
