// X.509-SVID validation per the SPIFFE X.509-SVID specification, as a pure
// function of (chain, bundle source, time). The SPIFFE rules are ours: one SPIFFE
// ID, leaf and signing certificate constraints, and a path that ends at an
// authority of the bundle of the trust domain the leaf's own SPIFFE ID names (the
// TLS layer may have accepted the chain against the union of all trust domains'
// roots). RFC 5280 path validation of that path, name constraints included, is
// done by a maintained implementation (x509-path.ts); this file only adds what
// it lacks (pathLenConstraint, critical extensions) and gives precise codes.
import { X509Certificate } from 'node:crypto';
import { certificateThumbprint } from '@countersign/proto';
import { CountersignError, type ErrorCode } from '../errors.js';
import type { BundleSource, TrustBundle, X509Authority } from './bundle.js';
import { SvidCache } from './svid-cache.js';
import type { SvidIdentity } from './svid-identity.js';
import { parseSpiffeId, trustDomainId } from './spiffe-id.js';
import { KeyUsageFlags, readCertificateFields, type CertificateFields } from './x509-fields.js';
import { validatePath, type PathFailureReason } from './x509-path.js';

export type { SvidIdentity } from './svid-identity.js';

export type SvidRole = 'client' | 'server';

export interface VerifySvidOptions {
  /** Milliseconds since the epoch. */
  now: number;
  /** Which extended key usage the leaf must allow, when it lists any. Default client. */
  role?: SvidRole;
  /** Longest chain accepted, leaf included. Default 8. */
  maxChainLength?: number;
  /** Remembers accepted chains across calls (see svid-cache.ts); none by default. */
  cache?: SvidCache;
}

export const DEFAULT_MAX_CHAIN_LENGTH = 8;
export const MAX_CERTIFICATE_BYTES = 16 * 1024;

const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_NAME_CONSTRAINTS = '2.5.29.30';
const OID_ANY_EKU = '2.5.29.37.0';
const EKU_FOR_ROLE: Record<SvidRole, string> = { client: '1.3.6.1.5.5.7.3.2', server: '1.3.6.1.5.5.7.3.1' };
/** Critical extensions this validator understands; any other critical one is refused (RFC 5280 4.2). */
const UNDERSTOOD_CRITICAL = new Set([
  OID_BASIC_CONSTRAINTS,
  OID_KEY_USAGE,
  OID_EXT_KEY_USAGE,
  OID_SUBJECT_ALT_NAME,
  OID_NAME_CONSTRAINTS,
]);

function refuse(code: ErrorCode, message: string, details: Record<string, unknown> = {}): CountersignError {
  return new CountersignError('unauthenticated', code, `x509svid: ${message}`, details);
}

interface ParsedCertificate {
  der: Buffer;
  node: X509Certificate;
  fields: CertificateFields;
  notBefore: number;
  notAfter: number;
}

function checkExtensions(
  fields: Pick<CertificateFields, 'duplicateExtensions' | 'criticalExtensions'>,
  what: string,
): void {
  if (fields.duplicateExtensions.length > 0) {
    throw refuse('ERR_SVID_DUPLICATE_EXTENSION', `${what} repeats extension ${fields.duplicateExtensions.join(', ')}`);
  }
  const unknownCritical = fields.criticalExtensions.filter((oid) => !UNDERSTOOD_CRITICAL.has(oid));
  if (unknownCritical.length > 0) {
    throw refuse(
      'ERR_SVID_UNKNOWN_CRITICAL_EXTENSION',
      `${what} has an unsupported critical extension ${unknownCritical.join(', ')}`,
    );
  }
}

function parse(der: Uint8Array, what: string): ParsedCertificate {
  if (der.byteLength > MAX_CERTIFICATE_BYTES) {
    throw refuse('ERR_SVID_CERTIFICATE_TOO_LARGE', `${what} is larger than ${MAX_CERTIFICATE_BYTES} bytes`);
  }
  let parsed: ParsedCertificate;
  try {
    const buffer = Buffer.from(der);
    const node = new X509Certificate(buffer);
    parsed = {
      der: buffer,
      node,
      fields: readCertificateFields(buffer),
      notBefore: Date.parse(node.validFrom),
      notAfter: Date.parse(node.validTo),
    };
  } catch {
    throw refuse('ERR_SVID_MALFORMED', `${what} is not a parsable X.509 certificate`);
  }
  checkExtensions(parsed.fields, what);
  return parsed;
}

