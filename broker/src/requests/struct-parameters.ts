// RequestOperation's `parameters` in its google.protobuf.Struct form (what grpcurl and other
// JSON-speaking clients send as "parameters": {...}), checked to the same limits as
// `parameters_json` and turned into the JSON object whose RFC 8785 digest the credential
// carries. Struct numbers are doubles, so an integer beyond 2^53 has already lost its exact
// value on the wire: it is refused with the advice to send it as a string.
import {
  checkParametersValue,
  ParametersError,
  PARAMETERS_LIMITS,
  type JsonObject,
  type JsonValue,
} from '@countersign/proto';
import { invalidField } from '../errors.js';
import { LIMITS, limitExceeded } from './size-limits.js';

const FIELD = 'parameters';

/** Checks a decoded Struct (a plain object of Struct values) and returns it as a JSON object. */
export function parametersFromStruct(
  struct: Record<string, unknown>,
  maxBytes: number = LIMITS.parametersBytes,
): JsonObject {
  let keys = 0;
  const walk = (value: unknown, path: string, depth: number): JsonValue => {
    if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw invalidField(path, `is ${value}; JSON has no such number`);
      if (Number.isInteger(value) && !Number.isSafeInteger(value)) {
        throw invalidField(
          path,
          `is the integer ${value}, beyond what a Struct number (a double) carries exactly (2^53); send it as a string, or use parameters_json`,
        );
      }
      return value;
    }
    if (depth >= PARAMETERS_LIMITS.depth)
      throw invalidField(FIELD, `is nested deeper than ${PARAMETERS_LIMITS.depth} levels`);
    if (Array.isArray(value)) return value.map((item, i) => walk(item, `${path}[${i}]`, depth + 1));
    if (typeof value === 'object') {
      const out: JsonObject = {};
      for (const [key, item] of Object.entries(value)) {
        if (++keys > PARAMETERS_LIMITS.keys)
          throw limitExceeded(
            FIELD,
            `has more than ${PARAMETERS_LIMITS.keys} keys`,
            `of ${PARAMETERS_LIMITS.keys} keys`,
          );
        Object.defineProperty(out, key, {
          value: walk(item, `${path}.${key}`, depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
    // A Value whose kind is not set decodes to undefined.
    throw invalidField(path, 'has no value (a google.protobuf.Value with no kind set)');
  };
  const parameters = walk(struct, FIELD, 0) as JsonObject;
  const bytes = Buffer.byteLength(JSON.stringify(parameters), 'utf8');
  if (bytes > maxBytes) {
    throw limitExceeded(
      FIELD,
      `is ${bytes} bytes as JSON, at most ${maxBytes} are allowed`,
      'requests.limits.max_parameters_bytes',
      { bytes, max: maxBytes },
    );
  }
  // The same strict rules as parameters_json (lone surrogates, __proto__, ...), so both forms refuse alike.
  try {
    checkParametersValue(parameters, { maxBytes });
  } catch (e) {
    if (!(e instanceof ParametersError)) throw e;
    throw invalidField(FIELD, e.message, { problem: e.problem, path: e.path });
  }
  return parameters;
}
