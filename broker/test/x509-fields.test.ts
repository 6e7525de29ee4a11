// The fast DER reader in x509-fields.ts against @peculiar/asn1-x509, a full
// ASN.1 schema parser, over every certificate of the validation table and more.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  KeyUsage,
  KeyUsageFlags,
  SubjectAlternativeName,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
} from '@peculiar/asn1-x509';
import { CertificateAuthority } from '../src/dev/ca.js';
import { readCertificateFields, type CertificateFields } from '../src/identity/x509-fields.js';
import { svidCases, type SvidCaseContext } from './support/svid-cases.js';

/** The same fields, the slow and thorough way. */
function reference(der: Uint8Array): CertificateFields {
  const cert = AsnConvert.parse(der, Certificate);
  const fields: CertificateFields = {
    basicConstraints: null,
    keyUsage: null,
    extKeyUsage: null,
    uris: [],
    criticalExtensions: [],
    duplicateExtensions: [],
  };
  const seen = new Set<string>();
  for (const ext of cert.tbsCertificate.extensions ?? []) {
    if (seen.has(ext.extnID)) fields.duplicateExtensions.push(ext.extnID);
    seen.add(ext.extnID);
    if (ext.critical) fields.criticalExtensions.push(ext.extnID);
    const value = ext.extnValue.buffer;
    if (ext.extnID === id_ce_basicConstraints) {
      const bc = AsnConvert.parse(value, BasicConstraints);
      fields.basicConstraints =
        bc.pathLenConstraint === undefined ? { ca: bc.cA } : { ca: bc.cA, pathLength: bc.pathLenConstraint };
    } else if (ext.extnID === id_ce_keyUsage) fields.keyUsage = AsnConvert.parse(value, KeyUsage).toNumber();
    else if (ext.extnID === id_ce_extKeyUsage) fields.extKeyUsage = [...AsnConvert.parse(value, ExtendedKeyUsage)];
    else if (ext.extnID === id_ce_subjectAltName) {
      for (const name of AsnConvert.parse(value, SubjectAlternativeName))
        if (name.uniformResourceIdentifier !== undefined) fields.uris.push(name.uniformResourceIdentifier);
    }
  }
  return fields;
}

describe('x509 fields reader', () => {
  const ctx: SvidCaseContext = {
    ca: CertificateAuthority.createRoot('example.org'),
    other: CertificateAuthority.createRoot('other.org'),
    now: Date.now(),
  };
  const certificates: [string, Buffer][] = [];
  for (const c of svidCases) {
    if (c.name === 'not a certificate') continue;
    c.build(ctx).chain.forEach((der, i) => certificates.push([`${c.name} #${i}`, der]));
  }
  for (const usage of [
    KeyUsageFlags.decipherOnly | KeyUsageFlags.digitalSignature,
    KeyUsageFlags.encipherOnly,
    0x1ff,
  ]) {
    certificates.push([`key usage ${usage}`, ctx.ca.issueSvid('spiffe://example.org/w', { keyUsage: usage }).der]);
  }
  certificates.push(['pathLength 300', ctx.ca.createIntermediate({ pathLength: 300 }).certificate.der]);
  certificates.push([
    'no extensions at all',
    ctx.ca.issueSvid('spiffe://example.org/w', { uris: [], ca: null, keyUsage: null, extKeyUsage: null }).der,
  ]);

  it(`reads what a full ASN.1 parser reads, for ${certificates.length} certificates`, () => {
    for (const [name, der] of certificates) assert.deepEqual(readCertificateFields(der), reference(der), name);
  });

  it('throws on truncated DER', () => {
    const der = ctx.ca.issueSvid('spiffe://example.org/w').der;
    for (const cut of [1, 10, der.length - 80, der.length - 1])
      assert.throws(() => readCertificateFields(der.subarray(0, cut)));
  });
});
