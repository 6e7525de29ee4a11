// Reads the X.509 extensions that SVID validation needs. Node's X509Certificate
// verifies signatures and dates but does not expose key usage bits, path length
// or a structured SAN list, so those come from the DER. A small, strict reader
// walks straight to the extensions: parsing the whole certificate with a schema
// library cost about 3 ms per certificate, paid on every new connection.
// (test/x509-fields.test.ts checks it against @peculiar/asn1-x509.)

export { KeyUsageFlags } from '@peculiar/asn1-x509';

export interface CertificateFields {
  /** basicConstraints, or null when absent. */
  basicConstraints: { ca: boolean; pathLength?: number } | null;
  /** KeyUsageFlags bits (digitalSignature = 1, ... decipherOnly = 256), or null when the extension is absent. */
  keyUsage: number | null;
  /** EKU OIDs, or null when the extension is absent. */
  extKeyUsage: string[] | null;
  uris: string[];
  criticalExtensions: string[];
  /** OIDs of extensions that appear more than once. */
  duplicateExtensions: string[];
}

const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';

const SEQUENCE = 0x30;
const BOOLEAN = 0x01;
const INTEGER = 0x02;
const BIT_STRING = 0x03;
const OCTET_STRING = 0x04;
const OBJECT_IDENTIFIER = 0x06;
const EXPLICIT_3 = 0xa3;
const SAN_URI = 0x86; // [6] IMPLICIT IA5String

class DerError extends Error {}

interface Tlv {
  tag: number;
  /** Start and end of the contents. */
  start: number;
  end: number;
}

/** One TLV at `at`, inside [at, limit). DER: definite lengths only, minimal encoding not re-checked (OpenSSL parsed it first). */
function tlv(der: Uint8Array, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw new DerError('truncated');
  const tag = der[at] as number;
  const first = der[at + 1] as number;
  let length = first;
  let header = 2;
  if (first & 0x80) {
    const count = first & 0x7f;
    if (count === 0 || count > 4 || at + 2 + count > limit) throw new DerError('bad length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (der[at + 2 + i] as number);
    header = 2 + count;
  }
  const end = at + header + length;
  if (end > limit) throw new DerError('truncated');
  return { tag, start: at + header, end };
}

function expect(der: Uint8Array, at: number, limit: number, tag: number): Tlv {
  const t = tlv(der, at, limit);
  if (t.tag !== tag) throw new DerError(`expected tag ${tag}, got ${t.tag}`);
  return t;
}

/** The children of a constructed value. */
function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end;) {
    const child = tlv(der, at, parent.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

function oid(der: Uint8Array, t: Tlv): string {
  if (t.tag !== OBJECT_IDENTIFIER || t.end === t.start) throw new DerError('expected an OID');
  const parts: number[] = [];
  let value = 0;
  for (let i = t.start; i < t.end; i++) {
    const byte = der[i] as number;
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError('OID arc too large');
    if ((byte & 0x80) === 0) {
      if (parts.length === 0) parts.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      else parts.push(value);
      value = 0;
    }
  }
  if ((der[t.end - 1] as number) & 0x80) throw new DerError('OID ends mid-arc');
  return parts.join('.');
}

function boolean(der: Uint8Array, t: Tlv): boolean {
  if (t.tag !== BOOLEAN || t.end - t.start !== 1) throw new DerError('expected a BOOLEAN');
  return der[t.start] !== 0;
}

function readBasicConstraints(der: Uint8Array, value: Tlv): { ca: boolean; pathLength?: number } {
  const seq = expect(der, value.start, value.end, SEQUENCE);
  let ca = false;
  let pathLength: number | undefined;
  for (const item of children(der, seq)) {
    if (item.tag === BOOLEAN) ca = boolean(der, item);
    else if (item.tag === INTEGER) {
      if (item.end - item.start > 4 || ((der[item.start] as number) & 0x80) !== 0)
        throw new DerError('bad pathLenConstraint');
      pathLength = 0;
      for (let i = item.start; i < item.end; i++) pathLength = pathLength * 256 + (der[i] as number);
    } else throw new DerError('unexpected basicConstraints member');
  }
  return pathLength === undefined ? { ca } : { ca, pathLength };
}

function readKeyUsage(der: Uint8Array, value: Tlv): number {
  const bits = expect(der, value.start, value.end, BIT_STRING);
  if (bits.end - bits.start < 1 || (der[bits.start] as number) > 7) throw new DerError('bad key usage');
  let flags = 0;
  // Bit 0 (digitalSignature) is the most significant bit of the first content byte.
  for (let bit = 0; bit < 9; bit++) {
    const byte = der[bits.start + 1 + (bit >> 3)];
    if (byte !== undefined && bits.start + 1 + (bit >> 3) < bits.end && (byte & (0x80 >> (bit & 7))) !== 0)
      flags |= 1 << bit;
  }
  return flags;
}

/** Throws on malformed DER; callers turn that into their own coded error. */
export function readCertificateFields(der: Uint8Array): CertificateFields {
  const fields: CertificateFields = {
    basicConstraints: null,
    keyUsage: null,
    extKeyUsage: null,
    uris: [],
    criticalExtensions: [],
    duplicateExtensions: [],
  };
  const certificate = expect(der, 0, der.length, SEQUENCE);
  const tbs = expect(der, certificate.start, certificate.end, SEQUENCE);
  const wrapper = children(der, tbs).find((t) => t.tag === EXPLICIT_3);
  if (wrapper === undefined) return fields;
  const extensions = expect(der, wrapper.start, wrapper.end, SEQUENCE);
  const seen = new Set<string>();
  for (const extension of children(der, extensions)) {
    if (extension.tag !== SEQUENCE) throw new DerError('expected an Extension');
    const parts = children(der, extension);
    const id = oid(der, parts[0] ?? { tag: 0, start: 0, end: 0 });
    let critical = false;
    let value = parts[1];
    if (value?.tag === BOOLEAN) {
      critical = boolean(der, value);
      value = parts[2];
    }
    if (value === undefined || value.tag !== OCTET_STRING) throw new DerError('expected extnValue');
    if (seen.has(id)) fields.duplicateExtensions.push(id);
    seen.add(id);
    if (critical) fields.criticalExtensions.push(id);
    switch (id) {
      case OID_BASIC_CONSTRAINTS:
        fields.basicConstraints = readBasicConstraints(der, value);
        break;
      case OID_KEY_USAGE:
        fields.keyUsage = readKeyUsage(der, value);
        break;
      case OID_EXT_KEY_USAGE:
        fields.extKeyUsage = children(der, expect(der, value.start, value.end, SEQUENCE)).map((t) => oid(der, t));
        break;
      case OID_SUBJECT_ALT_NAME:
        for (const name of children(der, expect(der, value.start, value.end, SEQUENCE))) {
          if (name.tag === SAN_URI)
            fields.uris.push(
              Buffer.from(der.buffer, der.byteOffset + name.start, name.end - name.start).toString('latin1'),
            );
        }
        break;
      default:
        break;
    }
  }
  return fields;
}
