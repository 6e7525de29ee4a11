// SPIFFE ID parsing, exactly per the SPIFFE ID specification, section 2.
// The grammar is small and strict, so it is checked character by character
// rather than through URL parsing, which would normalise away the very
// mistakes (case, dot segments, percent-encoding) the spec forbids.
import { CountersignError } from '../errors.js';

export const SPIFFE_SCHEME_PREFIX = 'spiffe://';
export const MAX_SPIFFE_ID_BYTES = 2048;
export const MAX_TRUST_DOMAIN_LENGTH = 255;

export interface SpiffeId {
  /** The whole ID, e.g. spiffe://example.org/ci/deployer. */
  readonly id: string;
  readonly trustDomain: string;
  /** "" for a trust domain's own ID, else starts with "/". */
  readonly path: string;
}

export type SpiffeIdErrorCode =
  | 'ERR_SPIFFE_ID_EMPTY'
  | 'ERR_SPIFFE_ID_TOO_LONG'
  | 'ERR_SPIFFE_ID_SCHEME'
  | 'ERR_SPIFFE_ID_TRUST_DOMAIN_MISSING'
  | 'ERR_SPIFFE_ID_TRUST_DOMAIN_TOO_LONG'
  | 'ERR_SPIFFE_ID_TRUST_DOMAIN_CHAR'
  | 'ERR_SPIFFE_ID_PATH_EMPTY_SEGMENT'
  | 'ERR_SPIFFE_ID_PATH_DOT_SEGMENT'
  | 'ERR_SPIFFE_ID_PATH_CHAR'
  | 'ERR_SPIFFE_ID_TRAILING_SLASH';

function fail(code: SpiffeIdErrorCode, message: string, value: string): CountersignError {
  const shown = value.length > 80 ? `${value.slice(0, 80)}...` : value;
  return new CountersignError('invalid_argument', code, `spiffeid: ${message} (got ${JSON.stringify(shown)})`, {
    value: shown,
  });
}

const isTrustDomainChar = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;

const isPathChar = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) ||
  (c >= 0x41 && c <= 0x5a) ||
  (c >= 0x30 && c <= 0x39) ||
  c === 0x2e ||
  c === 0x2d ||
  c === 0x5f;

/** Validates a trust domain name (the part after spiffe://), returning it unchanged. */
export function parseTrustDomain(name: string): string {
  if (name.length === 0) throw fail('ERR_SPIFFE_ID_TRUST_DOMAIN_MISSING', 'trust domain is missing', name);
  if (name.length > MAX_TRUST_DOMAIN_LENGTH) {
    throw fail(
      'ERR_SPIFFE_ID_TRUST_DOMAIN_TOO_LONG',
      `trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`,
      name,
    );
  }
  for (let i = 0; i < name.length; i++) {
    if (!isTrustDomainChar(name.charCodeAt(i))) {
      throw fail(
        'ERR_SPIFFE_ID_TRUST_DOMAIN_CHAR',
        'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
        name,
      );
    }
  }
  return name;
}

/** Validates a path ("" or "/seg/seg"), returning it unchanged. */
export function parsePath(path: string, whole: string = path): string {
  if (path === '') return path;
  if (path.charCodeAt(0) !== 0x2f) throw fail('ERR_SPIFFE_ID_PATH_CHAR', 'path must start with "/"', whole);
  let segmentStart = 1;
  for (let i = 1; i <= path.length; i++) {
    const c = i < path.length ? path.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const segment = path.slice(segmentStart, i);
      if (segment.length === 0) {
        if (i === path.length) throw fail('ERR_SPIFFE_ID_TRAILING_SLASH', 'path cannot have a trailing slash', whole);
        throw fail('ERR_SPIFFE_ID_PATH_EMPTY_SEGMENT', 'path cannot contain empty segments', whole);
      }
      if (segment === '.' || segment === '..') {
        throw fail('ERR_SPIFFE_ID_PATH_DOT_SEGMENT', 'path cannot contain dot segments', whole);
      }
      segmentStart = i + 1;
    } else if (!isPathChar(c)) {
      throw fail(
        'ERR_SPIFFE_ID_PATH_CHAR',
        'path segment characters are limited to letters, numbers, dots, dashes, and underscores',
        whole,
      );
    }
  }
  return path;
}

/** Parses a SPIFFE ID or throws a CountersignError whose code names the rule broken. */
export function parseSpiffeId(id: string): SpiffeId {
  if (id.length === 0) throw fail('ERR_SPIFFE_ID_EMPTY', 'SPIFFE ID cannot be empty', id);
  if (Buffer.byteLength(id, 'utf8') > MAX_SPIFFE_ID_BYTES) {
    throw fail('ERR_SPIFFE_ID_TOO_LONG', `SPIFFE ID is longer than ${MAX_SPIFFE_ID_BYTES} bytes`, id);
  }
  if (!id.startsWith(SPIFFE_SCHEME_PREFIX))
    throw fail('ERR_SPIFFE_ID_SCHEME', 'scheme is missing or invalid, expected "spiffe://"', id);
  const rest = id.slice(SPIFFE_SCHEME_PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = parseTrustDomain(slash === -1 ? rest : rest.slice(0, slash));
  const path = slash === -1 ? '' : parsePath(rest.slice(slash), id);
  return { id, trustDomain, path };
}

/** The SPIFFE ID of a trust domain itself, e.g. spiffe://example.org. */
export const trustDomainId = (trustDomain: string): string => `${SPIFFE_SCHEME_PREFIX}${trustDomain}`;
