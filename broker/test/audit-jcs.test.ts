// The audit's own RFC 8785 canonicaliser (audit/jcs.ts) against the `canonicalize`
// package it replaced on the audit path: the same text for every JSON value, the same
// refusals, and a plain copy equal to what JSON.parse makes of the text.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import canonicalize from 'canonicalize';
import { cachedMemberNames, jcs } from '../src/audit/jcs.js';

/** A small deterministic PRNG (mulberry32), so a failure names a seed that reproduces it. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CHARS = [
  'a',
  'Z',
  '0',
  ' ',
  '"',
  '\\',
  '/',
  '\n',
  '\t',
  '\u0000',
  '\u001f',
  '\u007f',
  'é',
  '\u2028',
  '\u20ac',
  '\ud83d\ude00', // a surrogate pair: one code point
  '\ufeff',
  '\u00ff',
];

function randomString(r: () => number): string {
  let s = '';
  const n = Math.floor(r() * 12);
  for (let i = 0; i < n; i++) s += CHARS[Math.floor(r() * CHARS.length)];
  return s;
}

const NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.1,
  1e21,
  1e-7,
  123456789012,
  5e-324,
  1.7976931348623157e308,
  2 ** 53,
  -1.5e-10,
  333.333,
];

function randomValue(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 3 ? 5 : 8));
  switch (k) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return r() < 0.5 ? NUMBERS[Math.floor(r() * NUMBERS.length)] : (r() - 0.5) * 10 ** Math.floor(r() * 30);
    case 3:
    case 4:
      return randomString(r);
    case 5: {
      const a: unknown[] = [];
      const n = Math.floor(r() * 4);
      for (let i = 0; i < n; i++) a.push(r() < 0.1 ? undefined : randomValue(r, depth + 1));
      return a;
    }
    case 6:
      return new Date(Math.floor(r() * 2e12));
    default: {
      const o: Record<string, unknown> = {};
      const n = Math.floor(r() * 6);
      for (let i = 0; i < n; i++) o[randomString(r)] = r() < 0.1 ? undefined : randomValue(r, depth + 1);
      return o;
    }
  }
}

test('the same text as the canonicalize package, and the plain copy JSON.parse makes of it', () => {
  for (let seed = 1; seed <= 3000; seed++) {
    const value = randomValue(prng(seed), 0);
    const expected = canonicalize(value);
    const { text, plain } = jcs(value);
    assert.equal(text, expected, `seed ${seed}`);
    assert.deepEqual(plain, JSON.parse(text), `seed ${seed}`);
  }
});

test('an audit event with nested evidence, undefined members and a Date', () => {
  const event = {
    type: 'credential_issued',
    request_id: 'req_1',
    on_behalf_of: undefined,
    approval: { approvers: [{ principal: 'alice@example.com', step_up: undefined, at: new Date(0) }], rule: 'r' },
    z: [1, undefined, 'x'],
    é: 'accent',
    '\ud83d\ude00': 'pair',
    '\u20ac': 'euro',
  };
  const { text, plain } = jcs(event);
  assert.equal(text, canonicalize(event));
  assert.deepEqual(plain, JSON.parse(text));
  assert.equal(Object.hasOwn(plain as object, 'on_behalf_of'), false);
});

test('members in code-unit order, for few and for many members', () => {
  const r = prng(7);
  for (const n of [2, 15, 31, 32, 33, 80]) {
    const value: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) value[`${randomString(r)}${i % 3 === 0 ? '\u20ac' : ''}${i}`] = i;
    assert.equal(jcs(value).text, canonicalize(value), `${n} members`);
  }
});

test('a "__proto__" member stays an own member of the copy, as JSON.parse keeps it', () => {
  const value = JSON.parse('{"__proto__":{"polluted":1},"a":1}') as object;
  const { text, plain } = jcs(value);
  assert.equal(text, canonicalize(value));
  assert.deepEqual(plain, JSON.parse(text));
  assert.equal(Object.getPrototypeOf(plain), Object.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('refuses what has no canonical JSON form, as canonicalize does', () => {
  const cycle: Record<string, unknown> = { a: 1 };
  cycle.self = cycle;
  for (const bad of [
    Number.NaN,
    Number.POSITIVE_INFINITY,
    { n: Number.NEGATIVE_INFINITY },
    'lone \ud800 high',
    { k: 'lone \udc00 low' },
    { ['key \ud800']: 1 },
    ['\ud83d'],
    cycle,
  ]) {
    assert.throws(() => canonicalize(bad));
    assert.throws(() => jcs(bad), TypeError);
  }
  // Where canonicalize writes text that is not JSON, this refuses.
  assert.throws(() => jcs({ f: () => 1 }), TypeError);
  assert.throws(() => jcs({ b: 1n }), TypeError);
  assert.throws(() => jcs(undefined), TypeError);
});

test('an object seen twice without a cycle is written twice', () => {
  const shared = { x: 1 };
  const value = { a: shared, b: [shared, shared] };
  assert.equal(jcs(value).text, canonicalize(value));
});

test('the one-call SHA-256 gives what a Hash object gives', async () => {
  const { createHash } = await import('node:crypto');
  const { sha256 } = await import('../src/digest.js');
  for (const input of ['', 'abc', 'é\u20ac\ud83d\ude00', 'x'.repeat(5000)]) {
    assert.equal(sha256(input, 'hex'), createHash('sha256').update(input, 'utf8').digest('hex'));
    assert.equal(sha256(input, 'base64url'), createHash('sha256').update(input, 'utf8').digest('base64url'));
  }
});

test('an object JSON keeps as it is is its own plain copy; one it changes is copied whole', () => {
  const kept = { type: 'decision', b: 1, a: 'x', nested: { n: 2, t: true, z: null } };
  const same = jcs(kept);
  assert.equal(same.plain, kept);
  assert.deepStrictEqual(same.plain, JSON.parse(same.text));
  // Arrays are always copied (JSON drops what an array holds besides its items).
  const withArray = { a: [1, 2] };
  assert.notEqual(jcs(withArray).plain, withArray);
  assert.deepStrictEqual(jcs(withArray).plain, withArray);
  // A change after some members were kept (undefined, -0, toJSON, a class instance): the copy has them all.
  for (const [change, expected] of [
    [undefined, undefined],
    [-0, 0],
    [new Date(0), '1970-01-01T00:00:00.000Z'],
    [{ toJSON: () => 'j' }, 'j'],
  ] as const) {
    const value = { a: 1, b: 'two', c: { d: 3 }, m: change, z: 'last' };
    const { text, plain } = jcs(value);
    assert.notEqual(plain, value);
    assert.deepStrictEqual(plain, JSON.parse(text));
    assert.equal(Object.is((plain as Record<string, unknown>).m, expected), true);
    assert.equal((plain as { c: unknown }).c, value.c, 'an unchanged member object is kept as it is');
  }
  const instance = new (class Event {
    a = 1;
  })();
  assert.notEqual(jcs(instance).plain, instance);
  assert.deepStrictEqual(jcs(instance).plain, { a: 1 });
});

test("long member names (a requester's parameters go through this walk) are not kept in the names' cache", () => {
  const before = cachedMemberNames();
  const long = `k${'x'.repeat(100_000)}`;
  assert.equal(jcs({ [long]: 1 }).text, `{"${long}":1}`);
  assert.equal(cachedMemberNames(), before, 'a 100,001-character name was cached');
  const short = `short-${before}`;
  jcs({ [short]: 1 });
  assert.equal(cachedMemberNames(), before + 1, 'short names are cached');
});