function checkValidity(
  cert: Pick<ParsedCertificate, 'notBefore' | 'notAfter'>,
  now: number,
  what: string,
  isLeaf: boolean,
): void {
  if (Number.isNaN(cert.notBefore) || Number.isNaN(cert.notAfter))
    throw refuse('ERR_SVID_MALFORMED', `${what} has an unreadable validity period`);
  if (now < cert.notBefore) {
    throw refuse(
      isLeaf ? 'ERR_SVID_NOT_YET_VALID' : 'ERR_SVID_CHAIN_NOT_YET_VALID',
      `${what} is not valid before ${new Date(cert.notBefore).toISOString()}`,
    );
  }
  if (now > cert.notAfter) {
    throw refuse(
      isLeaf ? 'ERR_SVID_EXPIRED' : 'ERR_SVID_CHAIN_EXPIRED',
      `${what} expired at ${new Date(cert.notAfter).toISOString()}`,
    );
  }
}

const issuedBy = (child: ParsedCertificate, issuer: X509Certificate): boolean => {
  try {
    return child.node.checkIssued(issuer) && child.node.verify(issuer.publicKey);
  } catch {
    return false;
  }
};

/** What the SPIFFE checks leave for RFC 5280 path validation. */
interface CheckedSvid {
  identity: SvidIdentity;
  bundle: TrustBundle;
  /** Leaf first, then the intermediates up to (not including) the anchor. */
  path: ParsedCertificate[];
  anchor: X509Authority;
}

const PATH_FAILURE_CODES: Record<PathFailureReason, ErrorCode> = {
  name_not_permitted: 'ERR_SVID_NAME_NOT_PERMITTED',
  name_excluded: 'ERR_SVID_NAME_EXCLUDED',
  nested_name_constraints: 'ERR_SVID_NAME_CONSTRAINTS_NESTED',
  rejected: 'ERR_SVID_PATH_REJECTED',
};

/**
 * Validates an X.509-SVID chain (leaf first, then intermediates in order) against
 * the bundle of the leaf's trust domain, at options.now. Resolves to the identity
 * or rejects with a CountersignError of kind 'unauthenticated' and a stable
 * ERR_SVID_* code. Always await it: the path validator is asynchronous.
 */
export async function verifySvid(
  chain: readonly Uint8Array[],
  bundles: BundleSource,
  options: VerifySvidOptions,
): Promise<SvidIdentity> {
  const maxChainLength = options.maxChainLength ?? DEFAULT_MAX_CHAIN_LENGTH;
  const role = options.role ?? 'client';
  const cacheKey = options.cache === undefined ? undefined : SvidCache.key(chain, role, maxChainLength);
  if (cacheKey !== undefined) {
    const cached = options.cache?.get(cacheKey, bundles, options.now);
    if (cached !== undefined) return cached;
  }
  const checked = checkSpiffeRules(chain, bundles, options.now, role, maxChainLength);
  const anchor = { der: checked.anchor.der, node: checked.anchor.certificate };
  const failure = await validatePath([...checked.path, anchor], options.now);
  if (failure !== undefined)
    throw refuse(PATH_FAILURE_CODES[failure.reason], failure.message, { trustDomain: checked.identity.trustDomain });
  if (cacheKey !== undefined) {
    const periods = [
      ...checked.path,
      { notBefore: Date.parse(anchor.node.validFrom), notAfter: Date.parse(anchor.node.validTo) },
    ];
    options.cache?.set(cacheKey, {
      identity: checked.identity,
      bundle: checked.bundle,
      validFrom: Math.max(...periods.map((p) => p.notBefore)),
      validUntil: Math.min(...periods.map((p) => p.notAfter)),
    });
  }
  return checked.identity;
}

