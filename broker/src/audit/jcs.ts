// RFC 8785 (JCS) canonical JSON for audit events, with the plain JSON copy of the
// value (undefined members dropped, toJSON applied) made in the same walk.
//
// The allow path canonicalises three audit events per call; the `canonicalize`
// package scans every string for lone surrogates in JavaScript, one character at a
// time, and re-canonicalises every key, and normalizeEvent then parsed the text back
// to get the plain event. Here a string is checked with one regular expression, keys
// are quoted once per distinct key, and the plain copy is built while walking. The
// output is the same text (broker/test/audit-jcs.test.ts compares both on random
// values); what `canonicalize` turns into text that is not JSON (a function or a
// bigint inside a value) is refused here.

/** A lone UTF-16 surrogate: with the u flag, a valid pair is one code point and does not match. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Quoted keys: audit events use a few dozen names, over and over. */
const quotedKeys = new Map<string, string>();
const MAX_QUOTED_KEYS = 4096;

function quoteKey(key: string): string {
  let quoted = quotedKeys.get(key);
  if (quoted === undefined) {
    quoted = quoteString(key);
    if (quotedKeys.size < MAX_QUOTED_KEYS) quotedKeys.set(key, quoted);
  }
  return quoted;
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

/** Canonicalises a JSON value; throws TypeError on what has no JSON form (NaN, lone surrogates, cycles, functions). */
export function jcs(value: unknown): Canonical {
  const out: Canonical = { text: '', plain: undefined };
  walk(value, out, []);
  return out;
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

function walk(value: unknown, out: Canonical, stack: object[]): void {
  switch (typeof value) {
    case 'string':
      out.text = quoteString(value);
      out.plain = value;
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${value} is not allowed`);
      // ECMAScript Number-to-String, as RFC 8785 requires (and -0 as 0).
      out.text = JSON.stringify(value);
      out.plain = Object.is(value, -0) ? 0 : value;
      return;
    case 'boolean':
      out.text = value ? 'true' : 'false';
      out.plain = value;
      return;
    case 'object':
      if (value === null) {
        out.text = 'null';
        out.plain = null;
        return;
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
    walk((toJSON as () => unknown).call(object), out, stack);
    stack.pop();
    return;
  }
  stack.push(object);
  if (Array.isArray(object)) {
    const plain: unknown[] = [];
    let text = '[';
    for (const item of object as unknown[]) {
      if (plain.length > 0) text += ',';
      // As JSON.stringify: undefined (and symbols) in an array are null.
      if (item === undefined || typeof item === 'symbol') {
        text += 'null';
        plain.push(null);
      } else {
        walk(item, out, stack);
        text += out.text;
        plain.push(out.plain);
      }
    }
    out.text = `${text}]`;
    out.plain = plain;
  } else {
    const record = object as Record<string, unknown>;
    const keys = sortedKeys(record);
    // The plain copy is made only when it would differ from the value itself: a plain
    // object whose members are all kept as they are (no undefined, no toJSON, no -0, no
    // array below it: arrays are always copied) is its own plain copy. The allow path's events are such objects, and copying
    // them was most of what this walk allocated.
    let plain: Record<string, unknown> | undefined =
      Object.getPrototypeOf(record) === Object.prototype ? undefined : {};
    let text = '{';
    let first = true;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      const member = record[key];
      if (member === undefined || typeof member === 'symbol') {
        plain ??= copyOfFirst(record, keys, i);
        continue;
      }
      walk(member, out, stack);
      text += first ? `${quoteKey(key)}:${out.text}` : `,${quoteKey(key)}:${out.text}`;
      first = false;
      if (plain === undefined) {
        if (key !== '__proto__' && Object.is(out.plain, member)) continue;
        plain = copyOfFirst(record, keys, i);
      }
      // A "__proto__" member is an own property here, as JSON.parse makes it.
      if (key === '__proto__')
        Object.defineProperty(plain, key, { value: out.plain, enumerable: true, writable: true, configurable: true });
      else plain[key] = out.plain;
    }
    out.text = `${text}}`;
    out.plain = plain ?? record;
  }
  stack.pop();
}
