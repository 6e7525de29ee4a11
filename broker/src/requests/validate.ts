// Validation of RequestOperation input. Every field has a limit, and every
// refusal names the field, the value (or its size) and what was expected.
import type { PolicyInput } from '../policy/decision.js';
import { canonicalJson, digestOfCanonical, type Duration, type JsonObject, type RequestOperationRequest } from '@countersign/proto';
import { CountersignError, invalidField } from '../errors.js';
import { normalizePrincipalName } from '../policy/principal-name.js';
import { parametersFromStruct } from './struct-parameters.js';

export const LIMITS = {
  operationLength: 128,
  resourceLength: 512,
  parametersBytes: 64 * 1024,
  parametersDepth: 32,
  parametersKeys: 2048,
  reasonLength: 2048,
  ticketLength: 128,
  clientRequestIdLength: 128,
  audienceLength: 512,
  requestedTtlMs: 24 * 3600_000,
} as const;

/** The size limits an operator can set (requests.limits); the rest are fixed. */
export interface SizeLimits {
  parametersBytes: number;
  reasonLength: number;
}

export const DEFAULT_SIZE_LIMITS: SizeLimits = { parametersBytes: LIMITS.parametersBytes, reasonLength: LIMITS.reasonLength };

/** A field is larger than a limit allows: RESOURCE_EXHAUSTED, naming the field and the limit. */
export function limitExceeded(field: string, message: string, limit: string, details: Record<string, unknown> = {}): CountersignError {
  return new CountersignError('resource_exhausted', 'ERR_LIMIT_EXCEEDED', `${field}: ${message} (limit ${limit})`, { field, limit, ...details });
}

/** A validated, normalised request for one operation. */
export interface OperationRequest {
  operation: string;
  resource: string;
  parameters: JsonObject;
  /** RFC 8785 form of parameters. */
  parametersCanonical: string;
  parametersDigest: string;
  reason: string;
  onBehalfOf: string;
  ticket: string;
  clientRequestId: string;
  audience: string;
  /** Milliseconds, or undefined when not asked for. */
  requestedTtlMs: number | undefined;
}

const OPERATION = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]+$/;
// Printable ASCII without space: resources are identifiers, not prose.
const RESOURCE = /^[\x21-\x7e]+$/;
// No control characters other than tab and newline in free text.
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;

function shown(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value);
}

function text(field: string, value: string, max: number): string {
  if (value.length > max) throw invalidField(field, `is ${value.length} characters long, at most ${max} are allowed`, { length: value.length, limit: max });
  if (CONTROL.test(value)) throw invalidField(field, 'contains control characters');
  return value;
}

function required(field: string, value: string, max: number, pattern: RegExp, expected: string): string {
  if (value.length === 0) throw invalidField(field, `is required (${expected})`);
  if (value.length > max) throw invalidField(field, `is ${value.length} characters long, at most ${max} are allowed`, { length: value.length, limit: max });
  if (!pattern.test(value)) throw invalidField(field, `${shown(value)} is not valid: expected ${expected}`);
  return value;
}

/**
 * Checks JSON text for what JSON.parse accepts silently: duplicate keys (the
 * approver and the resource server could read different values), excessive
 * nesting, and integers that cannot survive a round trip through a double.
 */
function checkJsonShape(field: string, source: string): void {
  const stack: { keys: Set<string> | null }[] = [];
  let keys = 0;
  let expectKey = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i] as string;
    if (c === '"') {
      let j = i + 1;
      while (j < source.length && source[j] !== '"') j += source[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top?.keys) {
        const key = JSON.parse(source.slice(i, j + 1)) as string;
        if (top.keys.has(key)) throw invalidField(field, `has the key ${shown(key)} twice; each key may appear once`);
        top.keys.add(key);
        if (++keys > LIMITS.parametersKeys) throw limitExceeded(field, `has more than ${LIMITS.parametersKeys} keys`, `of ${LIMITS.parametersKeys} keys`);
      }
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      stack.push({ keys: c === '{' ? new Set() : null });
      if (stack.length > LIMITS.parametersDepth) throw invalidField(field, `is nested deeper than ${LIMITS.parametersDepth} levels`);
      expectKey = c === '{';
    } else if (c === '}' || c === ']') {
      stack.pop();
      expectKey = false;
    } else if (c === ',') {
      expectKey = stack[stack.length - 1]?.keys != null;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      let j = i;
      while (j < source.length && /[-+0-9.eE]/.test(source[j] as string)) j++;
      const literal = source.slice(i, j);
      if (/^-?\d+$/.test(literal) && !Number.isSafeInteger(Number(literal))) {
        throw invalidField(field, `has the integer ${literal}, beyond what JSON numbers carry exactly (2^53); send it as a string`);
      }
      i = j - 1;
    }
  }
}

