// HTTP plumbing for the console: bounded bodies, cookies, and the headers every
// response carries (a strict CSP with scripts only from /static, no framing, no
// caching, no referrer to other sites).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CountersignError, type ErrorKind } from '../errors.js';
import type { Html } from './html.js';

export const MAX_BODY_BYTES = 64 * 1024;

/** Script and style only from this origin's /static; nothing inline, no framing, forms post only here. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export function securityHeaders(https: boolean): Record<string, string> {
  return {
    'content-security-policy': CONTENT_SECURITY_POLICY,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    // Not no-referrer: with it, browsers send "Origin: null" on form posts, and the origin check needs the real one.
    'referrer-policy': 'same-origin',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'permissions-policy':
      'camera=(), microphone=(), geolocation=(), payment=(), publickey-credentials-get=(self), publickey-credentials-create=(self)',
    ...(https ? { 'strict-transport-security': 'max-age=31536000' } : {}),
  };
}

export const STATUS_OF_KIND: Record<ErrorKind, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 409,
  resource_exhausted: 429,
  unavailable: 503,
  unimplemented: 501,
  internal: 500,
};

export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    const name = part.slice(0, i).trim();
    if (!cookies.has(name)) cookies.set(name, part.slice(i + 1).trim());
  }
  return cookies;
}

export interface CookieOptions {
  secure: boolean;
  sameSite: 'Strict' | 'Lax';
  maxAgeSeconds?: number;
}

export function cookie(name: string, value: string, o: CookieOptions): string {
  return [
    `${name}=${value}`,
    'Path=/',
    'HttpOnly',
    `SameSite=${o.sameSite}`,
    ...(o.secure ? ['Secure'] : []),
    ...(o.maxAgeSeconds === undefined ? [] : [`Max-Age=${o.maxAgeSeconds}`]),
  ].join('; ');
}

export const clearCookie = (name: string, o: Omit<CookieOptions, 'maxAgeSeconds'>): string =>
  cookie(name, '', { ...o, maxAgeSeconds: 0 });

/** The body, at most MAX_BODY_BYTES, as a form or JSON object. */
export async function readBody(
  req: IncomingMessage,
): Promise<{ kind: 'form'; form: URLSearchParams } | { kind: 'json'; json: unknown }> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded' && type !== 'application/json') {
    throw new CountersignError(
      'invalid_argument',
      'ERR_CONSOLE_BAD_REQUEST',
      `expected a form or JSON body, got content-type ${JSON.stringify(type ?? '')}`,
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new CountersignError(
        'resource_exhausted',
        'ERR_CONSOLE_BODY_TOO_LARGE',
        `the request body is larger than ${MAX_BODY_BYTES} bytes`,
      );
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (type === 'application/x-www-form-urlencoded') return { kind: 'form', form: new URLSearchParams(text) };
  try {
    return { kind: 'json', json: JSON.parse(text) as unknown };
  } catch {
    throw new CountersignError('invalid_argument', 'ERR_CONSOLE_BAD_REQUEST', 'the body is not JSON');
  }
}

export function sendHtml(
  res: ServerResponse,
  status: number,
  page: Html,
  headers: Record<string, string | string[]> = {},
): void {
  const body = page.markup;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string | string[]> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function redirect(res: ServerResponse, location: string, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(303, { location, 'content-length': 0, ...headers });
  res.end();
}
