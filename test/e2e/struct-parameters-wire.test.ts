// RequestOperation's `parameters` as a google.protobuf.Struct, written byte by byte
// and sent over real mTLS gRPC: what the generated decoder would lose or choke on
// is refused with INVALID_ARGUMENT naming the place, never dropped silently, never
// INTERNAL or a crash, and nothing is stored or audited for it.
// - A member "__proto__": the decoder assigns fields with obj[key] = value, so the
//   key vanished (or became the object's prototype); parameters_json refuses it.
// - Nesting 10,000 levels deep: the decoder stops at its recursion limit with a
//   generic error; the refusal names `parameters` and the depth limit instead.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { PARAMETERS_LIMITS, RequestOperationRequest, RequestState } from '@countersign/proto';
import { startTestBroker, type IssuedSvid, type TestBroker } from '@countersign/broker/testing';
import { callRequestOperation, errorCode, refusal } from './support/raw-grpc.js';

// google.protobuf.Struct on the wire: Struct { repeated FieldsEntry fields = 1 },
// FieldsEntry { string key = 1; Value value = 2 }, Value { null_value = 1;
// number_value = 2; string_value = 3; bool_value = 4; Struct struct_value = 5;
// ListValue list_value = 6 }, ListValue { repeated Value values = 1 }.
type Wire = Uint8Array;
const message = (build: (w: BinaryWriter) => void): Wire => {
  const w = new BinaryWriter();
  build(w);
  return w.finish();
};
const str = (s: string): Wire => message((w) => w.uint32(26).string(s));
const num = (n: number): Wire => message((w) => w.uint32(17).double(n));
const structValue = (s: Wire): Wire => message((w) => w.uint32(42).bytes(s));
const listValue = (l: Wire): Wire => message((w) => w.uint32(50).bytes(l));
const struct = (entries: [string, Wire][]): Wire =>
  message((w) => {
    for (const [key, value] of entries)
      w.uint32(10).bytes(message((e) => e.uint32(10).string(key).uint32(18).bytes(value)));
  });
const list = (values: Wire[]): Wire =>
  message((w) => {
    for (const v of values) w.uint32(10).bytes(v);
  });

/** A RequestOperationRequest for deploy staging/web whose parameters (field 10) are these Struct bytes. */
function request(parameters: Wire): Buffer {
  const writer = RequestOperationRequest.encode(
    RequestOperationRequest.create({ operation: 'deploy', resource: 'staging/web' }),
  );
  writer.uint32(82).bytes(parameters);
  return Buffer.from(writer.finish());
}

/** {"a": {"a": ... {} }} with `levels` objects, built from the inside out. */
function nestedStructs(levels: number): Wire {
  let s = struct([]);
  for (let i = 1; i < levels; i++) s = struct([['a', structValue(s)]]);
  return s;
}

/** {"l": [[[ ... ]]]} with `levels` lists inside the outer object. */
function nestedLists(levels: number): Wire {
  let l = list([]);
  for (let i = 1; i < levels; i++) l = list([listValue(l)]);
  return struct([['l', listValue(l)]]);
}

describe('parameters as a Struct on the wire: __proto__ and deep nesting', () => {
  let t: TestBroker;
  let deployer: IssuedSvid;
  before(async () => {
    t = await startTestBroker();
    deployer = t.svid('ci/deployer');
  });
  after(async () => t?.close());

  async function refused(parameters: Wire): Promise<ServiceError> {
    const before = (await t.auditEvents()).length;
    const e = await refusal(callRequestOperation(t, deployer, request(parameters)));
    assert.equal(e.code, status.INVALID_ARGUMENT, `${status[e.code]}: ${e.details}`);
    assert.equal(errorCode(e), 'ERR_INVALID_FIELD', e.details);
    assert.equal((await t.auditEvents()).length, before, 'nothing is audited for a refused request');
    return e;
  }

  const protoCases: [string, Wire, string][] = [
    [
      'at the top',
      struct([
        ['__proto__', str('x')],
        ['version', str('1.4.2')],
      ]),
      'parameters.__proto__',
    ],
    [
      'holding an object (it would become the prototype)',
      struct([['__proto__', structValue(struct([['admin', num(1)]]))]]),
      'parameters.__proto__',
    ],
    ['in a nested object', struct([['db', structValue(struct([['__proto__', str('x')]]))]]), 'parameters.db.__proto__'],
    [
      'in an object inside a list',
      struct([['items', listValue(list([structValue(struct([['__proto__', num(1)]]))]))]]),
      'parameters.items[0].__proto__',
    ],
  ];
  for (const [name, parameters, path] of protoCases) {
    it(`refuses a member "__proto__" ${name}, naming ${path}`, async () => {
      const e = await refused(parameters);
      assert.ok(e.details.startsWith(`${path}: the member name "__proto__" is not accepted`), e.details);
    });
  }

  for (const [name, parameters] of [
    ['objects nested 10,000 levels deep', nestedStructs(10_000)],
    ['lists nested 10,000 levels deep', nestedLists(10_000)],
    [
      `objects nested ${PARAMETERS_LIMITS.depth + 1} levels deep (one past the limit)`,
      nestedStructs(PARAMETERS_LIMITS.depth + 1),
    ],
  ] as const) {
    it(`refuses ${name} with INVALID_ARGUMENT naming parameters and the depth limit`, async () => {
      const e = await refused(parameters);
      assert.match(
        e.details,
        new RegExp(
          `^parameters: (parameters[.a-z\\[\\]0-9]*: )?is nested deeper than ${PARAMETERS_LIMITS.depth} levels$`,
        ),
      );
    });
  }

  it(`accepts objects nested exactly ${PARAMETERS_LIMITS.depth} levels deep, and the broker still answers afterwards`, async () => {
    const r = await callRequestOperation(t, deployer, request(nestedStructs(PARAMETERS_LIMITS.depth)));
    assert.equal(r.state, RequestState.REQUEST_STATE_APPROVED, r.message);
    // Keys that merely look special stay plain keys.
    const ok = await callRequestOperation(
      t,
      deployer,
      request(
        struct([
          ['constructor', str('x')],
          ['__proto__x', str('y')],
        ]),
      ),
    );
    assert.equal(ok.state, RequestState.REQUEST_STATE_APPROVED, ok.message);
  });
});
