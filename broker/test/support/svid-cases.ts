// The X.509-SVID validation table: one row per rule of the X.509-SVID and SPIFFE
// ID specs (and RFC 5280 path validation), each with the code it must produce.
// Certificates are minted per run, so they never expire. Used by the pure
// verifySvid test, over real mTLS gRPC by the end-to-end refusal test, and by the
// differential test that holds every row to `openssl verify`'s verdict unless the
// row says why the broker is stricter. Case ideas: shared/testdata/README.md.
import { randomBytes, X509Certificate } from 'node:crypto';
import {
  CertificatePolicies,
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  id_ce_certificatePolicies,
  id_ce_keyUsage,
  id_ce_nameConstraints,
  id_kp_clientAuth,
  id_kp_serverAuth,
  KeyUsage,
  NameConstraints,
  PolicyInformation,
} from '@peculiar/asn1-x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import { BundleSet, bundleFromPem, derToPem, type TrustBundle } from '../../src/identity/bundle.js';
import type { SvidRole } from '../../src/identity/x509-svid.js';
import { CertificateAuthority, KeyUsageFlags, type IssuedSvid } from '../../src/dev/ca.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export interface SvidCaseContext {
  /** Root of example.org, the broker's own trust domain. */
  ca: CertificateAuthority;
  /** Root of other.org, a federated trust domain. */
  other: CertificateAuthority;
  now: number;
}

export interface SvidCaseInput {
  /** Leaf first, as presented. */
  chain: Buffer[];
  /** The same as PEM, with its key, for presenting over TLS. */
  chainPem: string;
  keyPem: string;
  /** Bundles to validate against; default example.org + other.org. */
  bundles?: BundleSet;
  role?: SvidRole;
}

export interface SvidCase {
  name: string;
  /** The rule exercised. */
  rule: string;
  /** 'ok' or the ERR_SVID_* code verifySvid must throw. */
  expect: string;
  /**
   * Whether the case survives the trip through a TLS handshake unchanged and uses
   * the default bundles, so the broker must refuse it with the same code. (Node
   * re-links a peer's chain by issuer, dropping what does not link, and some
   * cases need bundles of their own.)
   */
  overTls: boolean;
  /**
   * Why the broker refuses what `openssl verify` (RFC 5280 path validation)
   * accepts: a SPIFFE rule, a resource limit, or where the broker is stricter than
   * its path validator can be trusted to be. Every other row must get OpenSSL's verdict.
   */
  stricterThanOpenssl?: string;
  build(ctx: SvidCaseContext): SvidCaseInput;
}

export const defaultBundles = (ctx: SvidCaseContext): BundleSet =>
  new BundleSet([bundleFromPem('example.org', ctx.ca.pem), bundleFromPem('other.org', ctx.other.pem)]);

const fromSvid = (svid: IssuedSvid, extra: Partial<SvidCaseInput> = {}): SvidCaseInput => ({
  chain: svid.chainDer,
  chainPem: svid.chainPem,
  keyPem: svid.keyPem,
  ...extra,
});

const withChain = (
  svid: IssuedSvid,
  chain: { der: Buffer; pem: string }[],
  extra: Partial<SvidCaseInput> = {},
): SvidCaseInput => ({
  chain: chain.map((c) => c.der),
  chainPem: chain.map((c) => c.pem).join(''),
  keyPem: svid.keyPem,
  ...extra,
});

const ID = 'spiffe://example.org/ci/deployer';

/** A name for a name constraint: a URI host (SPIFFE trust domain) or a DNS name. */
export type ConstrainedName = { uri: string } | { dns: string };

/** A nameConstraints extension (RFC 5280 4.2.1.10), critical as the RFC requires, for CertificateOptions.extraExtensions. */
export function nameConstraints(constraints: { permitted?: ConstrainedName[]; excluded?: ConstrainedName[] }): {
  oid: string;
  critical: boolean;
  value: Uint8Array;
} {
  const subtrees = (names: ConstrainedName[] | undefined) =>
    names === undefined || names.length === 0
      ? undefined
      : new GeneralSubtrees(
          names.map(
            (n) =>
              new GeneralSubtree({
                base: new GeneralName('uri' in n ? { uniformResourceIdentifier: n.uri } : { dNSName: n.dns }),
              }),
          ),
        );
  const permittedSubtrees = subtrees(constraints.permitted);
  const excludedSubtrees = subtrees(constraints.excluded);
  const value = new NameConstraints({
    ...(permittedSubtrees ? { permittedSubtrees } : {}),
    ...(excludedSubtrees ? { excludedSubtrees } : {}),
  });
  return { oid: id_ce_nameConstraints, critical: true, value: new Uint8Array(AsnConvert.serialize(value)) };
}

type Extension = { oid: string; critical: boolean; value: Uint8Array };

/** An extension no implementation knows (a private OID holding NULL). */
const privateExtension = (critical: boolean): Extension => ({
  oid: '1.3.6.1.4.1.99999.1',
  critical,
  value: new Uint8Array([0x05, 0x00]),
});

