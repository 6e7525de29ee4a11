// The strict rules for an operation's parameters, in one place: the broker judges
// `parameters_json` with them, and every requester tool (CLI, SDK, MCP server and
// proxy) checks with them before sending, so the two sides cannot drift. A
// requester never rewrites what it was given: text passes these rules and is sent
// as is, or it is refused with the same message the broker would give.
//
// JSON.parse is lenient where an approval must not be: it keeps the last of two
// equal keys (the approver and the resource server could read different values),
// turns 1e400 into Infinity (which has no JSON form), keeps lone surrogates
// (which have no UTF-8 form), and rounds integers beyond 2^53 without a word.
// JSON.stringify then turns Infinity into null and drops undefined. Each of those
// silently changes what is approved; here each is an error naming where it is.
import type { JsonObject } from './credential.js';

/** The largest integer every JSON parser reads exactly (IEEE 754 doubles; RFC 7493 I-JSON): 2^53 - 1. */
export const MAX_EXACT_JSON_INTEGER = Number.MAX_SAFE_INTEGER;

export const PARAMETERS_LIMITS = {
  /** Nested objects and arrays, counting the outer object. */
  depth: 32,
  /** Member names in the whole document. */
  keys: 2048,
  /** UTF-8 bytes of the text (the broker's default; `requests.limits.max_parameters_bytes` changes it there). */
  bytes: 64 * 1024,
} as const;

export type ParametersProblem =
  /** Not RFC 8259 JSON. */
  | 'syntax'
  /** The document is not one JSON object. */
  | 'not_object'
  | 'duplicate_key'
  | 'too_deep'
  | 'too_many_keys'
  | 'too_large'
  /** A number beyond ±(2^53 - 1), including ones no double can hold (1e400). */
  | 'number_out_of_range'
  /** A non-zero number so small it reads as 0 (1e-400). */
  | 'number_underflow'
  /** A string or member name with a lone surrogate (no UTF-8 form). */
  | 'invalid_unicode'
  /** The member name "__proto__", which JavaScript objects treat specially. */
  | 'reserved_key'
  /** A JavaScript value JSON has no form for (undefined, a function, a Date, a sparse array, ...). */
  | 'unsupported_value';

/** Problems that are about size: the broker answers them with RESOURCE_EXHAUSTED. */
export const SIZE_PROBLEMS: ReadonlySet<ParametersProblem> = new Set(['too_large', 'too_many_keys']);

/**
 * A broken rule. The message has no subject, so it reads after the name of
 * whatever carried the parameters: "parameters_json: $.n: the number 1e400 ...",
 * "--parameters-json is not valid JSON: ...".
 */
