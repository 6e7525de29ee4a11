// Validation of RequestOperation input. Every field has a limit, and every
// refusal names the field, the value (or its size) and what was expected.
import type { PolicyInput } from '../policy/decision.js';
import {
  digestOfCanonical,
  ParametersError,
  PARAMETERS_LIMITS,
  parseParametersJson,
  type Duration,
  type JsonObject,
  type RequestOperationRequest,
} from '@countersign/proto';
import { jcsText } from '../audit/jcs.js';
import { MIN_CREDENTIAL_TTL_MS } from '../credentials/mint.js';
import { invalidField } from '../errors.js';
import { normalizePrincipalName } from '../policy/principal-name.js';
import { DEFAULT_SIZE_LIMITS, LIMITS, limitExceeded, type SizeLimits } from './size-limits.js';
import { parametersFromStruct } from './struct-parameters.js';

export { DEFAULT_SIZE_LIMITS, LIMITS, limitExceeded, type SizeLimits } from './size-limits.js';

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
  if (value.length > max)
    throw invalidField(field, `is ${value.length} characters long, at most ${max} are allowed`, {
      length: value.length,
      limit: max,
    });
  if (CONTROL.test(value)) throw invalidField(field, 'contains control characters');
  return value;
}

function required(field: string, value: string, max: number, pattern: RegExp, expected: string): string {
  if (value.length === 0) throw invalidField(field, `is required (${expected})`);
  if (value.length > max)
    throw invalidField(field, `is ${value.length} characters long, at most ${max} are allowed`, {
      length: value.length,
      limit: max,
    });
  if (!pattern.test(value)) throw invalidField(field, `${shown(value)} is not valid: expected ${expected}`);
  return value;
}

/**
 * Parameters under the strict rules of @countersign/proto (the ones every
 * requester tool checks with too): the message names the field, and where in
 * the parameters the problem is.
 */
export function parseParameters(field: string, source: string, maxBytes: number = LIMITS.parametersBytes): JsonObject {
  const bytes = Buffer.byteLength(source, 'utf8');
  if (bytes > maxBytes) {
    throw limitExceeded(
      field,
      `is ${bytes} bytes, at most ${maxBytes} are allowed`,
      'requests.limits.max_parameters_bytes',
      { bytes, max: maxBytes },
    );
  }
  try {
    return parseParametersJson(source, { maxBytes });
  } catch (e) {
    if (!(e instanceof ParametersError)) throw e;
    if (e.problem === 'too_many_keys')
      throw limitExceeded(field, e.message, `of ${PARAMETERS_LIMITS.keys} member names`, {
        problem: e.problem,
        path: e.path,
      });
    throw invalidField(field, e.message, { problem: e.problem, path: e.path });
  }
}

/** The parameters in whichever form they came: parameters_json (exact text) or the Struct. */
function operationParameters(req: RequestOperationRequest, maxBytes: number): JsonObject {
  if (req.parameters !== undefined && req.parametersJson !== undefined) {
    throw invalidField('parameters', 'and parameters_json are both set; send the parameters once, in one form');
  }
  return req.parameters !== undefined
    ? parametersFromStruct(req.parameters, maxBytes)
    : parseParameters('parameters_json', req.parametersJson ?? '', maxBytes);
}

const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(3))}s`;

/**
 * requested_ttl in ms (undefined when unset). A google.protobuf.Duration whose
 * seconds do not fit a double never gets here: api/decode.ts refuses it.
 */
function durationMs(field: string, d: Duration | undefined): number | undefined {
  if (d === undefined || (d.seconds === 0 && d.nanos === 0)) return undefined;
  if (d.seconds < 0) throw invalidField(field, 'must not be negative');
  if (!Number.isInteger(d.nanos) || d.nanos < 0 || d.nanos > 999_999_999) {
    throw invalidField(`${field}.nanos`, `${d.nanos} is out of range (0 to 999999999)`);
  }
  const ms = d.seconds * 1000 + d.nanos / 1e6;
  if (ms > LIMITS.requestedTtlMs)
    throw invalidField(field, `is ${seconds(ms)}, at most ${LIMITS.requestedTtlMs / 1000}s are allowed`);
  if (ms < MIN_CREDENTIAL_TTL_MS) {
    throw invalidField(
      field,
      `${seconds(ms)} is shorter than the shortest credential the broker issues (${MIN_CREDENTIAL_TTL_MS / 1000}s); ask for at least ${MIN_CREDENTIAL_TTL_MS / 1000}s, or leave it unset for the default`,
      { minMs: MIN_CREDENTIAL_TTL_MS },
    );
  }
  return Math.floor(ms);
}

export function validateOperationRequest(
  req: RequestOperationRequest,
  limits: SizeLimits = DEFAULT_SIZE_LIMITS,
): OperationRequest {
  const operation = required(
    'operation',
    req.operation,
    LIMITS.operationLength,
    OPERATION,
    'letters, digits and ".", "_", ":", "-", e.g. "deploy"',
  );
  const resource = required(
    'resource',
    req.resource,
    LIMITS.resourceLength,
    RESOURCE,
    'printable ASCII without spaces, e.g. "prod/payments"',
  );
  const parameters = operationParameters(req, limits.parametersBytes);
  if (req.reason.length > limits.reasonLength) {
    throw limitExceeded(
      'reason',
      `is ${req.reason.length} characters long, at most ${limits.reasonLength} are allowed`,
      'requests.limits.max_reason_length',
      {
        length: req.reason.length,
        max: limits.reasonLength,
      },
    );
  }
  const clientRequestId =
    req.clientRequestId === ''
      ? ''
      : required(
          'client_request_id',
          req.clientRequestId,
          LIMITS.clientRequestIdLength,
          CLIENT_REQUEST_ID,
          'letters, digits and ".", "_", ":", "-"',
        );
  const audience = text('audience', req.audience, LIMITS.audienceLength);
  if (/\s/.test(audience)) throw invalidField('audience', `${shown(audience)} must not contain whitespace`);
  // RFC 8785 with the audit's walk (audit/jcs.ts: the same text as @countersign/proto's
  // canonicalJson, which clients use, without its per-character scan and per-call Set).
  const parametersCanonical = jcsText(parameters);
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
