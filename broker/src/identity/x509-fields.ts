// Reads the X.509 extensions that SVID validation needs. Node's X509Certificate
// verifies signatures and dates but does not expose key usage bits or a
// structured SAN list, so those come from the DER via @peculiar/asn1-x509.
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  KeyUsage,
  SubjectAlternativeName,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
} from '@peculiar/asn1-x509';

export { KeyUsageFlags } from '@peculiar/asn1-x509';

export interface CertificateFields {
  /** basicConstraints, or null when absent. */
  basicConstraints: { ca: boolean; pathLength?: number } | null;
  /** KeyUsageFlags bits, or null when the extension is absent. */
  keyUsage: number | null;
  /** EKU OIDs, or null when the extension is absent. */
  extKeyUsage: string[] | null;
  uris: string[];
  criticalExtensions: string[];
  /** OIDs of extensions that appear more than once. */
  duplicateExtensions: string[];
}

/** Throws on malformed DER; callers turn that into their own coded error. */
export function readCertificateFields(der: Uint8Array): CertificateFields {
  const cert = AsnConvert.parse(der, Certificate);
  const extensions = cert.tbsCertificate.extensions ?? [];
  const seen = new Set<string>();
  const fields: CertificateFields = {
    basicConstraints: null,
    keyUsage: null,
    extKeyUsage: null,
    uris: [],
    criticalExtensions: [],
    duplicateExtensions: [],
  };
  for (const ext of extensions) {
    if (seen.has(ext.extnID)) fields.duplicateExtensions.push(ext.extnID);
    seen.add(ext.extnID);
    if (ext.critical) fields.criticalExtensions.push(ext.extnID);
    const value = ext.extnValue.buffer;
    switch (ext.extnID) {
      case id_ce_basicConstraints: {
        const bc = AsnConvert.parse(value, BasicConstraints);
        fields.basicConstraints = bc.pathLenConstraint === undefined ? { ca: bc.cA } : { ca: bc.cA, pathLength: bc.pathLenConstraint };
        break;
      }
      case id_ce_keyUsage:
        fields.keyUsage = AsnConvert.parse(value, KeyUsage).toNumber();
        break;
      case id_ce_extKeyUsage:
        fields.extKeyUsage = [...AsnConvert.parse(value, ExtendedKeyUsage)];
        break;
      case id_ce_subjectAltName:
        for (const name of AsnConvert.parse(value, SubjectAlternativeName)) {
          if (name.uniformResourceIdentifier !== undefined) fields.uris.push(name.uniformResourceIdentifier);
        }
        break;
      default:
        break;
    }
  }
  return fields;
}