function checkSpiffeRules(
  chain: readonly Uint8Array[],
  bundles: BundleSource,
  now: number,
  role: SvidRole,
  maxChainLength: number,
): CheckedSvid {
  if (chain.length === 0) throw refuse('ERR_SVID_NO_CERTIFICATE', 'no certificate was presented');
  if (chain.length > maxChainLength) {
    throw refuse(
      'ERR_SVID_CHAIN_TOO_LONG',
      `chain has ${chain.length} certificates, at most ${maxChainLength} are accepted`,
    );
  }
  const parsed = chain.map((der, i) => parse(der, i === 0 ? 'leaf certificate' : `chain certificate #${i}`));
  const leaf = parsed[0] as ParsedCertificate;

  // The SPIFFE ID: exactly one URI SAN of any scheme, and it must be a SPIFFE ID with a path.
  const uris = leaf.fields.uris;
  if (uris.length === 0) throw refuse('ERR_SVID_NO_URI_SAN', 'certificate contains no URI SAN');
  if (uris.length > 1)
    throw refuse('ERR_SVID_MULTIPLE_URI_SANS', `certificate contains ${uris.length} URI SANs, exactly one is allowed`);
  const uri = uris[0] as string;
  if (!uri.startsWith('spiffe:'))
    throw refuse('ERR_SVID_NOT_SPIFFE', `URI SAN ${JSON.stringify(uri.slice(0, 80))} is not a SPIFFE ID`);
  let id;
  try {
    id = parseSpiffeId(uri);
  } catch (e) {
    const reason = e instanceof CountersignError ? e.message : String(e);
    throw refuse('ERR_SVID_INVALID_SPIFFE_ID', `URI SAN is not a valid SPIFFE ID: ${reason}`, {
      spiffeIdError: e instanceof CountersignError ? e.code : undefined,
    });
  }
  if (id.path === '')
    throw refuse('ERR_SVID_ROOT_ID', `leaf SPIFFE ID ${id.id} has no path; a workload ID must name a workload`);

  // Leaf constraints.
  if (leaf.fields.basicConstraints?.ca) throw refuse('ERR_SVID_LEAF_IS_CA', 'leaf certificate must not be a CA');
  const usage = leaf.fields.keyUsage;
  if (usage === null) throw refuse('ERR_SVID_NO_KEY_USAGE', 'leaf certificate has no key usage extension');
  if ((usage & KeyUsageFlags.digitalSignature) === 0) {
    throw refuse('ERR_SVID_NO_DIGITAL_SIGNATURE', 'leaf certificate key usage lacks digitalSignature');
  }
  if ((usage & KeyUsageFlags.keyCertSign) !== 0)
    throw refuse('ERR_SVID_LEAF_KEY_CERT_SIGN', 'leaf certificate key usage must not include keyCertSign');
  if ((usage & KeyUsageFlags.cRLSign) !== 0)
    throw refuse('ERR_SVID_LEAF_CRL_SIGN', 'leaf certificate key usage must not include cRLSign');
  const usages = leaf.fields.extKeyUsage;
  if (usages !== null) {
    if (!usages.includes(EKU_FOR_ROLE[role]) && !usages.includes(OID_ANY_EKU)) {
      throw refuse(
        'ERR_SVID_EKU',
        `leaf certificate extended key usage does not allow ${role === 'client' ? 'clientAuth' : 'serverAuth'}`,
      );
    }
  }
  checkValidity(leaf, now, 'leaf certificate', true);

  // Path validation against the leaf's own trust domain, and nothing else.
  const bundle = bundles.getBundle(id.trustDomain);
  if (bundle === undefined) {
    throw refuse('ERR_SVID_UNKNOWN_TRUST_DOMAIN', `no bundle for trust domain ${id.trustDomain}`, {
      trustDomain: id.trustDomain,
    });
  }
  if (bundle.x509Authorities.length === 0) {
    throw refuse('ERR_SVID_UNTRUSTED', `the bundle of trust domain ${id.trustDomain} holds no X.509 authorities`, {
      trustDomain: id.trustDomain,
    });
  }
  const isAuthority = (cert: ParsedCertificate): boolean => bundle.x509Authorities.some((a) => a.der.equals(cert.der));
  let anchoredBy: X509Authority | undefined;
  let pathEnd = 0;
  // A signing certificate's own constraints are judged before asking whether it
  // signed the one below, so a bad intermediate gets its precise code (OpenSSL's
  // issuer check alone would also fail on a missing keyCertSign).
  const checkIntermediate = (cert: ParsedCertificate, i: number): void => {
    const what = `chain certificate #${i}`;
    if (!cert.fields.basicConstraints?.ca) throw refuse('ERR_SVID_INTERMEDIATE_NOT_CA', `${what} is not a CA`);
    const intermediateUsage = cert.fields.keyUsage;
    if (intermediateUsage === null || (intermediateUsage & KeyUsageFlags.keyCertSign) === 0) {
      throw refuse('ERR_SVID_INTERMEDIATE_NO_KEY_CERT_SIGN', `${what} key usage lacks keyCertSign`);
    }
    const signingIds = cert.fields.uris;
    if (signingIds.some((u) => u !== trustDomainId(id.trustDomain))) {
      throw refuse(
        'ERR_SVID_INTERMEDIATE_TRUST_DOMAIN',
        `${what} names ${signingIds.join(', ')}, not trust domain ${id.trustDomain}`,
      );
    }
    // RFC 5280 4.2.1.9: at most pathLength intermediates may follow below this one.
    const pathLength = cert.fields.basicConstraints.pathLength;
    if (pathLength !== undefined && i - 1 > pathLength) {
      throw refuse(
        'ERR_SVID_PATH_LENGTH',
        `${what} allows ${pathLength} intermediate(s) below it, the chain has ${i - 1}`,
      );
    }
    checkValidity(cert, now, what, false);
  };
  for (let i = 0; i < parsed.length; i++) {
    const cert = parsed[i] as ParsedCertificate;
    const what = i === 0 ? 'leaf certificate' : `chain certificate #${i}`;
    anchoredBy = bundle.x509Authorities.find((a) => issuedBy(cert, a.certificate));
    if (anchoredBy !== undefined) {
      const anchorPathLength = anchoredBy.pathLength;
      if (anchorPathLength !== undefined && i > anchorPathLength) {
        throw refuse(
          'ERR_SVID_PATH_LENGTH',
          `trust bundle authority ${anchoredBy.certificate.subject} allows ${anchorPathLength} intermediate(s), the chain has ${i}`,
        );
      }
      pathEnd = i + 1;
      // The remaining certificates (if any) must be authorities of the bundle, sent redundantly.
      const rest = parsed.slice(i + 1);
      if (!rest.every(isAuthority))
        throw refuse('ERR_SVID_CHAIN_ORDER', `certificates after ${what} are not part of its path`);
      break;
    }
    const next = parsed[i + 1];
    if (next === undefined) {
      throw refuse('ERR_SVID_UNTRUSTED', `${what} does not chain to the bundle of trust domain ${id.trustDomain}`, {
        trustDomain: id.trustDomain,
      });
    }
    // A root is never an intermediate: a self-signed certificate that is not an
    // authority of this trust domain ends the path, untrusted. (The TLS layer
    // appends a root it knows, possibly another trust domain's, to the peer chain.)
    if (!isAuthority(next) && issuedBy(next, next.node)) {
      throw refuse(
        'ERR_SVID_UNTRUSTED',
        `${what} chains to ${next.node.subject.replace(/\n/g, ', ')}, which is not an authority of trust domain ${id.trustDomain}`,
        {
          trustDomain: id.trustDomain,
        },
      );
    }
    checkIntermediate(next, i + 1);
    if (!issuedBy(cert, next.node)) {
      throw refuse(
        'ERR_SVID_CHAIN_ORDER',
        `${what} is not signed by the next certificate in the chain (chain must be leaf first, each followed by its issuer)`,
      );
    }
  }
  if (anchoredBy === undefined) {
    throw refuse('ERR_SVID_UNTRUSTED', `chain does not end at an authority of trust domain ${id.trustDomain}`, {
      trustDomain: id.trustDomain,
    });
  }
  const anchorName = `trust bundle authority ${anchoredBy.certificate.subject.replace(/\n/g, ', ')}`;
  const anchorValidity = {
    notBefore: Date.parse(anchoredBy.certificate.validFrom),
    notAfter: Date.parse(anchoredBy.certificate.validTo),
  };
  checkValidity(anchorValidity, now, anchorName, false);
  // The anchor is judged like the rest of the path, as OpenSSL does.
  checkExtensions(readCertificateFields(anchoredBy.der), anchorName);

  return {
    identity: {
      spiffeId: id.id,
      trustDomain: id.trustDomain,
      path: id.path,
      thumbprint: certificateThumbprint(leaf.der),
      serial: leaf.node.serialNumber.toLowerCase(),
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
      issuedBy: certificateThumbprint((pathEnd > 1 ? (parsed[1] as ParsedCertificate) : anchoredBy).der),
    },
    bundle,
    path: parsed.slice(0, pathEnd),
    anchor: anchoredBy,
  };
}
