// A small X.509 CA for a dev trust domain and for tests: it mints a root,
// intermediates and X.509-SVIDs, with every field a test may want to get wrong.
// Certificates are assembled with @peculiar/asn1-x509 and signed by node:crypto.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  type KeyObject,
} from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  id_kp_clientAuth,
  id_kp_serverAuth,
} from '@peculiar/asn1-x509';
import { derToPem } from './bundle.js';
import { trustDomainId } from './spiffe-id.js';

export { KeyUsageFlags };

const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const SHA256_WITH_RSA = '1.2.840.113549.1.1.11';
const DER_NULL = new Uint8Array([0x05, 0x00]).buffer;
const OID_COMMON_NAME = '2.5.4.3';
const OID_ORGANIZATION = '2.5.4.10';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export interface CertificateOptions {
  /** URI SANs; default the SPIFFE ID given to issueSvid(). */
  uris?: string[];
  dns?: string[];
  /** IP address SANs, e.g. 127.0.0.1 and ::1 (what a client connecting by address checks). */
  ips?: string[];
  /** basicConstraints cA; null omits the extension. */
  ca?: boolean | null;
  /** KeyUsageFlags bits; null omits the extension. */
  keyUsage?: number | null;
  /** EKU OIDs; null omits the extension. */
  extKeyUsage?: string[] | null;
  /** Milliseconds since the epoch; default now - 1 min and now + 1 h. */
  notBefore?: number;
  notAfter?: number;
  /** Common name of the subject. */
  commonName?: string;
  /** Extra raw extensions (OID, critical, DER value), e.g. an unknown critical one. */
  extraExtensions?: { oid: string; critical: boolean; value: Uint8Array }[];
  /** Key of the new certificate: EC P-256 (default) or RSA 2048. */
  keyType?: 'ec' | 'rsa';
  /** basicConstraints pathLenConstraint, for a CA. */
  pathLength?: number;
}

export interface IssuedCertificate {
  readonly der: Buffer;
  readonly pem: string;
  readonly keyPem: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export interface IssuedSvid extends IssuedCertificate {
  readonly spiffeId: string;
  /** Leaf then intermediates, DER. */
  readonly chainDer: Buffer[];
  /** Leaf then intermediates, PEM: what a workload presents. */
  readonly chainPem: string;
}

interface Defaults {
  ca: boolean;
  keyUsage: number;
  eku: string[] | null;
}

const LEAF_DEFAULTS: Defaults = {
  ca: false,
  keyUsage: KeyUsageFlags.digitalSignature,
  eku: [id_kp_clientAuth, id_kp_serverAuth],
};
/** A leaf that may only be a TLS client (exchanged SVIDs: agents take any SVID of the trust domain as the broker). */
const CLIENT_LEAF_DEFAULTS: Defaults = { ...LEAF_DEFAULTS, eku: [id_kp_clientAuth] };
const CA_DEFAULTS: Defaults = { ca: true, keyUsage: KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, eku: null };

function name(commonName: string, organization: string): Name {
  const rdn = (type: string, value: string) =>
    new RelativeDistinguishedName([
      new AttributeTypeAndValue({ type, value: new AttributeValue({ utf8String: value }) }),
    ]);
  return new Name([rdn(OID_ORGANIZATION, organization), rdn(OID_COMMON_NAME, commonName)]);
}

function extension(oid: string, critical: boolean, value: unknown): Extension {
  return new Extension({ extnID: oid, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

const keyIdOf = (publicKey: KeyObject): Buffer =>
  createHash('sha1')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest();

function buildExtensions(
  options: CertificateOptions,
  defaults: Defaults,
  subjectKey: KeyObject,
  issuerKey: KeyObject,
): Extension[] {
  const out: Extension[] = [];
  const ca = options.ca === undefined ? defaults.ca : options.ca;
  if (ca !== null) {
    out.push(
      extension(
        id_ce_basicConstraints,
        true,
        new BasicConstraints(
          options.pathLength === undefined ? { cA: ca } : { cA: ca, pathLenConstraint: options.pathLength },
        ),
      ),
    );
  }
  const keyUsage = options.keyUsage === undefined ? defaults.keyUsage : options.keyUsage;
  if (keyUsage !== null) out.push(extension(id_ce_keyUsage, true, new KeyUsage(keyUsage)));
  const eku = options.extKeyUsage === undefined ? defaults.eku : options.extKeyUsage;
  if (eku !== null) out.push(extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage(eku)));
  const names = [
    ...(options.uris ?? []).map((uri) => new GeneralName({ uniformResourceIdentifier: uri })),
    ...(options.dns ?? []).map((dns) => new GeneralName({ dNSName: dns })),
    ...(options.ips ?? []).map((ip) => new GeneralName({ iPAddress: ip })),
  ];
  if (names.length > 0) out.push(extension(id_ce_subjectAltName, false, new SubjectAlternativeName(names)));
  out.push(extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(keyIdOf(subjectKey))));
  out.push(
    extension(
      id_ce_authorityKeyIdentifier,
      false,
      new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(keyIdOf(issuerKey)) }),
    ),
  );
  for (const extra of options.extraExtensions ?? []) {
    out.push(new Extension({ extnID: extra.oid, critical: extra.critical, extnValue: new OctetString(extra.value) }));
  }
  return out;
}