export class ParametersError extends Error {
  override readonly name = 'ParametersError';
  constructor(
    readonly problem: ParametersProblem,
    /** Where: "$" is the object itself, then .name or ["other name"] and [index]. */
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ParametersOptions {
  /** Largest text accepted, in UTF-8 bytes; default PARAMETERS_LIMITS.bytes. */
  maxBytes?: number;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
/** What a JSON string may not hold unescaped (RFC 8259 section 7). */
const CONTROL_CHARACTER = /[\u0000-\u001f]/;

/** Whether a string has no lone surrogate (so it has a UTF-8 form). */
const wellFormed: (s: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
    ? (s) => (s as string & { isWellFormed(): boolean }).isWellFormed()
    : (s) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

const memberPath = (path: string, name: string): string =>
  IDENTIFIER.test(name) ? `${path}.${name}` : `${path}[${JSON.stringify(name)}]`;
/** "$" followed by each step: .name, ["other name"], [index]. Built only when there is something to report. */
const pathOf = (steps: readonly (string | number)[]): string =>
  steps.reduce<string>((path, step) => (typeof step === 'number' ? `${path}[${step}]` : memberPath(path, step)), '$');
const shown = (text: string, max = 40): string => JSON.stringify(text.length > max ? `${text.slice(0, max)}...` : text);

const invalidUnicode = (path: string, what: 'member name' | 'string') =>
  new ParametersError(
    'invalid_unicode',
    path,
    `${path}: a ${what} holds a lone UTF-16 surrogate (e.g. "\\ud800"), which has no UTF-8 form; send well-formed Unicode`,
  );
const reservedKey = (path: string) =>
  new ParametersError(
    'reserved_key',
    path,
    `${path}: the member name "__proto__" is not accepted (JavaScript objects treat it as their prototype, so readers disagree on it); rename it`,
  );
const outOfRange = (path: string, spelling: string) =>
  new ParametersError(
    'number_out_of_range',
    path,
    `${path}: the number ${spelling} is beyond ±9007199254740991 (2^53 - 1), the largest magnitude every JSON parser reads exactly; send it as a string`,
  );
const tooDeep = (path: string) =>
  new ParametersError('too_deep', path, `${path}: is nested deeper than ${PARAMETERS_LIMITS.depth} levels`);
const tooManyKeys = (path: string) =>
  new ParametersError('too_many_keys', path, `has more than ${PARAMETERS_LIMITS.keys} member names`);
/** A number within the range: its magnitude is at most 2^53 - 1 (NaN and the infinities are not). */
const inRange = (n: number): boolean => Math.abs(n) <= MAX_EXACT_JSON_INTEGER;

function checkSize(bytes: number, maxBytes: number): void {
  if (bytes > maxBytes)
    throw new ParametersError('too_large', '$', `is ${bytes} bytes, at most ${maxBytes} are allowed`);
}

/**
 * Parses parameters given as JSON text under the strict rules: one RFC 8259
 * object, no duplicate member names, at most 32 levels and 2048 member names,
 * numbers within ±(2^53 - 1) judged by their value (1e20 and
 * 100000000000000000000 get the same answer), well-formed Unicode, no
 * "__proto__". Empty (or blank) text is the empty object, as in the API.
 * Throws a ParametersError naming the problem and where it is.
 */
export function parseParametersJson(text: string, options: ParametersOptions = {}): JsonObject {
  checkSize(Buffer.byteLength(text, 'utf8'), options.maxBytes ?? PARAMETERS_LIMITS.bytes);
  let at = 0;
  let keys = 0;
  // The way from the object to the value being read; a path string is made only for an error.
  const steps: (string | number)[] = [];
  const syntax = (message: string): never => {
    throw new ParametersError('syntax', '$', `is not valid JSON: ${message} at offset ${at}`);
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(at);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) at++;
      else return;
    }
  };
  const string = (): string => {
    const start = ++at;
    // The closing quote is the first one not escaped, i.e. not after an odd run of backslashes.
    let end = at;
    for (;;) {
      end = text.indexOf('"', end);
      if (end < 0) {
        at = text.length;
        return syntax('unterminated string');
      }
      let backslashes = 0;
      while (end - backslashes - 1 >= start && text.charCodeAt(end - backslashes - 1) === 0x5c) backslashes++;
      if (backslashes % 2 === 0) break;
      end++;
    }
    const body = text.slice(start, end);
    const control = body.search(CONTROL_CHARACTER);
    if (control >= 0) {
      at = start + control;
      return syntax('control character in a string (escape it)');
    }
    at = end + 1;
    if (!body.includes('\\')) return body;
    try {
      return JSON.parse(`"${body}"`) as string;
    } catch {
      at = start;
      return syntax('invalid escape in a string');
    }
  };
  const value = (depth: number): unknown => {
    ws();
    const c = text.charCodeAt(at);
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (depth >= PARAMETERS_LIMITS.depth) throw tooDeep(pathOf(steps));
      at++;
      ws();
      if (c === 0x5b) {
        const out: unknown[] = [];
        if (text.charCodeAt(at) === 0x5d) {
          at++;
          return out;
        }
        for (;;) {
          steps.push(out.length);
          out.push(value(depth + 1));
          steps.pop();
          ws();
          const next = text.charCodeAt(at);
          if (next === 0x2c) at++;
          else if (next === 0x5d) {
            at++;
            return out;
          } else syntax('expected "," or "]"');
        }
      }
      const out: Record<string, unknown> = {};
      if (text.charCodeAt(at) === 0x7d) {
        at++;
        return out;
      }
      for (;;) {
        ws();
        if (text.charCodeAt(at) !== 0x22) syntax('expected a member name in double quotes');
        const name = string();
        steps.push(name);
        if (!wellFormed(name)) throw invalidUnicode(pathOf(steps), 'member name');
        if (name === '__proto__') throw reservedKey(pathOf(steps));
        if (Object.hasOwn(out, name)) {
          const path = pathOf(steps);
          throw new ParametersError(
            'duplicate_key',
            path,
            `${path}: the member name ${shown(name)} appears twice in one object; each name may appear once (readers disagree on which one counts)`,
          );
        }
        if (++keys > PARAMETERS_LIMITS.keys) throw tooManyKeys(pathOf(steps));
        ws();
        if (text.charCodeAt(at) !== 0x3a) syntax('expected ":"');
        at++;
        out[name] = value(depth + 1);
        steps.pop();
        ws();
        const next = text.charCodeAt(at);
        if (next === 0x2c) at++;
        else if (next === 0x7d) {
          at++;
          return out;
        } else syntax('expected "," or "}"');
      }
    }
    if (c === 0x22) {
      const s = string();
      if (!wellFormed(s)) throw invalidUnicode(pathOf(steps), 'string');
      return s;
    }
    if (text.startsWith('true', at)) {
      at += 4;
      return true;
    }
    if (text.startsWith('false', at)) {
      at += 5;
      return false;
    }
    if (text.startsWith('null', at)) {
      at += 4;
      return null;
    }
    NUMBER.lastIndex = at;
    const literal = NUMBER.exec(text)?.[0];
    if (literal === undefined)
      return syntax(at >= text.length ? 'unexpected end' : `unexpected character ${shown(text[at] ?? '')}`);
    at += literal.length;
    const n = Number(literal);
    if (!inRange(n)) throw outOfRange(pathOf(steps), literal.length > 40 ? `${literal.slice(0, 40)}...` : literal);
    if (n === 0 && /[1-9]/.test(literal.replace(/[eE].*$/, ''))) {
      const path = pathOf(steps);
      throw new ParametersError(
        'number_underflow',
        path,
        `${path}: the number ${literal.length > 40 ? `${literal.slice(0, 40)}...` : literal} is too small for a JSON number (it reads as 0); send it as a string`,
      );
    }
    return n;
  };

  ws();
  if (at === text.length) return {};
  const result = value(0);
  ws();
  if (at !== text.length) syntax('unexpected text after the JSON value');
  if (!isPlainObject(result))
    throw new ParametersError('not_object', '$', `must be a JSON object, got ${kindOf(result)}`);
  return result as JsonObject;
}

/**
 * Checks parameters given as a JavaScript value (an SDK caller's object, tool
 * arguments an MCP client sent, a google.protobuf.Struct turned into plain
 * values) against the same rules, so that JSON.stringify of it is exactly that
 * value: plain objects and arrays, strings, finite numbers within ±(2^53 - 1),
 * booleans and null; nothing JSON.stringify would drop or change.
 */
export function checkParametersValue(value: unknown, options: ParametersOptions = {}): asserts value is JsonObject {
  if (!isPlainObject(value)) {
    throw new ParametersError('not_object', '$', `must be a JSON object, got ${kindOf(value)}`);
  }
  let keys = 0;
  const visit = (v: unknown, path: string, depth: number): void => {
    switch (typeof v) {
      case 'string':
        if (!wellFormed(v)) throw invalidUnicode(path, 'string');
        return;
      case 'number':
        if (Number.isNaN(v)) throw unsupported(path, 'NaN');
        if (!inRange(v)) throw outOfRange(path, String(v));
        return;
      case 'boolean':
        return;
      case 'object':
        break;
      default:
        throw unsupported(path, kindOf(v));
    }
    if (v === null) return;
    if (depth >= PARAMETERS_LIMITS.depth) throw tooDeep(path);
    if (Array.isArray(v)) {
      if (Object.keys(v).length !== v.length) throw unsupported(path, 'a sparse array, or one with named members');
      v.forEach((item, i) => visit(item, `${path}[${i}]`, depth + 1));
      return;
    }
    if (!isPlainObject(v)) throw unsupported(path, kindOf(v));
    if (Object.getOwnPropertySymbols(v).length > 0) throw unsupported(path, 'an object with symbol keys');
    for (const name of Object.keys(v)) {
      const namePath = memberPath(path, name);
      if (!wellFormed(name)) throw invalidUnicode(namePath, 'member name');
      if (name === '__proto__') throw reservedKey(namePath);
      if (++keys > PARAMETERS_LIMITS.keys) throw tooManyKeys(namePath);
      visit(v[name], namePath, depth + 1);
    }
  };
  visit(value, '$', 0);
  checkSize(Buffer.byteLength(JSON.stringify(value), 'utf8'), options.maxBytes ?? PARAMETERS_LIMITS.bytes);
}

/**
 * The JSON text of parameters given as a value, after checking it: what a
 * requester sends when it was handed an object rather than text.
 */
export function parametersJsonOf(value: unknown, options: ParametersOptions = {}): string {
  checkParametersValue(value, options);
  return JSON.stringify(value);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') {
    const name = (Object.getPrototypeOf(v) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    return typeof name === 'string' && name !== '' && name !== 'Object' ? `a ${name}` : 'an object';
  }
  if (typeof v === 'undefined') return 'undefined';
  return `a ${typeof v}`;
}

const unsupported = (path: string, kind: string) =>
  new ParametersError(
    'unsupported_value',
    path,
    `${path}: ${kind} has no exact JSON form (JSON.stringify would drop or change it); use objects, arrays, strings, numbers, booleans and null`,
  );
