// Trust bundles: the X.509 authorities of each trust domain. A bundle set maps
// trust domain -> bundle; SVIDs are validated against the bundle of their own
// trust domain only. Bundles come as PEM, as a SPIFFE bundle document (a JWK
// Set, SPIFFE Trust Domain and Bundle spec section 4, X.509-SVID spec section 6)
// or as the concatenated DER the Workload API sends.
import { X509Certificate } from 'node:crypto';
import { CountersignError, type ErrorCode } from '../errors.js';
import { parseTrustDomain } from './spiffe-id.js';
import { parseStrictJson, StrictJsonError } from './strict-json.js';
import { readCertificateFields } from './x509-fields.js';

export interface X509Authority {
  readonly der: Buffer;
  readonly certificate: X509Certificate;
  /** Its pathLenConstraint, read once when the bundle is loaded. */
  readonly pathLength?: number | undefined;
}

export interface TrustBundle {
  readonly trustDomain: string;
  readonly x509Authorities: readonly X509Authority[];
  /** spiffe_sequence from a SPIFFE bundle document, when known (a uint64). */
  readonly sequence?: bigint;
  /** spiffe_refresh_hint in seconds, when known. */
  readonly refreshHintSeconds?: number;
}

/** Where validation looks up the bundle for a trust domain. */
export interface BundleSource {
  getBundle(trustDomain: string): TrustBundle | undefined;
}

export const MAX_BUNDLE_BYTES = 1024 * 1024;
export const MAX_AUTHORITIES_PER_BUNDLE = 64;

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g;

function bundleError(code: ErrorCode, message: string, details: Record<string, unknown> = {}): CountersignError {
  return new CountersignError('invalid_argument', code, `bundle: ${message}`, details);
}

/** Splits PEM text into DER certificates; anything else in the text is ignored. */
export function pemToDer(pem: string): Buffer[] {
  const out: Buffer[] = [];
  for (const match of pem.matchAll(PEM_CERTIFICATE)) {
    out.push(Buffer.from((match[1] ?? '').replace(/\s+/g, ''), 'base64'));
  }
  return out;
}

export function derToPem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
}

function authority(der: Buffer, where: string): X509Authority {
  try {
    const certificate = new X509Certificate(der);
    if (!certificate.ca)
      throw bundleError('ERR_BUNDLE_AUTHORITY_NOT_CA', `${where}: certificate ${certificate.subject} is not a CA`);
    return { der, certificate, pathLength: readCertificateFields(der).basicConstraints?.pathLength };
  } catch (e) {
    if (e instanceof CountersignError) throw e;
    throw bundleError('ERR_BUNDLE_MALFORMED_CERTIFICATE', `${where}: not a parsable X.509 certificate`);
  }
}

/** A bundle from PEM text holding one or more CA certificates. */
export function bundleFromPem(trustDomain: string, pem: string, where = 'PEM'): TrustBundle {
  parseTrustDomain(trustDomain);
  if (Buffer.byteLength(pem) > MAX_BUNDLE_BYTES) {
    throw bundleError('ERR_BUNDLE_TOO_LARGE', `${where}: larger than ${MAX_BUNDLE_BYTES} bytes`);
  }
  const ders = pemToDer(pem);
  if (ders.length === 0) throw bundleError('ERR_BUNDLE_EMPTY', `${where}: no CERTIFICATE blocks found`);
  if (ders.length > MAX_AUTHORITIES_PER_BUNDLE) {
    throw bundleError('ERR_BUNDLE_TOO_LARGE', `${where}: more than ${MAX_AUTHORITIES_PER_BUNDLE} certificates`);
  }
  return { trustDomain, x509Authorities: ders.map((der, i) => authority(der, `${where} certificate #${i + 1}`)) };
}

/** A bundle from DER certificates (the Workload API's bundle and federated_bundles fields). */
export function bundleFromDer(trustDomain: string, ders: readonly Buffer[], where = 'DER'): TrustBundle {
  parseTrustDomain(trustDomain);
  if (ders.length > MAX_AUTHORITIES_PER_BUNDLE) {
    throw bundleError('ERR_BUNDLE_TOO_LARGE', `${where}: more than ${MAX_AUTHORITIES_PER_BUNDLE} certificates`);
  }
  return { trustDomain, x509Authorities: ders.map((der, i) => authority(der, `${where} certificate #${i + 1}`)) };
}

