// RFC 8785 (JCS) text of audit events, computed once: normalizeEvent (events.ts)
// canonicalises each event and the chain (chain.ts) hashes and stores that very text.
// A leaf, so that the event types and the chain do not import each other.
import canonicalize from 'canonicalize';

export function jcs(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('audit record cannot be canonicalized');
  return text;
}

/**
 * The canonical text of events that normalizeEvent already canonicalised (it builds the
 * plain event from that text), so that chaining does not canonicalise them a second time.
 */
const canonicalTexts = new WeakMap<object, string>();

/** Canonicalises an event once: the plain event (JSON, undefined fields dropped) and its RFC 8785 text. */
export function canonicalEvent<E extends object>(event: E): { event: E; text: string } {
  const text = jcs(event);
  const plain = JSON.parse(text) as E;
  canonicalTexts.set(plain, text);
  return { event: plain, text };
}

/** The text canonicalEvent gave this very (plain) event, if it made it. */
export function canonicalTextOf(event: object): string | undefined {
  return canonicalTexts.get(event);
}