/** certificatePolicies naming one (private) policy. */
const certificatePolicies = (critical: boolean): Extension => ({
  oid: id_ce_certificatePolicies,
  critical,
  value: new Uint8Array(
    AsnConvert.serialize(new CertificatePolicies([new PolicyInformation({ policyIdentifier: '1.3.6.1.4.1.99999.2' })])),
  ),
});

/** A bundle set of example.org (this root instead of ctx.ca) and other.org. */
const bundlesWith = (ctx: SvidCaseContext, root: CertificateAuthority): BundleSet =>
  new BundleSet([bundleFromPem('example.org', root.pem), bundleFromPem('other.org', ctx.other.pem)]);

export const SPIFFE_ID_RULES = 'X.509-SVID and SPIFFE ID rules: OpenSSL does not read the SPIFFE ID at all';

export const svidCases: SvidCase[] = [
  // --- accepted ---
  {
    name: 'valid EC leaf',
    rule: 'X.509-SVID 4: a leaf signed by the trust domain root',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.issueSvid(ID)),
  },
  {
    name: 'valid RSA leaf',
    rule: 'X.509-SVID 3: any key type the TLS stack supports',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { keyType: 'rsa' })),
  },
  {
    name: 'valid leaf via an intermediate',
    rule: 'X.509-SVID 4.1: intermediates are signing certificates',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.createIntermediate().issueSvid(ID)),
  },
  {
    name: 'valid leaf via two intermediates',
    rule: 'RFC 5280 6.1: path of several signing certificates',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.createIntermediate().createIntermediate().issueSvid(ID)),
  },
  {
    name: 'valid leaf without extended key usage',
    rule: 'X.509-SVID 4.4: EKU is optional',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { extKeyUsage: null })),
  },
  {
    name: 'valid leaf of a federated trust domain',
    rule: "Trust Domain and Bundle 3: the bundle of the SVID's own trust domain",
    expect: 'ok',
    overTls: true,
    build: ({ other }) => fromSvid(other.issueSvid('spiffe://other.org/ci/deployer')),
  },
  {
    name: 'valid leaf followed by its root',
    rule: 'RFC 5246 7.4.2: the root may be sent and is ignored',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) => {
      const svid = ca.issueSvid(ID);
      return withChain(svid, [svid, ca.certificate]);
    },
  },
  // --- refused: the SPIFFE ID ---
  {
    name: 'no certificate',
    rule: 'X.509-SVID 3: an SVID must be presented',
    expect: 'ERR_SVID_NO_CERTIFICATE',
    overTls: false,
    build: () => ({ chain: [], chainPem: '', keyPem: '' }),
  },
  {
    name: 'no URI SAN',
    rule: 'X.509-SVID 2: the SPIFFE ID is a URI SAN',
    expect: 'ERR_SVID_NO_URI_SAN',
    overTls: true,
    stricterThanOpenssl: SPIFFE_ID_RULES + ': X.509-SVID 2, the SPIFFE ID is the one URI SAN',
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { uris: [], dns: ['deployer.example.org'] })),
  },
  {
    name: 'two SPIFFE URI SANs',
    rule: 'X.509-SVID 2: exactly one URI SAN',
    expect: 'ERR_SVID_MULTIPLE_URI_SANS',
    overTls: true,
    stricterThanOpenssl: SPIFFE_ID_RULES + ': X.509-SVID 2, exactly one URI SAN',
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { uris: [ID, 'spiffe://example.org/ci/other'] })),
  },
  {
    name: 'a SPIFFE and an https URI SAN',
    rule: 'X.509-SVID 2: no URI SAN of any other scheme either',
    expect: 'ERR_SVID_MULTIPLE_URI_SANS',
    overTls: true,
    stricterThanOpenssl: SPIFFE_ID_RULES + ': X.509-SVID 2, exactly one URI SAN of any scheme',
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { uris: [ID, 'https://example.org/deployer'] })),
  },
  {
    name: 'https URI SAN only',
    rule: 'SPIFFE ID 2: scheme spiffe',
    expect: 'ERR_SVID_NOT_SPIFFE',
    overTls: true,
    stricterThanOpenssl: SPIFFE_ID_RULES + ': SPIFFE ID 2, the scheme is spiffe',
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { uris: ['https://example.org/ci/deployer'] })),
  },
  {
    name: 'root-path ID',
    rule: 'X.509-SVID 2: a leaf ID has a non-root path',
    expect: 'ERR_SVID_ROOT_ID',
    overTls: true,
    stricterThanOpenssl: SPIFFE_ID_RULES + ": X.509-SVID 2, a workload's ID has a path",
    build: ({ ca }) => fromSvid(ca.issueSvid('spiffe://example.org')),
  },
  {
    name: 'uppercase trust domain',
    rule: 'SPIFFE ID 2.1: trust domain is lowercase',
    expect: 'ERR_SVID_INVALID_SPIFFE_ID',
    overTls: true,
    stricterThanOpenssl: SPIFFE_ID_RULES + ': SPIFFE ID 2.1, the trust domain is lowercase',
    build: ({ ca }) => fromSvid(ca.issueSvid('spiffe://Example.org/ci/deployer')),
  },
  {
    name: 'dot segment in the path',
    rule: 'SPIFFE ID 2.2: no . or .. segments',
    expect: 'ERR_SVID_INVALID_SPIFFE_ID',
    overTls: true,
    stricterThanOpenssl: SPIFFE_ID_RULES + ': SPIFFE ID 2.2, no . or .. segments',
    build: ({ ca }) => fromSvid(ca.issueSvid('spiffe://example.org/ci/../admin')),
  },
  {
    name: 'percent-encoded path',
    rule: 'SPIFFE ID 2.2: no percent-encoding',
    expect: 'ERR_SVID_INVALID_SPIFFE_ID',
    overTls: true,
    stricterThanOpenssl: SPIFFE_ID_RULES + ': SPIFFE ID 2.2, no percent-encoding',
    build: ({ ca }) => fromSvid(ca.issueSvid('spiffe://example.org/ci/%64eployer')),
  },
  {
    name: 'port in the trust domain',
    rule: 'SPIFFE ID 2.1: no port',
    expect: 'ERR_SVID_INVALID_SPIFFE_ID',
    overTls: true,
    stricterThanOpenssl: SPIFFE_ID_RULES + ': SPIFFE ID 2.1, no port',
    build: ({ ca }) => fromSvid(ca.issueSvid('spiffe://example.org:443/ci/deployer')),
  },
  {
    name: 'trailing slash',
    rule: 'SPIFFE ID 2.2: no trailing /',
    expect: 'ERR_SVID_INVALID_SPIFFE_ID',
    overTls: true,
    stricterThanOpenssl: SPIFFE_ID_RULES + ': SPIFFE ID 2.2, no trailing slash',
    build: ({ ca }) => fromSvid(ca.issueSvid('spiffe://example.org/ci/deployer/')),
  },
  // --- refused: leaf constraints ---
  {
    name: 'CA flag on the leaf',
    rule: 'X.509-SVID 4.1: leaf cA is false',
    expect: 'ERR_SVID_LEAF_IS_CA',
    overTls: true,
    stricterThanOpenssl:
      'X.509-SVID 4.1: a leaf SVID has cA false; RFC 5280 and OpenSSL accept a CA certificate as an end entity',
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { ca: true })),
  },
  {
    name: 'keyCertSign on the leaf',
    rule: 'X.509-SVID 4.3: leaf must not sign certificates',
    expect: 'ERR_SVID_LEAF_KEY_CERT_SIGN',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(ca.issueSvid(ID, { keyUsage: KeyUsageFlags.digitalSignature | KeyUsageFlags.keyCertSign })),
  },
  {
    name: 'cRLSign on the leaf',
    rule: 'X.509-SVID 4.3: leaf must not sign CRLs',
    expect: 'ERR_SVID_LEAF_CRL_SIGN',
    overTls: true,
    stricterThanOpenssl: 'X.509-SVID 4.3: a leaf must not sign CRLs; RFC 5280 does not forbid the bit',
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { keyUsage: KeyUsageFlags.digitalSignature | KeyUsageFlags.cRLSign })),
  },
  {
    name: 'no digitalSignature',
    rule: 'X.509-SVID 4.3: leaf key usage has digitalSignature',
    expect: 'ERR_SVID_NO_DIGITAL_SIGNATURE',
    overTls: true,
    stricterThanOpenssl:
      "X.509-SVID 4.3: a leaf has digitalSignature; OpenSSL's sslclient purpose also takes keyAgreement alone",
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { keyUsage: KeyUsageFlags.keyAgreement })),
  },
  {
    name: 'no key usage extension',
    rule: 'X.509-SVID 4.3: key usage must be set',
    expect: 'ERR_SVID_NO_KEY_USAGE',
    overTls: true,
    stricterThanOpenssl:
      'X.509-SVID 4.3: the key usage extension is required; RFC 5280 reads its absence as no restriction',
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { keyUsage: null })),
  },
  {
    name: 'EKU without clientAuth',
    rule: 'X.509-SVID 4.4: EKU, when present, allows the role',
    expect: 'ERR_SVID_EKU',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { extKeyUsage: [id_kp_serverAuth] })),
  },
  {
    name: 'EKU without serverAuth, checked as a server',
    rule: 'X.509-SVID 4.4: a server SVID allows serverAuth',
    expect: 'ERR_SVID_EKU',
    overTls: false,
    build: ({ ca }) => fromSvid(ca.issueSvid(ID, { extKeyUsage: [id_kp_clientAuth] }), { role: 'server' }),
  },
  {
    name: 'unknown critical extension',
    rule: 'RFC 5280 4.2: an unrecognised critical extension rejects the certificate',
    expect: 'ERR_SVID_UNKNOWN_CRITICAL_EXTENSION',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca.issueSvid(ID, {
          extraExtensions: [{ oid: '1.3.6.1.4.1.99999.1', critical: true, value: new Uint8Array([0x05, 0x00]) }],
        }),
      ),
  },
  {
    name: 'key usage extension twice',
    rule: 'RFC 5280 4.2: an extension appears at most once',
    expect: 'ERR_SVID_DUPLICATE_EXTENSION',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca.issueSvid(ID, {
          extraExtensions: [
            {
              oid: id_ce_keyUsage,
              critical: false,
              value: new Uint8Array(AsnConvert.serialize(new KeyUsage(KeyUsageFlags.digitalSignature))),
            },
          ],
        }),
      ),
  },
  // --- refused: validity ---
  {
    name: 'expired',
    rule: 'RFC 5280 4.1.2.5: validity period',
    expect: 'ERR_SVID_EXPIRED',
    overTls: true,
    build: ({ ca, now }) => fromSvid(ca.issueSvid(ID, { notBefore: now - 2 * HOUR, notAfter: now - HOUR })),
  },
  {
    name: 'not yet valid',
    rule: 'RFC 5280 4.1.2.5: validity period',
    expect: 'ERR_SVID_NOT_YET_VALID',
    overTls: true,
    build: ({ ca, now }) => fromSvid(ca.issueSvid(ID, { notBefore: now + HOUR, notAfter: now + 2 * HOUR })),
  },
  {
    name: 'expired intermediate',
    rule: 'RFC 5280 6.1.3: every certificate of the path is valid now',
    expect: 'ERR_SVID_CHAIN_EXPIRED',
    overTls: true,
    build: ({ ca, now }) =>
      fromSvid(ca.createIntermediate({ notBefore: now - 3 * HOUR, notAfter: now - HOUR }).issueSvid(ID)),
  },
  {
    name: 'expired trust bundle authority',
    rule: 'RFC 5280 6.1: the trust anchor is valid now',
    expect: 'ERR_SVID_CHAIN_EXPIRED',
    overTls: false,
    build: ({ now }) => {
      const old = CertificateAuthority.createRoot('example.org', { notBefore: now - 3 * HOUR, notAfter: now - HOUR });
      return fromSvid(old.issueSvid(ID), { bundles: new BundleSet([bundleFromPem('example.org', old.pem)]) });
    },
  },
  // --- refused: path validation ---
  {
    // The attack of issue 14: an intermediate allowed to issue only for other.org
    // signs an example.org SVID; openssl verify says "permitted subtree violation".
    name: 'intermediate whose URI name constraints permit only another trust domain',
    rule: 'RFC 5280 4.2.1.10: a name outside every permitted subtree is refused',
    expect: 'ERR_SVID_NAME_NOT_PERMITTED',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [nameConstraints({ permitted: [{ uri: 'other.org' }] })] })
          .issueSvid(ID),
      ),
  },
  {
    name: 'signed by an unknown CA',
    rule: 'X.509-SVID 5: chains to the trust domain bundle',
    expect: 'ERR_SVID_UNTRUSTED',
    overTls: true,
    build: () => fromSvid(CertificateAuthority.createRoot('example.org').issueSvid(ID)),
  },
  {
    name: "trust domain that differs from the signing CA's",
    rule: "X.509-SVID 5.2: validated against the bundle of the ID's own trust domain",
    expect: 'ERR_SVID_UNTRUSTED',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.issueSvid('spiffe://other.org/ci/deployer')),
  },
  {
    name: "chain ending at another trust domain's root",
    rule: 'X.509-SVID 5.2: a root of another trust domain is no authority here',
    expect: 'ERR_SVID_UNTRUSTED',
    overTls: true,
    build: ({ ca }) => {
      const svid = ca.issueSvid('spiffe://other.org/ci/deployer');
      return withChain(svid, [svid, ca.certificate]);
    },
  },
  {
    name: 'trust domain without a bundle',
    rule: 'X.509-SVID 5.2: no bundle, no trust',
    expect: 'ERR_SVID_UNKNOWN_TRUST_DOMAIN',
    overTls: true,
    build: () =>
      fromSvid(CertificateAuthority.createRoot('stranger.org').issueSvid('spiffe://stranger.org/ci/deployer')),
  },
  {
    name: 'trust domain whose bundle is empty',
    rule: 'Trust Domain and Bundle 4.1.3: keys: [] trusts nothing',
    expect: 'ERR_SVID_UNTRUSTED',
    overTls: false,
    build: ({ ca }) =>
      fromSvid(ca.issueSvid(ID), {
        bundles: new BundleSet([{ trustDomain: 'example.org', x509Authorities: [] } satisfies TrustBundle]),
      }),
  },
  {
    name: 'intermediate without the CA flag',
    rule: 'X.509-SVID 4.1: signing certificates have cA true',
    expect: 'ERR_SVID_INTERMEDIATE_NOT_CA',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.createIntermediate({ ca: false }).issueSvid(ID)),
  },
  {
    name: 'intermediate without keyCertSign',
    rule: 'X.509-SVID 4.3: signing certificates have keyCertSign',
    expect: 'ERR_SVID_INTERMEDIATE_NO_KEY_CERT_SIGN',
    // Node links a peer's chain with OpenSSL's issuer check, which drops such an
    // intermediate: over TLS this arrives as a lone leaf (ERR_SVID_UNTRUSTED).
    overTls: false,
    build: ({ ca }) => fromSvid(ca.createIntermediate({ keyUsage: KeyUsageFlags.cRLSign }).issueSvid(ID)),
  },
  {
    name: 'intermediate naming another trust domain',
    rule: "X.509-SVID 4.1: a signing certificate's SPIFFE ID is its trust domain's",
    expect: 'ERR_SVID_INTERMEDIATE_TRUST_DOMAIN',
    overTls: true,
    stricterThanOpenssl:
      "X.509-SVID 4.1: a signing certificate's SPIFFE ID is its own trust domain's; RFC 5280 gives a CA's URI SAN no meaning",
    build: ({ ca }) => fromSvid(ca.createIntermediate({ uris: ['spiffe://other.org'] }).issueSvid(ID)),
  },
  {
    name: 'intermediate missing from the chain',
    rule: 'RFC 5280 6.1: the path must reach the bundle',
    expect: 'ERR_SVID_UNTRUSTED',
    overTls: true,
    build: ({ ca }) => {
      const svid = ca.createIntermediate().issueSvid(ID);
      return withChain(svid, [svid]);
    },
  },
  {
    name: 'chain sent in the wrong order',
    rule: 'RFC 5246 7.4.2: each certificate certifies the one before it',
    expect: 'ERR_SVID_CHAIN_ORDER',
    overTls: false,
    stricterThanOpenssl:
      'the chain is sent leaf first, each certificate followed by its issuer (RFC 5246 7.4.2), and a forwarded one (XFCC) is judged as sent; openssl verify searches its untrusted pool in any order (over a direct TLS connection Node re-links the chain, so the broker sees it in order there)',
    build: ({ ca }) => {
      const upper = ca.createIntermediate();
      const lower = upper.createIntermediate();
      const svid = lower.issueSvid(ID);
      return withChain(svid, [svid, upper.certificate, lower.certificate]);
    },
  },
  {
    name: 'unrelated certificate after the anchor',
    rule: 'RFC 5246 7.4.2: nothing but the path is sent',
    expect: 'ERR_SVID_CHAIN_ORDER',
    overTls: false,
    stricterThanOpenssl:
      'nothing but the path is sent (RFC 5246 7.4.2); openssl verify ignores untrusted certificates it does not use',
    build: ({ ca, other }) => {
      const svid = ca.issueSvid(ID);
      return withChain(svid, [svid, other.certificate]);
    },
  },
  {
    name: 'path longer than a pathLenConstraint allows',
    rule: 'RFC 5280 4.2.1.9: pathLenConstraint',
    expect: 'ERR_SVID_PATH_LENGTH',
    overTls: true,
    stricterThanOpenssl:
      'the two intermediates share a subject, so the lower one is self-issued, and RFC 5280 6.1.4 (l) (OpenSSL) does not count self-issued certificates against pathLenConstraint; the broker counts every intermediate, so a CA limited to pathLenConstraint 0 cannot add a sub-CA by giving it its own name',
    build: ({ ca }) => fromSvid(ca.createIntermediate({ pathLength: 0 }).createIntermediate().issueSvid(ID)),
  },
  {
    name: 'intermediate below a root that allows none',
    rule: "RFC 5280 4.2.1.9: the trust anchor's pathLenConstraint",
    expect: 'ERR_SVID_PATH_LENGTH',
    overTls: false,
    build: ({ now }) => {
      const strict = CertificateAuthority.createRoot('example.org', {
        pathLength: 0,
        notBefore: now - HOUR,
        notAfter: now + HOUR,
      });
      return fromSvid(strict.createIntermediate().issueSvid(ID), {
        bundles: new BundleSet([bundleFromPem('example.org', strict.pem)]),
      });
    },
  },
  {
    name: 'chain longer than the limit',
    rule: 'resource limit: at most 8 certificates',
    expect: 'ERR_SVID_CHAIN_TOO_LONG',
    overTls: true,
    stricterThanOpenssl: 'resource limit: at most 8 certificates (OpenSSL allows a depth of 100)',
    build: ({ ca }) => {
      let issuer = ca;
      for (let i = 0; i < 8; i++) issuer = issuer.createIntermediate();
      return fromSvid(issuer.issueSvid(ID));
    },
  },
  {
    name: 'certificate larger than 16 KiB',
    rule: 'resource limit: certificate size',
    expect: 'ERR_SVID_CERTIFICATE_TOO_LARGE',
    overTls: true,
    stricterThanOpenssl: 'resource limit: 16 KiB per certificate',
    build: ({ ca }) =>
      fromSvid(
        ca.issueSvid(ID, { dns: Array.from({ length: 400 }, (_, i) => `host-${i}-${'x'.repeat(30)}.example.org`) }),
      ),
  },
  {
    name: 'not a certificate',
    rule: 'RFC 5280 4.1: DER-encoded certificate',
    expect: 'ERR_SVID_MALFORMED',
    overTls: false,
    build: () => ({
      chain: [Buffer.concat([Buffer.from([0x30, 0x82, 0x01, 0x00]), randomBytes(256)])],
      chainPem: '',
      keyPem: '',
    }),
  },
  // --- RFC 5280 path validation beyond the SPIFFE rules (issue 14): name
  // constraints, path length, validity, key usage and critical extensions at
  // every level, judged by the path validator and compared with OpenSSL ---
  {
    name: 'intermediate whose URI name constraints permit its own trust domain',
    rule: 'RFC 5280 4.2.1.10: a name inside a permitted subtree is accepted',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [nameConstraints({ permitted: [{ uri: 'example.org' }] })] })
          .issueSvid(ID),
      ),
  },
  {
    name: 'URI name constraints permitting only subdomains (.example.org)',
    rule: 'RFC 5280 4.2.1.10: a URI constraint with a leading period does not match the host itself',
    expect: 'ERR_SVID_NAME_NOT_PERMITTED',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [nameConstraints({ permitted: [{ uri: '.example.org' }] })] })
          .issueSvid(ID),
      ),
  },
  {
    name: "URI name constraints excluding the leaf's trust domain",
    rule: 'RFC 5280 4.2.1.10: a name inside an excluded subtree is refused',
    expect: 'ERR_SVID_NAME_EXCLUDED',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ uris: [], extraExtensions: [nameConstraints({ excluded: [{ uri: 'example.org' }] })] })
          .issueSvid(ID),
      ),
  },
  {
    name: 'URI name constraints excluding another trust domain',
    rule: 'RFC 5280 4.2.1.10: names outside the excluded subtrees pass',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [nameConstraints({ excluded: [{ uri: 'other.org' }] })] })
          .issueSvid(ID),
      ),
  },
  {
    name: 'URI name constraints two levels up, permitting only another trust domain',
    rule: "RFC 5280 6.1.3 (b): a CA's constraints bind every certificate below it, not only its own children",
    expect: 'ERR_SVID_NAME_NOT_PERMITTED',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ uris: [], extraExtensions: [nameConstraints({ permitted: [{ uri: 'other.org' }] })] })
          .createIntermediate({ uris: [], commonName: 'Issuing CA' })
          .issueSvid(ID),
      ),
  },
  {
    name: 'trust anchor whose URI name constraints permit only another trust domain',
    rule: "RFC 5280 6.1.1 (b): the anchor's constraints are the initial permitted subtrees (OpenSSL applies them)",
    expect: 'ERR_SVID_NAME_NOT_PERMITTED',
    overTls: false,
    build: (ctx) => {
      const root = CertificateAuthority.createRoot('example.org', {
        extraExtensions: [nameConstraints({ permitted: [{ uri: 'other.org' }] })],
      });
      return fromSvid(root.issueSvid(ID), { bundles: bundlesWith(ctx, root) });
    },
  },
  {
    name: 'trust anchor whose URI name constraints permit its own trust domain',
    rule: "RFC 5280 6.1.1 (b): a name inside the anchor's permitted subtrees is accepted",
    expect: 'ok',
    overTls: false,
    build: (ctx) => {
      const root = CertificateAuthority.createRoot('example.org', {
        extraExtensions: [nameConstraints({ permitted: [{ uri: 'example.org' }] })],
      });
      return fromSvid(root.createIntermediate().issueSvid(ID), { bundles: bundlesWith(ctx, root) });
    },
  },
  {
    name: 'nested URI name constraints, the lower one outside the upper one',
    rule: 'RFC 5280 6.1.4 (g): permitted subtrees intersect down the path; a lower CA cannot widen them',
    expect: 'ERR_SVID_NAME_CONSTRAINTS_NESTED',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ uris: [], extraExtensions: [nameConstraints({ permitted: [{ uri: 'other.org' }] })] })
          .createIntermediate({
            uris: [],
            commonName: 'Issuing CA',
            extraExtensions: [nameConstraints({ permitted: [{ uri: 'example.org' }] })],
          })
          .issueSvid(ID),
      ),
  },
  {
    name: 'nested URI name constraints that permit the same trust domain',
    rule: 'RFC 5280 6.1.4 (g): repeating a constraint below is allowed',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [nameConstraints({ permitted: [{ uri: 'example.org' }] })] })
          .createIntermediate({
            commonName: 'Issuing CA',
            extraExtensions: [nameConstraints({ permitted: [{ uri: 'example.org' }] })],
          })
          .issueSvid(ID),
      ),
  },
  {
    name: 'nested URI name constraints, the lower one narrower',
    rule: 'RFC 5280 6.1.4 (g): the intersection (example.org) holds the leaf',
    expect: 'ERR_SVID_NAME_CONSTRAINTS_NESTED',
    overTls: true,
    stricterThanOpenssl:
      'PKI.js unions the permitted subtrees of successive CAs instead of intersecting them, so the broker refuses a path whose CAs permit different subtrees of one name form rather than trust the union; OpenSSL intersects them and accepts',
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({
            extraExtensions: [nameConstraints({ permitted: [{ uri: 'example.org' }, { uri: 'other.org' }] })],
          })
          .createIntermediate({
            commonName: 'Issuing CA',
            extraExtensions: [nameConstraints({ permitted: [{ uri: 'example.org' }] })],
          })
          .issueSvid(ID),
      ),
  },
  {
    name: "DNS name constraints permitting the leaf's DNS SAN",
    rule: 'RFC 5280 4.2.1.10: dNSName subtrees match the name and its subdomains',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [nameConstraints({ permitted: [{ dns: 'example.org' }] })] })
          .issueSvid(ID, { dns: ['deployer.example.org'] }),
      ),
  },
  {
    name: 'DNS name constraints permitting another domain, the leaf has a DNS SAN',
    rule: 'RFC 5280 4.2.1.10: every name of a constrained form must be permitted',
    expect: 'ERR_SVID_NAME_NOT_PERMITTED',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [nameConstraints({ permitted: [{ dns: 'other.org' }] })] })
          .issueSvid(ID, { dns: ['deployer.example.org'] }),
      ),
  },
  {
    name: "DNS name constraints excluding the leaf's DNS SAN",
    rule: 'RFC 5280 4.2.1.10: excluded dNSName subtrees',
    expect: 'ERR_SVID_NAME_EXCLUDED',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [nameConstraints({ excluded: [{ dns: 'example.org' }] })] })
          .issueSvid(ID, { dns: ['deployer.example.org'] }),
      ),
  },
  {
    name: 'DNS name constraints, the leaf has no DNS SAN',
    rule: 'RFC 5280 4.2.1.10: restrictions apply only when the name form is present',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [nameConstraints({ permitted: [{ dns: 'other.org' }] })] })
          .issueSvid(ID),
      ),
  },
  {
    name: 'DNS and URI name constraints, both satisfied',
    rule: 'RFC 5280 4.2.1.10: each name form is checked against its own subtrees',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({
            extraExtensions: [nameConstraints({ permitted: [{ uri: 'example.org' }, { dns: 'example.org' }] })],
          })
          .issueSvid(ID, { dns: ['deployer.example.org'] }),
      ),
  },
  {
    name: "trust anchor whose DNS name constraints exclude the leaf's DNS SAN",
    rule: "RFC 5280 6.1.1 (c): the anchor's excluded subtrees are the initial excluded subtrees",
    expect: 'ERR_SVID_NAME_EXCLUDED',
    overTls: false,
    build: (ctx) => {
      const root = CertificateAuthority.createRoot('example.org', {
        extraExtensions: [nameConstraints({ excluded: [{ dns: 'example.org' }] })],
      });
      return fromSvid(root.issueSvid(ID, { dns: ['deployer.example.org'] }), { bundles: bundlesWith(ctx, root) });
    },
  },
  {
    name: 'pathLenConstraint 0 with a differently named intermediate below',
    rule: 'RFC 5280 4.2.1.9: no intermediate may follow a CA with pathLenConstraint 0',
    expect: 'ERR_SVID_PATH_LENGTH',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ pathLength: 0, commonName: 'Policy CA' })
          .createIntermediate({ commonName: 'Issuing CA' })
          .issueSvid(ID),
      ),
  },
  {
    name: 'pathLenConstraint 1 with one intermediate below',
    rule: 'RFC 5280 4.2.1.9: pathLenConstraint counts the intermediates below',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ pathLength: 1, commonName: 'Policy CA' })
          .createIntermediate({ commonName: 'Issuing CA' })
          .issueSvid(ID),
      ),
  },
  {
    name: 'pathLenConstraint 0 on the intermediate that signs the leaf',
    rule: 'RFC 5280 4.2.1.9: the leaf does not count',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.createIntermediate({ pathLength: 0 }).issueSvid(ID)),
  },
  {
    name: 'intermediate not yet valid',
    rule: 'RFC 5280 6.1.3 (a)(2): every certificate of the path is valid now',
    expect: 'ERR_SVID_CHAIN_NOT_YET_VALID',
    overTls: true,
    build: ({ ca, now }) =>
      fromSvid(ca.createIntermediate({ notBefore: now + HOUR, notAfter: now + 3 * HOUR }).issueSvid(ID)),
  },
  {
    name: 'trust bundle authority not yet valid',
    rule: 'RFC 5280 6.1: the trust anchor is valid now (as OpenSSL checks it)',
    expect: 'ERR_SVID_CHAIN_NOT_YET_VALID',
    overTls: false,
    build: (ctx) => {
      const early = CertificateAuthority.createRoot('example.org', {
        notBefore: ctx.now + HOUR,
        notAfter: ctx.now + 3 * HOUR,
      });
      return fromSvid(early.issueSvid(ID), { bundles: bundlesWith(ctx, early) });
    },
  },
  {
    name: 'intermediate without a key usage extension',
    rule: 'X.509-SVID 4.3: signing certificates MUST set keyCertSign',
    expect: 'ERR_SVID_INTERMEDIATE_NO_KEY_CERT_SIGN',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.createIntermediate({ keyUsage: null }).issueSvid(ID)),
  },
  {
    name: 'trust bundle authority without keyCertSign',
    rule: "RFC 5280 4.2.1.3: a key that signs certificates has keyCertSign, the anchor's included (bundle files with one are refused when loaded; this bundle is built directly, and OpenSSL's issuer check, which the broker uses, passes over such a key)",
    expect: 'ERR_SVID_UNTRUSTED',
    overTls: false,
    build: (ctx) => {
      const root = CertificateAuthority.createRoot('example.org', { keyUsage: KeyUsageFlags.cRLSign });
      const bundle: TrustBundle = {
        trustDomain: 'example.org',
        x509Authorities: [{ der: root.certificate.der, certificate: new X509Certificate(root.certificate.der) }],
      };
      return fromSvid(root.issueSvid(ID), {
        bundles: new BundleSet([bundle, bundleFromPem('other.org', ctx.other.pem)]),
      });
    },
  },
  {
    name: 'leaf signed by an intermediate of another trust domain',
    rule: "X.509-SVID 5.2: the path ends at an anchor of the leaf's own trust domain",
    expect: 'ERR_SVID_UNTRUSTED',
    overTls: true,
    build: ({ other }) => fromSvid(other.createIntermediate({ uris: [] }).issueSvid(ID)),
  },
  {
    name: "intermediate of another trust domain, followed by that trust domain's root",
    rule: "X.509-SVID 5.2: another trust domain's anchor is no anchor here",
    expect: 'ERR_SVID_UNTRUSTED',
    overTls: true,
    build: ({ other }) => {
      const intermediate = other.createIntermediate({ uris: [] });
      const svid = intermediate.issueSvid(ID);
      return withChain(svid, [svid, intermediate.certificate, other.certificate]);
    },
  },
  {
    name: 'unknown critical extension on an intermediate',
    rule: 'RFC 5280 4.2: an unrecognised critical extension rejects the certificate, at any level',
    expect: 'ERR_SVID_UNKNOWN_CRITICAL_EXTENSION',
    overTls: true,
    build: ({ ca }) => fromSvid(ca.createIntermediate({ extraExtensions: [privateExtension(true)] }).issueSvid(ID)),
  },
  {
    name: 'unknown critical extension on the trust bundle authority',
    rule: 'RFC 5280 4.2: the anchor is refused like any certificate of the path (as OpenSSL does)',
    expect: 'ERR_SVID_UNKNOWN_CRITICAL_EXTENSION',
    overTls: false,
    build: (ctx) => {
      const root = CertificateAuthority.createRoot('example.org', { extraExtensions: [privateExtension(true)] });
      return fromSvid(root.issueSvid(ID), { bundles: bundlesWith(ctx, root) });
    },
  },
  {
    name: 'unknown non-critical extensions on the leaf and the intermediate',
    rule: 'RFC 5280 4.2: an unrecognised non-critical extension is ignored',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [privateExtension(false)] })
          .issueSvid(ID, { extraExtensions: [privateExtension(false)] }),
      ),
  },
  {
    name: 'critical certificatePolicies on an intermediate',
    rule: 'RFC 5280 4.2: a critical extension the validator does not process rejects the certificate',
    expect: 'ERR_SVID_UNKNOWN_CRITICAL_EXTENSION',
    overTls: true,
    stricterThanOpenssl:
      "SPIFFE defines no certificate policies and the broker does no policy processing it could rely on (PKI.js's is partial), so a critical policy extension is one it does not recognise (RFC 5280 4.2); OpenSSL knows the extension and, without -policy_check, accepts",
    build: ({ ca }) => fromSvid(ca.createIntermediate({ extraExtensions: [certificatePolicies(true)] }).issueSvid(ID)),
  },
  {
    name: 'non-critical certificatePolicies on the intermediate and the leaf',
    rule: 'RFC 5280 4.2.1.4: policies do not restrict a path unless a policy is required',
    expect: 'ok',
    overTls: true,
    build: ({ ca }) =>
      fromSvid(
        ca
          .createIntermediate({ extraExtensions: [certificatePolicies(false)] })
          .issueSvid(ID, { extraExtensions: [certificatePolicies(false)] }),
      ),
  },
  {
    name: 'leaf whose signature does not verify',
    rule: 'RFC 5280 6.1.3 (a)(1): every signature of the path verifies',
    expect: 'ERR_SVID_UNTRUSTED',
    // Over TLS, Node appends the root it finds by name, and the broker then
    // refuses the pair as out of order (ERR_SVID_CHAIN_ORDER).
    overTls: false,
    build: ({ ca }) => {
      const svid = ca.issueSvid(ID);
      const der = Buffer.from(svid.der);
      der[der.length - 1] = (der[der.length - 1] as number) ^ 0x01; // the last byte of the signature's s
      return { chain: [der], chainPem: derToPem(der), keyPem: svid.keyPem };
    },
  },
];
