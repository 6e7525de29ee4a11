// RFC 5280 section 6 path validation by a maintained implementation: PKI.js's
// CertificateChainValidationEngine (PeculiarVentures). x509-svid.ts decides which
// path a chain claims (leaf first, each certificate followed by its issuer, up to
// an authority of the leaf's own trust domain) and applies the SPIFFE rules; the
// engine then validates exactly that path at the injected time: signatures (found
// by issuerCertificate below, checked by OpenSSL through node:crypto), validity
// periods, CA flag and keyCertSign of every issuer, name constraints (URI, DNS,
// e-mail, IP address, directory name) and certificate policies.
//
// Where the engine falls short of RFC 5280 this module is stricter instead of
// trusting it; the differential test against `openssl verify`
// (test/e2e/identity-differential.test.ts) keeps both honest:
// - the engine ignores a trust anchor's own name constraints: they become the
//   initial permitted/excluded subtrees (RFC 5280 6.1.1 (b), (c)), which is what
//   OpenSSL does with them;
// - the engine unions the permitted subtrees of successive CAs where RFC 5280
//   6.1.4 (g) intersects them: a path in which two certificates permit different
//   subtrees of the same name form is refused (ERR_SVID_NAME_CONSTRAINTS_NESTED);
// - it enforces neither pathLenConstraint nor unknown critical extensions:
//   x509-svid.ts does both, for every certificate of the path and its anchor.
import { createHash, type X509Certificate } from 'node:crypto';
import {
  Certificate,
  CertificateChainValidationEngine,
  type FindIssuerCallback,
  type GeneralSubtree,
  type NameConstraints,
} from 'pkijs';

export interface PathCertificate {
  readonly der: Buffer;
  readonly node: X509Certificate;
}

export type PathFailureReason = 'name_not_permitted' | 'name_excluded' | 'nested_name_constraints' | 'rejected';

export interface PathFailure {
  reason: PathFailureReason;
  message: string;
}

const OID_NAME_CONSTRAINTS = '2.5.29.30';
// CertificateChainValidationEngine result codes for name constraints.
const ENGINE_NOT_PERMITTED = 41;
const ENGINE_EXCLUDED = 42;
const NAME_FORMS: Record<number, string> = { 1: 'e-mail', 2: 'DNS', 4: 'directory name', 6: 'URI', 7: 'IP address' };

// Parsing with PKI.js's schema costs about a millisecond per certificate, so the
// signing certificates (trust anchors and intermediates, shared by every SVID
// they issue) are parsed once; leaves are parsed each time (svid-cache.ts keeps
// whole results for chains seen before).
const MAX_PARSED_ISSUERS = 512;
const parsedIssuers = new Map<string, Certificate>();

function parse(der: Buffer, issuer: boolean): Certificate {
  if (!issuer) return Certificate.fromBER(der);
  const key = createHash('sha256').update(der).digest('hex');
  const known = parsedIssuers.get(key);
  if (known !== undefined) return known;
  const parsed = Certificate.fromBER(der);
  if (parsedIssuers.size >= MAX_PARSED_ISSUERS) parsedIssuers.delete(parsedIssuers.keys().next().value as string);
  parsedIssuers.set(key, parsed);
  return parsed;
}

function nameConstraintsOf(cert: Certificate): NameConstraints | undefined {
  const extension = cert.extensions?.find((e) => e.extnID === OID_NAME_CONSTRAINTS);
  return extension?.parsedValue as NameConstraints | undefined;
}

const subtreeKey = (subtree: GeneralSubtree): string => Buffer.from(subtree.toSchema().toBER()).toString('hex');

/** The first name form whose permitted subtrees differ between two certificates of the path, if any. */
function nestedPermittedForm(issuers: readonly Certificate[]): string | undefined {
  const seen = new Map<number, string>();
  for (const cert of issuers) {
    const permitted = nameConstraintsOf(cert)?.permittedSubtrees ?? [];
    const byForm = new Map<number, string[]>();
    for (const subtree of permitted)
      byForm.set(subtree.base.type, [...(byForm.get(subtree.base.type) ?? []), subtreeKey(subtree)]);
    for (const [form, keys] of byForm) {
      const set = keys.sort().join(',');
      const earlier = seen.get(form);
      if (earlier !== undefined && earlier !== set) return NAME_FORMS[form] ?? `GeneralName [${form}]`;
      seen.set(form, set);
    }
  }
  return undefined;
}

/**
 * Validates a path, leaf first and trust anchor last, at `now` (ms since the
 * epoch). Returns undefined when RFC 5280 accepts it, or why not.
 */
export async function validatePath(path: readonly PathCertificate[], now: number): Promise<PathFailure | undefined> {
  if (path.length < 2) return { reason: 'rejected', message: 'a path needs a certificate and a trust anchor' };
  const anchorIndex = path.length - 1;
  let certs: Certificate[];
  try {
    certs = path.map((c, i) => parse(c.der, i > 0));
  } catch {
    return { reason: 'rejected', message: 'a certificate of the path cannot be read by the path validator' };
  }
  const anchor = certs[anchorIndex] as Certificate;
  const nested = nestedPermittedForm(certs.slice(1));
  if (nested !== undefined) {
    return {
      reason: 'nested_name_constraints',
      message: `two certificates of the path permit different ${nested} subtrees; nested permitted name constraints of one form are not accepted`,
    };
  }

  // Each certificate's issuer is the next one of the path, and nothing else: the
  // path was chosen by the caller, and a search could loop on cross-signed CAs.
  const position = new Map(certs.map((c, i) => [c, i]));
  const issuerCertificate: FindIssuerCallback = async (certificate) => {
    const i = position.get(certificate);
    if (i === undefined || i >= anchorIndex) return [];
    const child = path[i] as PathCertificate;
    const issuer = path[i + 1] as PathCertificate;
    try {
      return child.node.checkIssued(issuer.node) && child.node.verify(issuer.node.publicKey)
        ? [certs[i + 1] as Certificate]
        : [];
    } catch {
      return [];
    }
  };
  const engine = new CertificateChainValidationEngine({
    trustedCerts: [anchor],
    // The engine takes the end-entity certificate last.
    certs: certs.slice(0, anchorIndex).reverse(),
    checkDate: new Date(now),
    findIssuer: issuerCertificate,
  });
  const anchorConstraints = nameConstraintsOf(anchor);
  let result;
  try {
    result = await engine.verify({
      initialPermittedSubtreesSet: anchorConstraints?.permittedSubtrees ?? [],
      initialExcludedSubtreesSet: anchorConstraints?.excludedSubtrees ?? [],
    });
  } catch (e) {
    return { reason: 'rejected', message: `path validation failed: ${(e as Error).message}` };
  }
  if (result.result) return undefined;
  if (result.resultCode === ENGINE_NOT_PERMITTED)
    return {
      reason: 'name_not_permitted',
      message: 'a name in the path is outside the permitted subtrees of a CA above it',
    };
  if (result.resultCode === ENGINE_EXCLUDED)
    return { reason: 'name_excluded', message: 'a name in the path is inside the excluded subtrees of a CA above it' };
  return { reason: 'rejected', message: `path validation refused the chain: ${result.resultMessage}` };
}
