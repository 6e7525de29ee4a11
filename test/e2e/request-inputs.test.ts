// Issue 14, finding 5: inputs that used to reach INTERNAL (with a stack trace in
// the log) are INVALID_ARGUMENT naming the field, over real mTLS gRPC; nothing is
// stored or audited for them. The messages are sent as bytes, so the client's own
// encoder cannot tidy them up first.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { RequestOperationRequest, RequestState } from '@countersign/proto';
import { startTestBroker, type IssuedSvid, type TestBroker } from '@countersign/broker/testing';
import { callRequestOperation as call, errorCode, refusal } from './support/raw-grpc.js';

const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;

/** RequestOperationRequest bytes: the fields as ts-proto encodes them, then a requested_ttl written by hand. */
function encodeRequest(fields: Partial<RequestOperationRequest>, ttl?: { seconds: bigint; nanos: number }): Buffer {
  const writer = RequestOperationRequest.encode(
    RequestOperationRequest.create({ operation: 'deploy', resource: 'staging/web', ...fields }),
  );
  if (ttl !== undefined) {
    const duration = new BinaryWriter();
    if (ttl.seconds !== 0n) duration.uint32(8).int64(ttl.seconds);
    if (ttl.nanos !== 0) duration.uint32(16).int32(ttl.nanos);
    writer.uint32(58).bytes(duration.finish());
  }
  return Buffer.from(writer.finish());
}

describe('RequestOperation inputs that used to reach INTERNAL', () => {
  let t: TestBroker;
  let deployer: IssuedSvid;
  before(async () => {
    t = await startTestBroker();
    deployer = t.svid('ci/deployer');
  });
  after(async () => t?.close());

  const cases: [string, Buffer, string, RegExp][] = [
    [
      'a number beyond any double (1e400)',
      encodeRequest({ parametersJson: '{"n":1e400}' }),
      'parameters_json',
      /\$\.n: the number 1e400 is beyond ±9007199254740991 \(2\^53 - 1\)/,
    ],
    [
      'a negative number beyond any double (-1e400)',
      encodeRequest({ parametersJson: '{"n":[-1e400]}' }),
      'parameters_json',
      /\$\.n\[0\]: the number -1e400/,
    ],
    [
      'a lone surrogate in a string',
      encodeRequest({ parametersJson: '{"s":"\\ud800"}' }),
      'parameters_json',
      /\$\.s: a string holds a lone UTF-16 surrogate/,
    ],
    [
      'a lone surrogate in a member name',
      encodeRequest({ parametersJson: '{"k\\ud800":1}' }),
      'parameters_json',
      /a member name holds a lone UTF-16 surrogate/,
    ],
    [
      'a low surrogate alone',
      encodeRequest({ parametersJson: '{"s":"a\\udc00b"}' }),
      'parameters_json',
      /lone UTF-16 surrogate/,
    ],
    [
      'requested_ttl of int64 max seconds',
      encodeRequest({}, { seconds: INT64_MAX, nanos: 0 }),
      'requested_ttl.seconds',
      /^requested_ttl\.seconds: 9223372036854775807 is out of range/,
    ],
    [
      'requested_ttl of int64 min seconds',
      encodeRequest({}, { seconds: INT64_MIN, nanos: 0 }),
      'requested_ttl.seconds',
      /^requested_ttl\.seconds: -9223372036854775808 is out of range/,
    ],
    [
      'requested_ttl with nanos of 2e9',
      encodeRequest({}, { seconds: 60n, nanos: 2_000_000_000 }),
      'requested_ttl.nanos',
      /^requested_ttl\.nanos: 2000000000 is out of range \(0 to 999999999\)/,
    ],
    [
      'requested_ttl with negative nanos',
      encodeRequest({}, { seconds: 60n, nanos: -1 }),
      'requested_ttl.nanos',
      /^requested_ttl\.nanos: -1 is out of range/,
    ],
  ];
  for (const [name, bytes, field, message] of cases) {
    it(`answers ${name} with INVALID_ARGUMENT naming ${field}`, async () => {
      const before = (await t.auditEvents()).length;
      const e = await refusal(call(t, deployer, bytes));
      assert.equal(e.code, status.INVALID_ARGUMENT, `${status[e.code]}: ${e.details}`);
      assert.equal(errorCode(e), 'ERR_INVALID_FIELD', e.details);
      assert.ok(e.details.startsWith(`${field}: `), e.details);
      assert.match(e.details, message);
      assert.equal((await t.auditEvents()).length, before, 'nothing is audited for a malformed request');
    });
  }

  it('judges the 2^53 rule by the value, not by its spelling', async () => {
    const answers = await Promise.all(
      [
        '1e20',
        '100000000000000000000',
        '1.0e20',
        '100000000000000000000.0',
        '9007199254740992',
        '9007199254740993',
      ].map(async (n) => {
        const e = await refusal(call(t, deployer, encodeRequest({ parametersJson: `{"n":${n}}` })));
        return { code: e.code, error: errorCode(e), details: e.details.replace(n, 'N') };
      }),
    );
    for (const a of answers) assert.deepEqual(a, answers[0]);
    assert.equal(
      answers[0]?.details,
      'parameters_json: $.n: the number N is beyond ±9007199254740991 (2^53 - 1), the largest magnitude every JSON parser reads exactly; send it as a string',
    );
    // Within the range, every spelling of one value is the same parameters.
    const digests = await Promise.all(
      ['9007199254740991', '9.007199254740991e15', '90071992547409910e-1'].map(async (n) => {
        const r = await call(t, deployer, encodeRequest({ parametersJson: `{"n":${n}}` }));
        assert.equal(r.state, RequestState.REQUEST_STATE_APPROVED, r.message);
        return JSON.parse(Buffer.from((r.credential?.token ?? '').split('.')[1] ?? '', 'base64url').toString())
          .authorization_details[0].parameters_digest;
      }),
    );
    assert.equal(new Set(digests).size, 1);
  });

  it('refuses a requested_ttl shorter than the shortest credential the broker issues, when the request is made', async () => {
    for (const resource of ['staging/web', 'prod/web']) {
      const before = (await t.auditEvents()).length;
      const e = await refusal(call(t, deployer, encodeRequest({ resource }, { seconds: 1n, nanos: 0 })));
      assert.equal(e.code, status.INVALID_ARGUMENT, e.details);
      assert.equal(errorCode(e), 'ERR_INVALID_FIELD');
      assert.match(e.details, /^requested_ttl: 1s is shorter than the shortest credential the broker issues \(5s\)/);
      assert.equal((await t.auditEvents()).length, before, `no pending request is made for ${resource}`);
    }
    // Sub-second parts count: 4.9s is still too short; 5s is enough.
    const e = await refusal(call(t, deployer, encodeRequest({}, { seconds: 4n, nanos: 900_000_000 })));
    assert.match(e.details, /^requested_ttl: 4\.9s is shorter/);
    const ok = await call(t, deployer, encodeRequest({}, { seconds: 5n, nanos: 0 }));
    assert.equal(ok.state, RequestState.REQUEST_STATE_APPROVED, ok.message);
  });
});
