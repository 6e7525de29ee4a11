// Request messages are decoded by the generated code before any handler runs,
// and it throws on what it cannot represent (an int64 beyond 2^53, such as a
// Duration of int64 max seconds); grpc-js answers a throwing decoder with
// INTERNAL. Each method's decoder is wrapped here so that such a message
// reaches the handler as an UndecodableRequest, which the RPC wrappers in
// status.ts answer with INVALID_ARGUMENT naming the field.
//
// google.protobuf.Struct fields (RequestOperation's `parameters`) are checked on
// the wire before the generated decoder sees them, for what it would lose or
// choke on: a member named "__proto__" (its `fields[key] = value` drops it, or
// makes it the object's prototype) is refused naming the member, as
// parameters_json refuses it; nesting past PARAMETERS_LIMITS.depth is refused
// naming the field and the limit, instead of the decoder's generic recursion
// error. The walk stops at that depth, so no input makes it recurse further.
import type { ServiceDefinition } from '@grpc/grpc-js';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { PARAMETERS_LIMITS } from '@countersign/proto';
import { CountersignError, invalidField } from '../errors.js';

/** What a handler receives instead of a request whose bytes could not be decoded. */
export class UndecodableRequest {
  constructor(readonly error: CountersignError) {}
}

/** google.protobuf.Duration fields of request messages, by method path: field number and name. */
const DURATION_FIELDS: Record<string, { number: number; name: string }[]> = {
  '/countersign.v1.Broker/RequestOperation': [{ number: 7, name: 'requested_ttl' }],
};

/** Duration.seconds must lie within ±315,576,000,000 (10,000 years), per duration.proto. */
const MAX_DURATION_SECONDS = 315_576_000_000n;

/** The first Duration field whose seconds the generated decoder cannot (or must not) take, as an error naming it. */
function durationProblem(bytes: Uint8Array, fields: { number: number; name: string }[]): CountersignError | undefined {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const field = fields.find((f) => f.number === number);
    if (field === undefined || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, number);
      continue;
    }
    const duration = new BinaryReader(reader.bytes());
    while (duration.pos < duration.len) {
      const [inner, innerType] = duration.tag();
      if (inner !== 1 || innerType !== WireType.Varint) {
        duration.skip(innerType, inner);
        continue;
      }
      const seconds = BigInt(duration.int64());
      if (seconds > MAX_DURATION_SECONDS || seconds < -MAX_DURATION_SECONDS) {
        return invalidField(
          `${field.name}.seconds`,
          `${seconds} is out of range (a google.protobuf.Duration holds at most ±${MAX_DURATION_SECONDS} seconds)`,
          {
            value: seconds.toString(),
          },
        );
      }
    }
  }
  return undefined;
}

/** google.protobuf.Struct fields of request messages, by method path: field number and name. */
const STRUCT_FIELDS: Record<string, { number: number; name: string }[]> = {
  '/countersign.v1.Broker/RequestOperation': [{ number: 10, name: 'parameters' }],
};

/** Paths in messages stay readable whatever the keys: the start of a long one is enough to find it. */
const MAX_PATH_CHARS = 256;
const shortPath = (path: string): string => (path.length > MAX_PATH_CHARS ? `${path.slice(0, MAX_PATH_CHARS)}…` : path);

class StructProblem extends Error {
  constructor(readonly error: CountersignError) {
    super(error.message);
  }
}

/** Every length-delimited occurrence of field `number` in a message's bytes. */
function* occurrences(bytes: Uint8Array, number: number): Generator<Uint8Array> {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [n, wireType] = reader.tag();
    if (n === number && wireType === WireType.LengthDelimited) yield reader.bytes();
    else reader.skip(wireType, n);
  }
}