/** The signature algorithm an issuer's key signs with. */
const signatureAlgorithm = (issuerKey: KeyObject): AlgorithmIdentifier =>
  issuerKey.asymmetricKeyType === 'rsa'
    ? new AlgorithmIdentifier({ algorithm: SHA256_WITH_RSA, parameters: DER_NULL })
    : new AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 });

function signCertificate(tbs: TBSCertificate, issuerKey: KeyObject): Buffer {
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const signature = sign('sha256', tbsDer, { key: issuerKey, dsaEncoding: 'der' });
  const cert = new Certificate({
    tbsCertificate: tbs,
    signatureAlgorithm: signatureAlgorithm(issuerKey),
    signatureValue: new Uint8Array(signature).buffer,
  });
  return Buffer.from(AsnConvert.serialize(cert));
}

function serialNumber(): ArrayBuffer {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // positive INTEGER
  if (bytes[0] === 0) bytes[0] = 1;
  return new Uint8Array(bytes).buffer;
}

interface Subject {
  name: Name;
  keys: { privateKey: KeyObject; publicKey: KeyObject };
}

function mint(
  subject: Subject,
  issuer: Subject,
  options: CertificateOptions,
  defaults: Defaults,
  now: number,
): IssuedCertificate {
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: serialNumber(),
    signature: signatureAlgorithm(issuer.keys.privateKey),
    issuer: issuer.name,
    validity: new Validity({
      notBefore: new Date(options.notBefore ?? now - MINUTE),
      notAfter: new Date(options.notAfter ?? now + HOUR),
    }),
    subject: subject.name,
    subjectPublicKeyInfo: AsnConvert.parse(
      subject.keys.publicKey.export({ type: 'spki', format: 'der' }),
      SubjectPublicKeyInfo,
    ),
    extensions: new Extensions(buildExtensions(options, defaults, subject.keys.publicKey, issuer.keys.publicKey)),
  });
  const der = signCertificate(tbs, issuer.keys.privateKey);
  return {
    der,
    pem: derToPem(der),
    keyPem: subject.keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    privateKey: subject.keys.privateKey,
    publicKey: subject.keys.publicKey,
  };
}

const newKeys = (type: 'ec' | 'rsa' = 'ec') =>
  type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** A signing authority: the root of a trust domain, or an intermediate below it. */
export class CertificateAuthority {
  private constructor(
    readonly trustDomain: string,
    readonly certificate: IssuedCertificate,
    private readonly subjectName: Name,
    /** Certificates between this authority and the root, nearest first, root last (empty for a root). */
    readonly parents: IssuedCertificate[],
    private readonly now: () => number,
  ) {}

