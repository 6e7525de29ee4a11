// Trust bundles: the X.509 authorities of each trust domain. A bundle set maps
// trust domain -> bundle; SVIDs are validated against the bundle of their own
// trust domain only.
import { X509Certificate } from 'node:crypto';
import { CountersignError } from '../errors.js';
import { parseTrustDomain } from './spiffe-id.js';

export interface X509Authority {
  readonly der: Buffer;
  readonly certificate: X509Certificate;
}

export interface TrustBundle {
  readonly trustDomain: string;
  readonly x509Authorities: readonly X509Authority[];
  /** spiffe_sequence from a SPIFFE bundle document, when known. */
  readonly sequence?: number;
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

function bundleError(code: string, message: string, details: Record<string, unknown> = {}): CountersignError {
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
    if (!certificate.ca) throw bundleError('ERR_BUNDLE_AUTHORITY_NOT_CA', `${where}: certificate ${certificate.subject} is not a CA`);
    return { der, certificate };
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

/** An immutable trust domain -> bundle map. */
export class BundleSet implements BundleSource {
  private readonly byTrustDomain: ReadonlyMap<string, TrustBundle>;

  constructor(bundles: Iterable<TrustBundle>) {
    const map = new Map<string, TrustBundle>();
    for (const bundle of bundles) {
      if (map.has(bundle.trustDomain)) {
        throw bundleError('ERR_BUNDLE_DUPLICATE_TRUST_DOMAIN', `trust domain ${bundle.trustDomain} is configured more than once`, {
          trustDomain: bundle.trustDomain,
        });
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
