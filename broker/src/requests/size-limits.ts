// The size limits of a request's fields and the refusal that names one: a leaf that
// validate.ts and struct-parameters.ts (which validate.ts calls) both use.
import { PARAMETERS_LIMITS } from '@countersign/proto';
import { CountersignError } from '../errors.js';

export const LIMITS = {
  operationLength: 128,
  resourceLength: 512,
  parametersBytes: PARAMETERS_LIMITS.bytes,
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

export const DEFAULT_SIZE_LIMITS: SizeLimits = {
  parametersBytes: LIMITS.parametersBytes,
  reasonLength: LIMITS.reasonLength,
};

/** A field is larger than a limit allows: RESOURCE_EXHAUSTED, naming the field and the limit. */
export function limitExceeded(
  field: string,
  message: string,
  limit: string,
  details: Record<string, unknown> = {},
): CountersignError {
  return new CountersignError('resource_exhausted', 'ERR_LIMIT_EXCEEDED', `${field}: ${message} (limit ${limit})`, {
    field,
    limit,
    ...details,
  });
}