/** What a SPIFFE bundle document held besides its X.509 authorities, for logs. */
export interface SpiffeBundleNotes {
  /** JWK elements skipped, with why (unknown use or key type, no x5c, JWT-SVID key). */
  ignored: string[];
}

const JWK_KEY_TYPES: Record<string, string[]> = { EC: ['ec'], RSA: ['rsa', 'rsa-pss'], OKP: ['ed25519', 'ed448'] };
const MAX_REFRESH_HINT_SECONDS = 366 * 24 * 3600;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A bundle from a SPIFFE bundle document. X.509 authorities are the JWK elements
 * with use "x509-svid", each carrying exactly one certificate in x5c. Elements
 * with another or no use, an unknown kty, or no x5c are ignored (spec 4.1.3,
 * 4.2.1, 4.2.2); duplicate members anywhere are refused.
 */
export function bundleFromSpiffeJson(
  trustDomain: string,
  text: string,
  where = 'SPIFFE bundle',
  notes: SpiffeBundleNotes = { ignored: [] },
): TrustBundle {
  parseTrustDomain(trustDomain);
  if (Buffer.byteLength(text) > MAX_BUNDLE_BYTES) {
    throw bundleError('ERR_BUNDLE_TOO_LARGE', `${where}: larger than ${MAX_BUNDLE_BYTES} bytes`);
  }
  let doc: unknown;
  try {
    doc = parseStrictJson(text);
  } catch (e) {
    if (e instanceof StrictJsonError && e.reason === 'duplicate') {
      throw bundleError('ERR_BUNDLE_DUPLICATE_KEY', `${where}: ${e.message}; a bundle must not repeat a member`);
    }
    throw bundleError('ERR_BUNDLE_JSON', `${where}: not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(doc)) throw bundleError('ERR_BUNDLE_JSON', `${where}: expected a JSON object (a JWK Set)`);
  if (!('keys' in doc))
    throw bundleError('ERR_BUNDLE_NO_KEYS', `${where}: the "keys" member is required (SPIFFE bundle spec 4.1.3)`);
  const keys = doc.keys;
  if (!Array.isArray(keys)) throw bundleError('ERR_BUNDLE_NO_KEYS', `${where}: "keys" must be an array of JWKs`);
  if (keys.length > MAX_AUTHORITIES_PER_BUNDLE * 4)
    throw bundleError('ERR_BUNDLE_TOO_LARGE', `${where}: more than ${MAX_AUTHORITIES_PER_BUNDLE * 4} keys`);

  let sequence: bigint | undefined;
  if ('spiffe_sequence' in doc) {
    const raw = doc.spiffe_sequence;
    const value =
      typeof raw === 'bigint' ? raw : typeof raw === 'number' && Number.isInteger(raw) ? BigInt(raw) : undefined;
    if (value === undefined || value < 0n || value > 0xffffffffffffffffn) {
      throw bundleError(
        'ERR_BUNDLE_SEQUENCE',
        `${where}: spiffe_sequence must be an unsigned 64-bit integer, got ${JSON.stringify(String(raw)).slice(0, 60)}`,
      );
    }
    sequence = value;
  }
  let refreshHintSeconds: number | undefined;
  if ('spiffe_refresh_hint' in doc) {
    const raw = doc.spiffe_refresh_hint;
    if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 0 || raw > MAX_REFRESH_HINT_SECONDS) {
      throw bundleError(
        'ERR_BUNDLE_REFRESH_HINT',
        `${where}: spiffe_refresh_hint must be a whole number of seconds between 0 and ${MAX_REFRESH_HINT_SECONDS}, got ${String(raw).slice(0, 40)}`,
      );
    }
    refreshHintSeconds = raw;
  }

  const x509Authorities: X509Authority[] = [];
  keys.forEach((key: unknown, i) => {
    const at = `${where} keys[${i}]`;
    if (!isObject(key)) throw bundleError('ERR_BUNDLE_JSON', `${at}: expected a JWK object`);
    if (key.use !== 'x509-svid') {
      notes.ignored.push(`${at}: use ${key.use === undefined ? 'missing' : JSON.stringify(key.use)}`);
      return;
    }
    const kty = typeof key.kty === 'string' ? JWK_KEY_TYPES[key.kty] : undefined;
    if (kty === undefined) {
      notes.ignored.push(`${at}: unknown kty ${JSON.stringify(key.kty)}`);
      return;
    }
    if (!('x5c' in key)) {
      notes.ignored.push(`${at}: x509-svid key without x5c`);
      return;
    }
    const x5c = key.x5c;
    if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== 'string') {
      throw bundleError(
        'ERR_BUNDLE_X5C',
        `${at}: an x509-svid key must carry exactly one certificate in x5c, got ${Array.isArray(x5c) ? x5c.length : typeof x5c}`,
      );
    }
    const b64 = x5c[0];
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64))
      throw bundleError('ERR_BUNDLE_X5C', `${at}: x5c[0] is not standard base64 (RFC 7517 4.7)`);
    const a = authority(Buffer.from(b64, 'base64'), `${at} x5c[0]`);
    const certType = a.certificate.publicKey.asymmetricKeyType ?? '';
    if (!kty.includes(certType)) {
      throw bundleError(
        'ERR_BUNDLE_X5C',
        `${at}: kty ${String(key.kty)} does not match the certificate's ${certType || 'unknown'} key`,
      );
    }
    if (x509Authorities.length >= MAX_AUTHORITIES_PER_BUNDLE) {
      throw bundleError('ERR_BUNDLE_TOO_LARGE', `${where}: more than ${MAX_AUTHORITIES_PER_BUNDLE} X.509 authorities`);
    }
    x509Authorities.push(a);
  });
  return {
    trustDomain,
    x509Authorities,
    ...(sequence === undefined ? {} : { sequence }),
    ...(refreshHintSeconds === undefined ? {} : { refreshHintSeconds }),
  };
}