  /** A new self-signed root for a trust domain. */
  static createRoot(
    trustDomain: string,
    options: CertificateOptions & { now?: () => number } = {},
  ): CertificateAuthority {
    const now = options.now ?? Date.now;
    const subject = { name: name(options.commonName ?? 'Countersign CA', trustDomain), keys: newKeys(options.keyType) };
    const cert = mint(
      subject,
      subject,
      { uris: [trustDomainId(trustDomain)], notAfter: now() + 24 * 365 * HOUR, ...options },
      CA_DEFAULTS,
      now(),
    );
    return new CertificateAuthority(trustDomain, cert, subject.name, [], now);
  }

  /** A root loaded from PEM (dev mode keeps its CA across runs). */
  static load(
    trustDomain: string,
    certPem: string,
    keyPem: string,
    now: () => number = Date.now,
  ): CertificateAuthority {
    const der = Buffer.from(certPem.replace(/-----(BEGIN|END) CERTIFICATE-----|\s+/g, ''), 'base64');
    const parsed = AsnConvert.parse(der, Certificate);
    const privateKey = createPrivateKey(keyPem);
    const cert: IssuedCertificate = {
      der,
      pem: derToPem(der),
      keyPem,
      privateKey,
      publicKey: createPublicKey(privateKey),
    };
    return new CertificateAuthority(trustDomain, cert, parsed.tbsCertificate.subject, [], now);
  }

  get pem(): string {
    return this.certificate.pem;
  }

  private get asSubject(): Subject {
    return { name: this.subjectName, keys: this.certificate };
  }

  /** An intermediate CA below this one. */
  createIntermediate(options: CertificateOptions = {}): CertificateAuthority {
    const subject = {
      name: name(options.commonName ?? 'Countersign intermediate CA', this.trustDomain),
      keys: newKeys(options.keyType),
    };
    const cert = mint(
      subject,
      this.asSubject,
      { uris: [trustDomainId(this.trustDomain)], ...options },
      CA_DEFAULTS,
      this.now(),
    );
    return new CertificateAuthority(
      this.trustDomain,
      cert,
      subject.name,
      [this.certificate, ...this.parents],
      this.now,
    );
  }

  /**
   * An X.509-SVID for a key held elsewhere (the public key of a CSR): the leaf
   * certificate only, DER. The caller adds the chain. Its extended key usage is
   * clientAuth only: an exchanged SVID must never serve TLS, or its holder could
   * pose as the broker to agents that accept any SVID of the trust domain.
   */
  issueLeafForKey(
    spiffeId: string,
    publicKey: KeyObject,
    options: Pick<CertificateOptions, 'notBefore' | 'notAfter' | 'commonName'> = {},
  ): Buffer {
    const now = this.now();
    const tbs = new TBSCertificate({
      version: Version.v3,
      serialNumber: serialNumber(),
      signature: signatureAlgorithm(this.certificate.privateKey),
      issuer: this.subjectName,
      validity: new Validity({
        notBefore: new Date(options.notBefore ?? now - MINUTE),
        notAfter: new Date(options.notAfter ?? now + HOUR),
      }),
      subject: name(options.commonName ?? 'svid', this.trustDomain),
      subjectPublicKeyInfo: AsnConvert.parse(publicKey.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo),
      extensions: new Extensions(
        buildExtensions({ uris: [spiffeId] }, CLIENT_LEAF_DEFAULTS, publicKey, this.certificate.publicKey),
      ),
    });
    return signCertificate(tbs, this.certificate.privateKey);
  }

  /** An X.509-SVID for spiffeId, signed by this authority; options may break any rule on purpose. */
  issueSvid(spiffeId: string, options: CertificateOptions = {}): IssuedSvid {
    const commonName = options.commonName ?? (spiffeId.split('/').pop() || 'svid');
    const subject = { name: name(commonName, this.trustDomain), keys: newKeys(options.keyType) };
    const cert = mint(subject, this.asSubject, { uris: [spiffeId], ...options }, LEAF_DEFAULTS, this.now());
    // What a workload presents: its leaf, then every intermediate up to (not including) the root.
    const intermediates = this.parents.length === 0 ? [] : [this.certificate, ...this.parents.slice(0, -1)];
    const chain = [cert, ...intermediates];
    return { ...cert, spiffeId, chainDer: chain.map((c) => c.der), chainPem: chain.map((c) => c.pem).join('') };
  }
}
