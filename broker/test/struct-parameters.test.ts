// RequestOperation's parameters as a google.protobuf.Struct (the oneof beside parameters_json):
// the same digest for the same object, the same limits, and a clear refusal of what a Struct
// cannot carry exactly. Messages go through the real protobuf encoding, as on the wire.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parametersDigest, RequestOperationRequest } from '@countersign/proto';
import { CountersignError } from '../src/errors.js';
import { validateOperationRequest } from '../src/requests/validate.js';

/** What the broker decodes from a client that sent this message. */
const overTheWire = (req: Partial<RequestOperationRequest>): RequestOperationRequest =>
  RequestOperationRequest.decode(
    RequestOperationRequest.encode(
      RequestOperationRequest.create({ operation: 'deploy', resource: 'prod/web', ...req }),
    ).finish(),
  );

function refusal(req: Partial<RequestOperationRequest>): CountersignError {
  try {
    validateOperationRequest(overTheWire(req));
  } catch (e) {
    assert.ok(e instanceof CountersignError, String(e));
    return e;
  }
  assert.fail('expected a refusal');
}

describe('parameters as a google.protobuf.Struct', () => {
  const object = {
    version: '1.4.2',
    replicas: 3,
    canary: true,
    regions: ['eu', 'us'],
    notes: null,
    limits: { cpu: 0.5 },
  };

  it('gives the same canonical form and digest as the same object in parameters_json', () => {
    const fromStruct = validateOperationRequest(overTheWire({ parameters: object }));
    const fromJson = validateOperationRequest(overTheWire({ parametersJson: JSON.stringify(object) }));
    assert.equal(fromStruct.parametersCanonical, fromJson.parametersCanonical);
    assert.equal(fromStruct.parametersDigest, fromJson.parametersDigest);
    assert.equal(fromStruct.parametersDigest, parametersDigest(object));
  });

  it('treats an empty Struct as {}', () => {
    assert.deepEqual(validateOperationRequest(overTheWire({ parameters: {} })).parameters, {});
  });

  it('keeps keys that are special to JavaScript objects as plain keys', () => {
    const op = validateOperationRequest(overTheWire({ parameters: { constructor: 'x', toString: 'y' } }));
    assert.equal(op.parametersCanonical, '{"constructor":"x","toString":"y"}');
  });

  const invalid: [string, Partial<RequestOperationRequest>, string, RegExp][] = [
    ['both forms at once', { parameters: { a: 1 }, parametersJson: '{"a":1}' }, 'parameters', /both set/],
    [
      'an integer beyond 2^53',
      { parameters: { n: 2 ** 53 + 2 } },
      'parameters.n',
      /beyond .*2\^53.*send it as a string/,
    ],
    ['NaN', { parameters: { x: { y: Number.NaN } } }, 'parameters.x.y', /NaN/],
    ['Infinity in a list', { parameters: { xs: [1, Number.POSITIVE_INFINITY] } }, 'parameters.xs[1]', /Infinity/],
    // 33 levels: protobuf decoding itself stops at about 33 (100 nested messages).
    [
      'nesting deeper than 32 levels',
      { parameters: JSON.parse(`${'{"a":'.repeat(33)}1${'}'.repeat(33)}`) },
      'parameters',
      /nested deeper than 32/,
    ],
  ];
  for (const [name, req, field, message] of invalid) {
    it(`refuses ${name}, naming ${field}`, () => {
      const e = refusal(req);
      assert.equal(e.code, 'ERR_INVALID_FIELD');
      assert.equal(e.details.field, field);
      assert.match(e.message, message);
    });
  }

  it('applies the parameter size and key limits, as RESOURCE_EXHAUSTED', () => {
    const big = refusal({ parameters: { blob: 'x'.repeat(70 * 1024) } });
    assert.equal(big.code, 'ERR_LIMIT_EXCEEDED');
    assert.equal(big.details.field, 'parameters');
    assert.equal(big.details.limit, 'requests.limits.max_parameters_bytes');
    const keys = refusal({ parameters: Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`k${i}`, i])) });
    assert.equal(keys.code, 'ERR_LIMIT_EXCEEDED');
    assert.match(keys.message, /more than 2048 keys/);
  });

  it('accepts large safe integers and fractions exactly', () => {
    const op = validateOperationRequest(overTheWire({ parameters: { n: 2 ** 53 - 1, f: 0.1 } }));
    assert.equal(op.parametersCanonical, '{"f":0.1,"n":9007199254740991}');
  });
});
