import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJson, parametersDigest, RequestOperationRequest } from '@countersign/proto';
import { CountersignError } from '../src/errors.js';
import { LIMITS, validateOperationRequest } from '../src/requests/validate.js';

const base = RequestOperationRequest.create({
  operation: 'deploy',
  resource: 'prod/web',
  parametersJson: '{"version":"1.2.3"}',
});

function refusal(patch: Partial<RequestOperationRequest>): CountersignError {
  try {
    validateOperationRequest({ ...base, ...patch });
  } catch (e) {
    assert.ok(e instanceof CountersignError);
    return e;
  }
  assert.fail('expected a refusal');
}

describe('RequestOperation validation', () => {
  it('normalises parameters to RFC 8785 and digests them', () => {
    const op = validateOperationRequest({ ...base, parametersJson: '{ "b": 2, "a": [1, "x"] }' });
    assert.equal(op.parametersCanonical, '{"a":[1,"x"],"b":2}');
    assert.equal(op.parametersDigest, parametersDigest({ a: [1, 'x'], b: 2 }));
  });

  it("gives the canonical text and digest of @countersign/proto's canonicalJson, which clients compute", () => {
    const texts = [
      '{"z":{"b":[1,2.5,-0.0,1e-7,333.333,9007199254740991],"a":null},"y":true,"\u00e9":"\u20ac","e\u0301":"x"}',
      String.raw`{"s":"tab\there \"quoted\" back\\slash \u0001 \u007f \u2028 \ud83d\ude00","n":123456789012}`,
      '{"10":1,"9":2,"B":3,"a":4,"_":[{"q":{"r":[]}},{}],"empty":""}',
      '{"deep":[[[[{"k":"v"}]]]],"num":-1.5e-10,"small":5e-324,"frac":0.1}',
    ];
    for (const parametersJson of texts) {
      const op = validateOperationRequest({ ...base, parametersJson });
      assert.equal(op.parametersCanonical, canonicalJson(JSON.parse(parametersJson)), parametersJson);
      assert.equal(op.parametersDigest, parametersDigest(JSON.parse(parametersJson)), parametersJson);
    }
  });

  it('treats empty parameters as {}', () => {
    assert.deepEqual(validateOperationRequest({ ...base, parametersJson: '' }).parameters, {});
  });

  const cases: [string, Partial<RequestOperationRequest>, string, RegExp][] = [
    ['missing operation', { operation: '' }, 'operation', /required/],
    ['operation with spaces', { operation: 'rm -rf' }, 'operation', /not valid/],
    ['over-long resource', { resource: 'a'.repeat(LIMITS.resourceLength + 1) }, 'resource', /at most 512/],
    [
      'parameters that are an array',
      { parametersJson: '[1,2]' },
      'parameters_json',
      /must be a JSON object, got an array/,
    ],
    [
      'parameters that are a string',
      { parametersJson: '"x"' },
      'parameters_json',
      /must be a JSON object, got a string/,
    ],
    ['parameters that are not JSON', { parametersJson: '{version: 1}' }, 'parameters_json', /not valid JSON/],
    [
      'duplicate keys',
      { parametersJson: '{"a":1,"b":{"c":1},"a":2}' },
      'parameters_json',
      /\$\.a: the member name "a" appears twice/,
    ],
    [
      'unsafe integers',
      { parametersJson: '{"n":12345678901234567890}' },
      'parameters_json',
      /\$\.n: the number 12345678901234567890 is beyond ±9007199254740991 \(2\^53 - 1\)/,
    ],
    ['deep nesting', { parametersJson: `${'{"a":'.repeat(40)}1${'}'.repeat(40)}` }, 'parameters_json', /nested deeper/],
    ['control characters in the reason', { reason: 'ok\u0000' }, 'reason', /control characters/],
    ['a bad idempotency key', { clientRequestId: 'a b' }, 'client_request_id', /not valid/],
    ['a negative TTL', { requestedTtl: { seconds: -5, nanos: 0 } }, 'requested_ttl', /negative/],
    ['a TTL over a day', { requestedTtl: { seconds: 90_000, nanos: 0 } }, 'requested_ttl', /at most 86400s/],
  ];
  for (const [name, patch, field, message] of cases) {
    it(`refuses ${name}, naming ${field}`, () => {
      const e = refusal(patch);
      assert.equal(e.kind, 'invalid_argument');
      assert.equal(e.code, 'ERR_INVALID_FIELD');
      assert.equal(e.details.field, field);
      assert.match(e.message, new RegExp(`^${field}: `));
      assert.match(e.message, message);
    });
  }

  const oversized: [string, Partial<RequestOperationRequest>, string, RegExp][] = [
    [
      '1 MiB of parameters',
      { parametersJson: JSON.stringify({ blob: 'x'.repeat(1024 * 1024) }) },
      'parameters_json',
      /bytes, at most 65536 are allowed \(limit requests.limits.max_parameters_bytes\)/,
    ],
    [
      'parameters with 3000 keys',
      { parametersJson: JSON.stringify(Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`k${i}`, i]))) },
      'parameters_json',
      /has more than 2048 member names \(limit of 2048 member names\)/,
    ],
    [
      'a reason of 3000 characters',
      { reason: 'x'.repeat(3000) },
      'reason',
      /at most 2048 are allowed \(limit requests.limits.max_reason_length\)/,
    ],
  ];
  for (const [name, patch, field, message] of oversized) {
    it(`answers ${name} with RESOURCE_EXHAUSTED naming ${field} and the limit`, () => {
      const e = refusal(patch);
      assert.equal(e.kind, 'resource_exhausted');
      assert.equal(e.code, 'ERR_LIMIT_EXCEEDED');
      assert.equal(e.details.field, field);
      assert.match(e.message, new RegExp(`^${field}: `));
      assert.match(e.message, message);
    });
  }

  it('applies configured size limits', () => {
    const limits = { parametersBytes: 32, reasonLength: 10 };
    assert.equal(
      validateOperationRequest({ ...base, parametersJson: '{"v":"1234567890"}', reason: '0123456789' }, limits).reason,
      '0123456789',
    );
    assert.throws(() => validateOperationRequest({ ...base, parametersJson: `{"v":"${'x'.repeat(30)}"}` }, limits), {
      code: 'ERR_LIMIT_EXCEEDED',
      message: /^parameters_json: is 38 bytes, at most 32/,
    });
    assert.throws(() => validateOperationRequest({ ...base, reason: 'x'.repeat(11) }, limits), {
      code: 'ERR_LIMIT_EXCEEDED',
      message: /^reason: is 11 characters/,
    });
  });

  it('does not mistake a nested key for a duplicate, nor ":" inside strings for keys', () => {
    const op = validateOperationRequest({
      ...base,
      parametersJson: '{"a":{"a":1},"s":"\\"a\\":2","l":[{"a":1},{"a":2}]}',
    });
    assert.deepEqual(Object.keys(op.parameters), ['a', 's', 'l']);
  });
});