/** Struct { repeated FieldsEntry fields = 1 }, FieldsEntry { string key = 1; Value value = 2 }. */
function walkStruct(bytes: Uint8Array, field: string, path: string, depth: number): void {
  if (depth >= PARAMETERS_LIMITS.depth)
    throw new StructProblem(
      invalidField(field, `is nested deeper than ${PARAMETERS_LIMITS.depth} levels`, { path: shortPath(path) }),
    );
  for (const entry of occurrences(bytes, 1)) {
    let key = '';
    const reader = new BinaryReader(entry);
    const values: Uint8Array[] = [];
    while (reader.pos < reader.len) {
      const [n, wireType] = reader.tag();
      if (n === 1 && wireType === WireType.LengthDelimited) key = reader.string();
      else if (n === 2 && wireType === WireType.LengthDelimited) values.push(reader.bytes());
      else reader.skip(wireType, n);
    }
    const at = `${path}.${key}`;
    if (key === '__proto__') {
      throw new StructProblem(
        invalidField(
          shortPath(at),
          'the member name "__proto__" is not accepted (JavaScript objects treat it as their prototype, so readers disagree on it); rename it',
          { problem: 'reserved_key' },
        ),
      );
    }
    for (const value of values) walkValue(value, field, at, depth + 1);
  }
}

/** Value { ...; Struct struct_value = 5; ListValue list_value = 6 }, ListValue { repeated Value values = 1 }. */
function walkValue(bytes: Uint8Array, field: string, path: string, depth: number): void {
  for (const s of occurrences(bytes, 5)) walkStruct(s, field, path, depth);
  for (const l of occurrences(bytes, 6)) {
    if (depth >= PARAMETERS_LIMITS.depth)
      throw new StructProblem(
        invalidField(field, `is nested deeper than ${PARAMETERS_LIMITS.depth} levels`, { path: shortPath(path) }),
      );
    let i = 0;
    for (const item of occurrences(l, 1)) walkValue(item, field, `${path}[${i++}]`, depth + 1);
  }
}

/** The first Struct field (in the message's order) holding what the generated decoder would drop or choke on, as an error naming it. */
export function structProblem(
  bytes: Uint8Array,
  fields: { number: number; name: string }[],
): CountersignError | undefined {
  try {
    // One pass over the message (every request goes through here; most carry no Struct):
    // each occurrence of a Struct field is walked where it stands.
    const reader = new BinaryReader(bytes);
    while (reader.pos < reader.len) {
      const [n, wireType] = reader.tag();
      const f = wireType === WireType.LengthDelimited ? fields.find((x) => x.number === n) : undefined;
      if (f === undefined) reader.skip(wireType, n);
      else walkStruct(reader.bytes(), f.name, f.name, 0);
    }
  } catch (e) {
    if (e instanceof StructProblem) return e.error;
    // Not even the wire format holds: the generated decoder says so.
  }
  return undefined;
}

function explain(path: string, bytes: Uint8Array, error: unknown): CountersignError {
  const fields = DURATION_FIELDS[path];
  if (fields !== undefined) {
    try {
      const problem = durationProblem(bytes, fields);
      if (problem !== undefined) return problem;
    } catch {
      // Not even the wire format holds: said below.
    }
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new CountersignError(
    'invalid_argument',
    'ERR_MALFORMED_MESSAGE',
    `the ${path.split('/').pop() ?? 'request'} message could not be decoded: ${reason.slice(0, 200)}`,
  );
}

/** The service with every request decoder wrapped: an undecodable message becomes an UndecodableRequest. */
export function withTolerantDecoding(definition: ServiceDefinition): ServiceDefinition {
  const wrapped: Record<string, ServiceDefinition[string]> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    const structs = STRUCT_FIELDS[method.path];
    wrapped[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        const problem = structs === undefined ? undefined : structProblem(bytes, structs);
        if (problem !== undefined) return new UndecodableRequest(problem);
        try {
          // grpc-js types a deserializer's result as any; the handlers decide what it is.
          return decode(bytes) as unknown;
        } catch (e) {
          return new UndecodableRequest(explain(method.path, bytes, e));
        }
      },
    };
  }
  return wrapped;
}
