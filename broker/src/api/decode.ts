// Request messages are decoded by the generated code before any handler runs,
// and it throws on what it cannot represent (an int64 beyond 2^53, such as a
// Duration of int64 max seconds); grpc-js answers a throwing decoder with
// INTERNAL. Each method's decoder is wrapped here so that such a message
// reaches the handler as an UndecodableRequest, which the RPC wrappers in
// status.ts answer with INVALID_ARGUMENT naming the field.
import type { ServiceDefinition } from '@grpc/grpc-js';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
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
        return invalidField(`${field.name}.seconds`, `${seconds} is out of range (a google.protobuf.Duration holds at most ±${MAX_DURATION_SECONDS} seconds)`, {
          value: seconds.toString(),
        });
      }
    }
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
  return new CountersignError('invalid_argument', 'ERR_MALFORMED_MESSAGE', `the ${path.split('/').pop() ?? 'request'} message could not be decoded: ${reason.slice(0, 200)}`);
}

/** The service with every request decoder wrapped: an undecodable message becomes an UndecodableRequest. */
export function withTolerantDecoding(definition: ServiceDefinition): ServiceDefinition {
  const wrapped: Record<string, ServiceDefinition[string]> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    wrapped[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (e) {
          return new UndecodableRequest(explain(method.path, bytes, e));
        }
      },
    };
  }
  return wrapped;
}
