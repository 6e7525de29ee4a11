// JSON.parse keeps the last of two members with the same name, silently. For a
// trust bundle that is a hole: a reviewer reads the first "keys", the broker
// would trust the second. This parser follows RFC 8259 and refuses duplicates,
// naming where they are. Integers too large for a double come back as bigint.

export class StrictJsonError extends Error {
  override readonly name = 'StrictJsonError';
  constructor(
    readonly reason: 'syntax' | 'duplicate' | 'depth' | 'number',
    message: string,
  ) {
    super(message);
  }
}

const MAX_DEPTH = 32;

export function parseStrictJson(text: string): unknown {
  let at = 0;
  const fail = (reason: StrictJsonError['reason'], message: string): never => {
    throw new StrictJsonError(reason, `${message} at offset ${at}`);
  };
  const ws = () => {
    while (at < text.length) {
      const c = text.charCodeAt(at);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) at++;
      else break;
    }
  };
  const string = (): string => {
    const start = at;
    at++; // opening quote
    for (;;) {
      if (at >= text.length) fail('syntax', 'unterminated string');
      const c = text.charCodeAt(at);
      if (c === 0x22) break;
      if (c < 0x20) fail('syntax', 'control character in string');
      at += c === 0x5c ? 2 : 1;
    }
    at++;
    try {
      return JSON.parse(text.slice(start, at)) as string;
    } catch {
      return fail('syntax', 'invalid string escape');
    }
  };
  const value = (path: string, depth: number): unknown => {
    if (depth > MAX_DEPTH) fail('depth', `nesting deeper than ${MAX_DEPTH}`);
    ws();
    const c = text[at];
    if (c === '{') {
      at++;
      const out: Record<string, unknown> = {};
      const seen = new Set<string>();
      ws();
      if (text[at] === '}') {
        at++;
        return out;
      }
      for (;;) {
        ws();
        if (text[at] !== '"') fail('syntax', 'expected a member name');
        const name = string();
        if (seen.has(name))
          fail('duplicate', `member ${JSON.stringify(name)} appears twice in ${path || 'the document'}`);
        seen.add(name);
        ws();
        if (text[at] !== ':') fail('syntax', 'expected ":"');
        at++;
        Object.defineProperty(out, name, {
          value: value(`${path}.${name}`, depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
        ws();
        if (text[at] === ',') {
          at++;
          continue;
        }
        if (text[at] === '}') {
          at++;
          return out;
        }
        fail('syntax', 'expected "," or "}"');
      }
    }
    if (c === '[') {
      at++;
      const out: unknown[] = [];
      ws();
      if (text[at] === ']') {
        at++;
        return out;
      }
      for (;;) {
        out.push(value(`${path}[${out.length}]`, depth + 1));
        ws();
        if (text[at] === ',') {
          at++;
          continue;
        }
        if (text[at] === ']') {
          at++;
          return out;
        }
        fail('syntax', 'expected "," or "]"');
      }
    }
    if (c === '"') return string();
    const literal = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(
      text.slice(at, at + 400),
    )?.[0];
    if (literal === undefined) return fail('syntax', 'unexpected character');
    at += literal.length;
    if (literal === 'true') return true;
    if (literal === 'false') return false;
    if (literal === 'null') return null;
    const n = Number(literal);
    // Integers beyond 2^53 stay exact (spiffe_sequence is a uint64).
    if (/^-?\d+$/.test(literal) && !Number.isSafeInteger(n)) {
      if (literal.length > 40) fail('number', `integer ${literal.slice(0, 40)}... is too long`);
      return BigInt(literal);
    }
    return n;
  };
  const result = value('', 0);
  ws();
  if (at !== text.length) fail('syntax', 'unexpected text after the JSON value');
  return result;
}