export function parseParameters(field: string, source: string, maxBytes: number = LIMITS.parametersBytes): JsonObject {
  if (source.trim() === '') return {};
  const bytes = Buffer.byteLength(source, 'utf8');
  if (bytes > maxBytes) {
    throw limitExceeded(field, `is ${bytes} bytes, at most ${maxBytes} are allowed`, 'requests.limits.max_parameters_bytes', { bytes, max: maxBytes });
  }
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch (e) {
    throw invalidField(field, `is not valid JSON: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const kind = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    throw invalidField(field, `must be a JSON object, got ${kind}`);
  }
  checkJsonShape(field, source);
  return value as JsonObject;
}

/** The parameters in whichever form they came: parameters_json (exact text) or the Struct. */
function operationParameters(req: RequestOperationRequest, maxBytes: number): JsonObject {
  if (req.parameters !== undefined && req.parametersJson !== undefined) {
    throw invalidField('parameters', 'and parameters_json are both set; send the parameters once, in one form');
  }
  return req.parameters !== undefined ? parametersFromStruct(req.parameters, maxBytes) : parseParameters('parameters_json', req.parametersJson ?? '', maxBytes);
}

function durationMs(field: string, d: Duration | undefined): number | undefined {
  if (d === undefined) return undefined;
  const ms = d.seconds * 1000 + Math.floor(d.nanos / 1e6);
  if (ms < 0 || d.nanos < 0) throw invalidField(field, 'must not be negative');
  if (ms === 0) return undefined;
  if (ms > LIMITS.requestedTtlMs) throw invalidField(field, `is ${d.seconds}s, at most ${LIMITS.requestedTtlMs / 1000}s are allowed`);
  return ms;
}

export function validateOperationRequest(req: RequestOperationRequest, limits: SizeLimits = DEFAULT_SIZE_LIMITS): OperationRequest {
  const operation = required('operation', req.operation, LIMITS.operationLength, OPERATION, 'letters, digits and ".", "_", ":", "-", e.g. "deploy"');
  const resource = required('resource', req.resource, LIMITS.resourceLength, RESOURCE, 'printable ASCII without spaces, e.g. "prod/payments"');
  const parameters = operationParameters(req, limits.parametersBytes);
  if (req.reason.length > limits.reasonLength) {
    throw limitExceeded('reason', `is ${req.reason.length} characters long, at most ${limits.reasonLength} are allowed`, 'requests.limits.max_reason_length', {
      length: req.reason.length,
      max: limits.reasonLength,
    });
  }
  const clientRequestId =
    req.clientRequestId === ''
      ? ''
      : required('client_request_id', req.clientRequestId, LIMITS.clientRequestIdLength, CLIENT_REQUEST_ID, 'letters, digits and ".", "_", ":", "-"');
  const audience = text('audience', req.audience, LIMITS.audienceLength);
  if (/\s/.test(audience)) throw invalidField('audience', `${shown(audience)} must not contain whitespace`);
  const parametersCanonical = canonicalJson(parameters);
  return {
    operation,
    resource,
    parameters,
    parametersCanonical,
    parametersDigest: digestOfCanonical(parametersCanonical),
    reason: text('reason', req.reason, limits.reasonLength),
    // One spelling per person, or separation of duties could be talked around ("Alice", "alice ", "аlice").
    onBehalfOf: req.onBehalfOf === '' ? '' : normalizePrincipalName(req.onBehalfOf, 'on_behalf_of'),
    ticket: text('ticket', req.ticket, LIMITS.ticketLength),
    clientRequestId,
    audience,
    requestedTtlMs: durationMs('requested_ttl', req.requestedTtl),
  };
}

/** What policy decides on: the caller's SVID facts and the validated request. */
export function policyInputOf(workload: PolicyInput['workload'], op: OperationRequest, now: number): PolicyInput {
  return {
    workload,
    operation: op.operation,
    resource: op.resource,
    parameters: op.parameters,
    reason: op.reason,
    ticket: op.ticket,
    onBehalfOf: op.onBehalfOf,
    now,
  };
}
