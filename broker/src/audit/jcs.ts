// RFC 8785 (JCS) canonical JSON for audit events, with the plain JSON copy of the
// value (undefined members dropped, toJSON applied) made in the same walk.
//
// The allow path canonicalises three audit events per call; the `canonicalize`
// package scans every string for lone surrogates in JavaScript, one character at a
// time, and re-canonicalises every key, and the event's normalisation then parsed the text back
// to get the plain event. Here a string is checked with one regular expression, keys
// are quoted once per distinct key, and the plain copy is built while walking. The
// output is the same text (broker/test/audit-jcs.test.ts compares both on random
// values); what `canonicalize` turns into text that is not JSON (a function or a
// bigint inside a value) is refused here.

/** A lone UTF-16 surrogate: with the u flag, a valid pair is one code point and does not match. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * The text of a member's name as it appears in an object, with the colon: `"name":`
 * first, `,"name":` after; audit events use a few dozen names, over and over. Only short
 * names are kept: a requester's parameters go through this walk too (validate.ts), and their
 * names, up to the parameters' size limit each, must not stay in memory for good.
 */
const memberPrefixes = new Map<string, [first: string, next: string]>();
const MAX_MEMBER_PREFIXES = 4096;
const MAX_CACHED_NAME_LENGTH = 64;

/** How many member names are cached (for tests). */
export function cachedMemberNames(): number {
  return memberPrefixes.size;
}

function memberPrefix(key: string, first: boolean): string {
  let prefixes = memberPrefixes.get(key);
  if (prefixes === undefined) {
    const quoted = quoteString(key);
    prefixes = [`${quoted}:`, `,${quoted}:`];
    if (key.length <= MAX_CACHED_NAME_LENGTH && memberPrefixes.size < MAX_MEMBER_PREFIXES)
      memberPrefixes.set(key, prefixes);
  }
  return first ? prefixes[0] : prefixes[1];
}

/** Printable ASCII without '"' and '\\': quoted as it is (most of what audit events hold). */
const PLAIN_ASCII = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function quoteString(value: string): string {
  if (PLAIN_ASCII.test(value)) return `"${value}"`;
  if (LONE_SURROGATE.test(value)) throw new TypeError('Lone surrogate is not allowed');
  return JSON.stringify(value);
}

/** The canonical text of `value` and its plain JSON copy (what JSON.parse of the text gives). */
export interface Canonical {
  text: string;
  plain: unknown;
}

/**
 * Canonicalises a JSON value; throws TypeError on what has no JSON form (NaN, lone surrogates, cycles, functions).
 * The walk pushes the text's pieces (quoted names and values, punctuation) into one array
 * joined once at the end: a flat string in one allocation, where concatenating as it went
 * made a string or a rope node for every piece (most of what the allow path allocated here).
 */
export function jcs(value: unknown): Canonical {
  const parts: string[] = [];
  const plain = walk(value, parts, []);
  return { text: parts.join(''), plain };
}

/** The canonical text only. */
export const jcsText = (value: unknown): string => jcs(value).text;

/**
 * RFC 8785: members sorted by their names' UTF-16 code units (what `<` compares, and
 * Array.prototype.sort's default order). An insertion sort in place: events have a
 * dozen or two members, and the built-in sort allocates a work area every time.
 */
function sortedKeys(record: Record<string, unknown>): string[] {
  const keys = Object.keys(record);
  if (keys.length > 32) return keys.sort();
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i] as string;
    let j = i - 1;
    while (j >= 0 && (keys[j] as string) > key) {
      keys[j + 1] = keys[j] as string;
      j--;
    }
    keys[j + 1] = key;
  }
  return keys;
}

/** A copy of the first n members (in key order): until a member differs, all were kept as they are. */
function copyOfFirst(record: Record<string, unknown>, keys: string[], n: number): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (let j = 0; j < n; j++) copy[keys[j] as string] = record[keys[j] as string];
  return copy;
}

/** Pushes the canonical text of `value` onto `parts`; returns its plain copy. */
function walk(value: unknown, parts: string[], stack: object[]): unknown {
  switch (typeof value) {
    case 'string':
      if (PLAIN_ASCII.test(value)) parts.push('"', value, '"');
      else if (LONE_SURROGATE.test(value)) throw new TypeError('Lone surrogate is not allowed');
      else parts.push(JSON.stringify(value));
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${value} is not allowed`);
      // ECMAScript Number-to-String, as RFC 8785 requires (and -0 as 0).
      parts.push(JSON.stringify(value));
      return Object.is(value, -0) ? 0 : value;
    case 'boolean':
      parts.push(value ? 'true' : 'false');
      return value;
    case 'object':
      if (value === null) {
        parts.push('null');
        return null;
      }
      break;
    default:
      throw new TypeError(`a ${typeof value} has no JSON form`);
  }
  const object = value;
  if (stack.includes(object)) throw new TypeError('Circular reference detected');
  const toJSON = (object as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    stack.push(object);
    const plain = walk((toJSON as () => unknown).call(object), parts, stack);
    stack.pop();
    return plain;
  }
  stack.push(object);
  let result: unknown;
  if (Array.isArray(object)) {
    const plain: unknown[] = [];
    parts.push('[');
    for (const item of object as unknown[]) {
      if (plain.length > 0) parts.push(',');
      // As JSON.stringify: undefined (and symbols) in an array are null.
      if (item === undefined || typeof item === 'symbol') {
        parts.push('null');
        plain.push(null);
      } else {
        plain.push(walk(item, parts, stack));
      }
    }
    parts.push(']');
    result = plain;
  } else {
    const record = object as Record<string, unknown>;
    const keys = sortedKeys(record);
    // The plain copy is made only when it would differ from the value itself: a plain
    // object whose members are all kept as they are (no undefined, no toJSON, no -0, no
    // array below it: arrays are always copied) is its own plain copy. The allow path's events are such objects, and copying
    // them was most of what this walk allocated.
    let plain: Record<string, unknown> | undefined =
      Object.getPrototypeOf(record) === Object.prototype ? undefined : {};
    parts.push('{');
    let first = true;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      const member = record[key];
      if (member === undefined || typeof member === 'symbol') {
        plain ??= copyOfFirst(record, keys, i);
        continue;
      }
      parts.push(memberPrefix(key, first));
      first = false;
      const copy = walk(member, parts, stack);
      if (plain === undefined) {
        if (key !== '__proto__' && Object.is(copy, member)) continue;
        plain = copyOfFirst(record, keys, i);
      }
      // A "__proto__" member is an own property here, as JSON.parse makes it.
      if (key === '__proto__')
        Object.defineProperty(plain, key, { value: copy, enumerable: true, writable: true, configurable: true });
      else plain[key] = copy;
    }
    parts.push('}');
    result = plain ?? record;
  }
  stack.pop();
  return result;
}
