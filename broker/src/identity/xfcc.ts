// The x-forwarded-client-cert header (XFCC) that a TLS-terminating proxy such as
// Envoy or an Istio ingress adds: the certificate its own client presented.
// Format (Envoy): elements separated by ",", each "Key=Value" pairs separated by
// ";", values optionally double-quoted; Cert and Chain are URL-encoded PEM.
//
// Believing this header means believing the proxy, so the broker only reads it
// on connections whose own SVID is a configured proxy ID (peer-authenticator.ts),
// and then validates the forwarded chain exactly like a direct one.
import { createHash } from 'node:crypto';
import { CountersignError, type ErrorCode } from '../errors.js';
import { pemToDer } from './bundle.js';

export const XFCC_HEADER = 'x-forwarded-client-cert';
export const MAX_XFCC_BYTES = 32 * 1024;

export interface ForwardedCertificate {
  /** Leaf first, as the proxy's client presented it. */
  chain: Buffer[];
  /** The URI SAN the proxy reported, if any. */
  uri: string | undefined;
  /** The proxy's own identity as it reported it (By=), if any. */
  by: string | undefined;
}

function refuse(code: ErrorCode, message: string): CountersignError {
  return new CountersignError('unauthenticated', code, `xfcc: ${message}`);
}

/** Splits on a separator outside double quotes. */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (c === separator && !quoted) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (quoted) throw refuse('ERR_XFCC_MALFORMED', 'unterminated quoted value');
  parts.push(text.slice(start));
  return parts;
}

const unquote = (value: string): string =>
  value.length >= 2 && value.startsWith('"') && value.endsWith('"')
    ? value.slice(1, -1).replace(/\\(.)/g, '$1')
    : value;

function urlDecode(value: string, key: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw refuse('ERR_XFCC_MALFORMED', `${key} is not URL-encoded PEM`);
  }
}

/** Parses one XFCC header value; exactly one element is accepted. */
export function parseXfcc(header: string): ForwardedCertificate {
  if (Buffer.byteLength(header) > MAX_XFCC_BYTES)
    throw refuse('ERR_XFCC_TOO_LARGE', `header is larger than ${MAX_XFCC_BYTES} bytes`);
  const elements = splitOutsideQuotes(header, ',').filter((e) => e.trim() !== '');
  if (elements.length === 0) throw refuse('ERR_XFCC_MALFORMED', 'header is empty');
  if (elements.length > 1) {
    throw refuse(
      'ERR_XFCC_MULTIPLE',
      `header holds ${elements.length} elements; the broker accepts exactly one (configure the proxy to replace, not append: Envoy forward_client_cert_details SANITIZE_SET)`,
    );
  }
  const fields = new Map<string, string>();
  for (const pair of splitOutsideQuotes(elements[0] as string, ';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw refuse('ERR_XFCC_MALFORMED', `expected Key=Value, got ${JSON.stringify(pair.slice(0, 40))}`);
    const key = pair.slice(0, eq).trim().toLowerCase();
    if (fields.has(key) && key !== 'dns') throw refuse('ERR_XFCC_MALFORMED', `${key} appears twice`);
    fields.set(key, unquote(pair.slice(eq + 1).trim()));
  }
  const certPem = fields.has('cert') ? urlDecode(fields.get('cert') as string, 'Cert') : undefined;
  const chainPem = fields.has('chain') ? urlDecode(fields.get('chain') as string, 'Chain') : undefined;
  const leafOnly = certPem === undefined ? [] : pemToDer(certPem);
  const chain = chainPem === undefined ? leafOnly : pemToDer(chainPem);
  if (chain.length === 0)
    throw refuse(
      'ERR_XFCC_NO_CERTIFICATE',
      'no Cert or Chain with a PEM certificate (enable set_current_client_cert_details cert/chain on the proxy)',
    );
  if (leafOnly.length > 1) throw refuse('ERR_XFCC_MALFORMED', 'Cert holds more than one certificate');
  if (leafOnly.length === 1 && !(leafOnly[0] as Buffer).equals(chain[0] as Buffer)) {
    throw refuse('ERR_XFCC_INCONSISTENT', 'Cert is not the first certificate of Chain');
  }
  const hash = fields.get('hash');
  if (
    hash !== undefined &&
    hash.toLowerCase() !==
      createHash('sha256')
        .update(chain[0] as Buffer)
        .digest('hex')
  ) {
    throw refuse('ERR_XFCC_INCONSISTENT', 'Hash does not match the forwarded certificate');
  }
  return { chain, uri: fields.get('uri'), by: fields.get('by') };
}