export type BundleFormat = 'pem' | 'spiffe';

export function parseBundle(
  trustDomain: string,
  text: string,
  format: BundleFormat,
  where: string,
  notes?: SpiffeBundleNotes,
): TrustBundle {
  return format === 'spiffe'
    ? bundleFromSpiffeJson(trustDomain, text, where, notes)
    : bundleFromPem(trustDomain, text, where);
}

/** An immutable trust domain -> bundle map. */
export class BundleSet implements BundleSource {
  private readonly byTrustDomain: ReadonlyMap<string, TrustBundle>;

  constructor(bundles: Iterable<TrustBundle>) {
    const map = new Map<string, TrustBundle>();
    for (const bundle of bundles) {
      if (map.has(bundle.trustDomain)) {
        throw bundleError(
          'ERR_BUNDLE_DUPLICATE_TRUST_DOMAIN',
          `trust domain ${bundle.trustDomain} is configured more than once`,
          {
            trustDomain: bundle.trustDomain,
          },
        );
      }
      map.set(bundle.trustDomain, bundle);
    }
    this.byTrustDomain = map;
  }

  getBundle(trustDomain: string): TrustBundle | undefined {
    return this.byTrustDomain.get(trustDomain);
  }

  get trustDomains(): string[] {
    return [...this.byTrustDomain.keys()];
  }

  get bundles(): TrustBundle[] {
    return [...this.byTrustDomain.values()];
  }

  /** Every authority of every trust domain, as PEM: what the TLS layer is given. */
  allAuthoritiesPem(): string {
    const seen = new Set<string>();
    let pem = '';
    for (const bundle of this.byTrustDomain.values()) {
      for (const a of bundle.x509Authorities) {
        const key = a.certificate.fingerprint256;
        if (seen.has(key)) continue;
        seen.add(key);
        pem += derToPem(a.der);
      }
    }
    return pem;
  }
}
