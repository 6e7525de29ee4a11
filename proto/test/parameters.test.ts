// The strict parameter rules shared by the broker and every requester tool:
// a table of what each refuses and why, the same answers for text and for a
// JavaScript value, and a differential test against JSON.parse (the reference
// reader) on everything the rules accept.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  canonicalJson,
  checkParametersValue,
  digestOfCanonical,
  parametersDigest,
  ParametersError,
  parametersJsonOf,
  parseParametersJson,
  type ParametersProblem,
} from '../src/index.js';

function problemOf(f: () => unknown): { problem: ParametersProblem; path: string; message: string } {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ParametersError, String(e));
    return { problem: e.problem, path: e.path, message: e.message };
  }
  assert.fail('expected a ParametersError');
}

describe('parseParametersJson: what the rules refuse in JSON text', () => {
  const cases: [string, string, ParametersProblem, string, RegExp][] = [
    [
      'not JSON',
      '{version: 1}',
      'syntax',
      '$',
      /^is not valid JSON: expected a member name in double quotes at offset 1$/,
    ],
    ['a trailing comma', '{"a":1,}', 'syntax', '$', /^is not valid JSON/],
    ['single quotes', "{'a':1}", 'syntax', '$', /^is not valid JSON/],
    ['text after the object', '{"a":1} x', 'syntax', '$', /unexpected text after the JSON value/],
    ['NaN', '{"a":NaN}', 'syntax', '$', /^is not valid JSON/],
    ['a leading plus', '{"a":+1}', 'syntax', '$', /^is not valid JSON/],
    ['a leading zero', '{"a":01}', 'syntax', '$', /^is not valid JSON/],
    ['a raw control character in a string', '{"a":"x\u0001"}', 'syntax', '$', /control character/],
    ['a bad escape', '{"a":"\\x41"}', 'syntax', '$', /invalid escape/],
    ['an array', '[1,2]', 'not_object', '$', /^must be a JSON object, got an array$/],
    ['a string', '"x"', 'not_object', '$', /^must be a JSON object, got a string$/],
    ['null', 'null', 'not_object', '$', /^must be a JSON object, got null$/],
    [
      'a duplicate member name',
      '{"a":1,"b":{"c":1},"a":2}',
      'duplicate_key',
      '$.a',
      /^\$\.a: the member name "a" appears twice in one object/,
    ],
    ['a duplicate spelled with an escape', '{"a":1,"\\u0061":2}', 'duplicate_key', '$.a', /appears twice/],
    ['a nested duplicate', '{"x":[{"k y":1,"k y":2}]}', 'duplicate_key', '$.x[0]["k y"]', /appears twice/],
    [
      '33 levels',
      `${'{"a":'.repeat(33)}1${'}'.repeat(33)}`,
      'too_deep',
      `$${'.a'.repeat(32)}`,
      /is nested deeper than 32 levels/,
    ],
    [
      '2049 member names',
      JSON.stringify(Object.fromEntries(Array.from({ length: 2049 }, (_, i) => [`k${i}`, i]))),
      'too_many_keys',
      '$.k2048',
      /^has more than 2048 member names$/,
    ],
    [
      '1e400',
      '{"n":1e400}',
      'number_out_of_range',
      '$.n',
      /^\$\.n: the number 1e400 is beyond ±9007199254740991 \(2\^53 - 1\), the largest magnitude every JSON parser reads exactly; send it as a string$/,
    ],
    ['-1e400', '{"n":-1e400}', 'number_out_of_range', '$.n', /the number -1e400 is beyond/],
    ['2^53', '{"n":9007199254740992}', 'number_out_of_range', '$.n', /the number 9007199254740992 is beyond/],
    ['1e20', '{"n":1e20}', 'number_out_of_range', '$.n', /the number 1e20 is beyond/],
    ['a large fraction', '{"n":1.5e300}', 'number_out_of_range', '$.n', /the number 1.5e300 is beyond/],
    [
      '1e-400',
      '{"n":1e-400}',
      'number_underflow',
      '$.n',
      /^\$\.n: the number 1e-400 is too small for a JSON number \(it reads as 0\)/,
    ],
    [
      'a lone high surrogate',
      '{"s":"\\ud800"}',
      'invalid_unicode',
      '$.s',
      /^\$\.s: a string holds a lone UTF-16 surrogate/,
    ],
    ['a lone low surrogate', '{"s":["ok","\\udfff"]}', 'invalid_unicode', '$.s[1]', /lone UTF-16 surrogate/],
    ['reversed surrogates', '{"s":"\\udc00\\ud800"}', 'invalid_unicode', '$.s', /lone UTF-16 surrogate/],
    [
      'a surrogate in a member name',
      '{"k\\ud800":1}',
      'invalid_unicode',
      '$["k\\ud800"]',
      /a member name holds a lone UTF-16 surrogate/,
    ],
    ['__proto__', '{"__proto__":{"a":1}}', 'reserved_key', '$.__proto__', /"__proto__" is not accepted/],
    [
      'a nested __proto__',
      '{"a":[{"__proto__":1}]}',
      'reserved_key',
      '$.a[0].__proto__',
      /"__proto__" is not accepted/,
    ],
  ];
  for (const [name, text, problem, path, message] of cases) {
    it(`refuses ${name}: ${problem} at ${path}`, () => {
      const got = problemOf(() => parseParametersJson(text));
      assert.equal(got.problem, problem, got.message);
      assert.equal(got.path, path);
      assert.match(got.message, message);
    });
  }

  it('refuses text over the byte limit before reading it', () => {
    const got = problemOf(() => parseParametersJson(`{"v":"${'é'.repeat(20)}"}`, { maxBytes: 40 }));
    assert.deepEqual([got.problem, got.message], ['too_large', 'is 48 bytes, at most 40 are allowed']);
  });

  it('judges a number by its value: every spelling of a value out of range gets the same answer, every spelling in range the same digest', () => {
    const out = ['1e20', '100000000000000000000', '1E+20', '1.0e20', '100000000000000000000.0', '0.1e21'].map((n) => {
      const got = problemOf(() => parseParametersJson(`{"n":${n}}`));
      return { problem: got.problem, message: got.message.replace(n, 'N') };
    });
    for (const o of out) assert.deepEqual(o, out[0]);
    const inRange = ['9007199254740991', '9.007199254740991e15', '9007199254740991.0', '-0', '0'].map((n) =>
      canonicalJson(parseParametersJson(`{"n":${n}}`)),
    );
    assert.deepEqual(inRange.slice(0, 3), Array(3).fill('{"n":9007199254740991}'));
    assert.deepEqual(inRange.slice(3), ['{"n":0}', '{"n":0}']);
  });

  it('takes empty or blank text as the empty object, as the API does', () => {
    assert.deepEqual(parseParametersJson(''), {});
    assert.deepEqual(parseParametersJson(' \n\t'), {});
  });

  it('keeps surrogate pairs, escapes and nested "__proto__"-like strings that are only values', () => {
    assert.deepEqual(parseParametersJson('{"e":"\\ud83d\\ude00","raw":"😀","v":"__proto__","q":"a\\"b"}'), {
      e: '😀',
      raw: '😀',
      v: '__proto__',
      q: 'a"b',
    });
  });
});

describe('checkParametersValue: the same rules for a JavaScript value', () => {
  const sparse: unknown[] = [1];
  sparse[2] = 3;
  const named = Object.assign([1], { extra: 2 });
  const withProto = JSON.parse('{"__proto__":{"a":1}}') as unknown;
  const cases: [string, unknown, ParametersProblem, string][] = [
    ['an array', [1], 'not_object', '$'],
    ['a Date at the top', new Date(0), 'not_object', '$'],
    ['Infinity', { n: Infinity }, 'number_out_of_range', '$.n'],
    ['-Infinity', { n: [-Infinity] }, 'number_out_of_range', '$.n[0]'],
    ['NaN', { n: NaN }, 'unsupported_value', '$.n'],
    ['an unsafe integer', { n: 2 ** 53 }, 'number_out_of_range', '$.n'],
    ['undefined', { u: undefined }, 'unsupported_value', '$.u'],
    ['a function', { f: () => 1 }, 'unsupported_value', '$.f'],
    ['a bigint', { b: 1n }, 'unsupported_value', '$.b'],
    ['a symbol', { s: Symbol('s') }, 'unsupported_value', '$.s'],
    ['a Date', { d: new Date(0) }, 'unsupported_value', '$.d'],
    ['a Map', { m: new Map() }, 'unsupported_value', '$.m'],
    ['a sparse array', { a: sparse }, 'unsupported_value', '$.a'],
    ['an array with a named member', { a: named }, 'unsupported_value', '$.a'],
    ['a symbol key', { o: { [Symbol('k')]: 1 } }, 'unsupported_value', '$.o'],
    ['a lone surrogate', { s: 'x\ud800' }, 'invalid_unicode', '$.s'],
    ['a lone surrogate in a key', { ['k\udc00']: 1 }, 'invalid_unicode', '$["k\\udc00"]'],
    ['an own __proto__ (as JSON.parse makes it)', withProto, 'reserved_key', '$.__proto__'],
    ['33 levels', JSON.parse(`${'{"a":'.repeat(33)}1${'}'.repeat(33)}`), 'too_deep', `$${'.a'.repeat(32)}`],
  ];
  for (const [name, value, problem, path] of cases) {
    it(`refuses ${name}: ${problem} at ${path}`, () => {
      const got = problemOf(() => checkParametersValue(value));
      assert.equal(got.problem, problem, got.message);
      assert.equal(got.path, path);
    });
  }

  it('refuses a cycle (as too deep) instead of overflowing the stack', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.equal(problemOf(() => checkParametersValue(cyclic)).problem, 'too_deep');
  });

  it('gives the same problem and message for text and for the value it stands for', () => {
    for (const text of ['{"n":1e400}', '{"a":{"b":[9007199254740993]}}', '{"s":"\\ud800"}']) {
      const fromText = problemOf(() => parseParametersJson(text));
      // JSON.parse is the reference reader here: what it makes of the text is what an SDK caller would hold.
      const fromValue = problemOf(() => checkParametersValue(JSON.parse(text)));
      assert.deepEqual([fromValue.problem, fromValue.path], [fromText.problem, fromText.path]);
    }
  });

  it('serialises an accepted value without changing it', () => {
    const value = {
      version: '1.4.2',
      replicas: 3,
      ratio: 0.25,
      flags: ['canary', null, true],
      nested: { 'k y': -0 },
      e: '😀',
    };
    const text = parametersJsonOf(value);
    assert.deepEqual(parseParametersJson(text), JSON.parse(text));
    assert.equal(canonicalJson(parseParametersJson(text)), canonicalJson(value));
  });
});

describe('differential: the strict reader agrees with JSON.parse wherever it accepts', () => {
  // A deterministic generator of JSON documents (and near-misses), so a failure reproduces.
  let seed = 0x5eed;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const strings = [
    '',
    'a',
    'k y',
    '\\"',
    '\\\\',
    '\\/',
    '\\n',
    '\\u00e9',
    '\\ud83d\\ude00',
    'é',
    '😀',
    '__proto__x',
    'constructor',
    'toString',
  ];
  const numbers = [
    '0',
    '-0',
    '1',
    '-1',
    '0.5',
    '1e3',
    '1E-3',
    '-2.5e+2',
    '9007199254740991',
    '-9007199254740991',
    '123.456e-7',
    '1e-300',
  ];
  const ws = () => [' ', '', '\n', '\t', '\r\n'][rand(5)] as string;
  const value = (depth: number): string => {
    const k = rand(depth > 4 ? 4 : 6);
    if (k === 0) return `"${strings[rand(strings.length)]}"`;
    if (k === 1) return numbers[rand(numbers.length)] as string;
    if (k === 2) return ['true', 'false', 'null'][rand(3)] as string;
    if (k === 3) return `"${strings[rand(strings.length)]}${strings[rand(strings.length)]}"`;
    if (k === 4)
      return `[${ws()}${Array.from({ length: rand(4) }, () => value(depth + 1)).join(`${ws()},${ws()}`)}${ws()}]`;
    return object(depth + 1);
  };
  const object = (depth: number): string => {
    // Distinct once escapes are decoded ("\\ud83d\\ude00" and "😀" are one name).
    const byName = new Map(
      Array.from({ length: rand(5) }, () => strings[rand(strings.length)] as string).map((n) => [
        JSON.parse(`"${n}"`) as string,
        n,
      ]),
    );
    const names = [...byName.values()];
    return `{${ws()}${names.map((n) => `"${n}"${ws()}:${ws()}${value(depth)}`).join(`${ws()},${ws()}`)}${ws()}}`;
  };

  it('reads 2000 generated documents exactly as JSON.parse does', () => {
    for (let i = 0; i < 2000; i++) {
      const text = `${ws()}${object(0)}${ws()}`;
      const reference = JSON.parse(text) as unknown;
      assert.deepEqual(parseParametersJson(text), reference, text);
      assert.equal(canonicalJson(parseParametersJson(text)), canonicalJson(reference as never), text);
    }
  });

  it('refuses everything JSON.parse refuses (2000 mutated documents)', () => {
    const breakers = ['{', '}', '[', ']', ',', ':', '"', 'x', '\u0001', '\\'];
    let refusedByBoth = 0;
    for (let i = 0; i < 2000; i++) {
      const text = object(0);
      const at = rand(text.length);
      const mutated = text.slice(0, at) + (breakers[rand(breakers.length)] as string) + text.slice(at + rand(2));
      let referenceAccepts = true;
      try {
        JSON.parse(mutated);
      } catch {
        referenceAccepts = false;
      }
      if (!referenceAccepts) {
        refusedByBoth++;
        assert.throws(() => parseParametersJson(mutated), ParametersError, mutated);
      }
    }
    assert.ok(refusedByBoth > 500, `only ${refusedByBoth} mutations were invalid JSON`);
  });
});

describe('the parameters digest: base64url(SHA-256(RFC 8785 text as UTF-8))', () => {
  // Expected values from `printf '%s' TEXT | openssl dgst -sha256 -binary | basenc --base64url`,
  // so they hold whichever hashing call Node offers (crypto.hash, or a Hash object before 20.12).
  it('matches digests computed outside Node, for ASCII and non-ASCII text', () => {
    assert.equal(digestOfCanonical('{"a":[1,"x"],"b":2}'), 'jL1UijImK3amU27-Tnuoag6BH80Eddg6Q-EKzQYVqjc');
    assert.equal(digestOfCanonical('{"\u00e9":"\u20ac"}'), 'j2IeTSJVJRZ_Nsr4m6XoiYbnC6s0MwcHD4k7vPOQtpw');
    assert.equal(parametersDigest({ b: 2, a: [1, 'x'] }), 'jL1UijImK3amU27-Tnuoag6BH80Eddg6Q-EKzQYVqjc');
  });
});
