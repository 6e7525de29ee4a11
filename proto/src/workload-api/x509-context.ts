// Turns a FetchX509SVID response into what a TLS stack consumes: each SVID's
// chain and key as PEM, and every trust domain's bundle. The Workload API sends
// certificates as concatenated DER, so they are split here.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { X509SVIDResponse } from '../gen/spiffe/workload/workload.js';
import { WorkloadApiError } from './errors.js';

export interface WorkloadX509Svid {
  spiffeId: string;
  trustDomain: string;
  /** Leaf first, then intermediates (DER). */
  chainDer: Buffer[];
  /** The same chain as PEM: what a TLS stack presents. */
  certChainPem: string;
  /** PKCS#8 private key, PEM. */
  keyPem: string;
  /** Operator hint (e.g. "internal"), "" when none. */
  hint: string;
  /** Milliseconds since the epoch. */
  notBefore: number;
  notAfter: number;
  /** Hex serial of the leaf, lowercase. */
  serial: string;
}

export interface X509Context {
  /** In the order the Workload API sent them; the first is the default SVID. */
  svids: WorkloadX509Svid[];
  /** Trust domain name -> its X.509 authorities (DER): the SVIDs' own and the federated ones. */
  bundles: Map<string, Buffer[]>;
}

export const MAX_CERTIFICATES_PER_BLOB = 128;
const MAX_SVIDS = 64;

function bad(message: string): WorkloadApiError {
  return new WorkloadApiError('ERR_WORKLOAD_API_RESPONSE', `workload api: ${message}`);
}

/** Splits concatenated DER certificates (ASN.1 SEQUENCEs) without interpreting them. */
export function splitDerCertificates(blob: Uint8Array, what: string): Buffer[] {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    if (out.length >= MAX_CERTIFICATES_PER_BLOB)
      throw bad(`${what} holds more than ${MAX_CERTIFICATES_PER_BLOB} certificates`);
    if (buf[at] !== 0x30 || at + 2 > buf.length)
      throw bad(`${what} is not a sequence of DER certificates (byte ${at})`);
    const first = buf[at + 1] as number;
    let length: number;
    let header: number;
    if (first < 0x80) {
      length = first;
      header = 2;
    } else {
      const count = first & 0x7f;
      if (count === 0 || count > 4 || at + 2 + count > buf.length)
        throw bad(`${what} has a malformed DER length (byte ${at})`);
      length = 0;
      for (let i = 0; i < count; i++) length = length * 256 + (buf[at + 2 + i] as number);
      header = 2 + count;
    }
    const end = at + header + length;
    if (end > buf.length)
      throw bad(`${what} is truncated (certificate at byte ${at} needs ${end - buf.length} more bytes)`);
    out.push(Buffer.from(buf.subarray(at, end)));
    at = end;
  }
  return out;
}

export function derCertificateToPem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
}

/** "spiffe://td" or "td" (both appear as federated bundle keys in the wild) -> "td". */
export function trustDomainOfKey(key: string): string | undefined {
  const m = /^(?:spiffe:\/\/)?([a-z0-9._-]{1,255})\/?$/.exec(key);
  return m?.[1];
}

const trustDomainOfId = (id: string): string | undefined => /^spiffe:\/\/([a-z0-9._-]{1,255})(?:\/|$)/.exec(id)?.[1];

function toSvid(raw: X509SVIDResponse['svids'][number], index: number): WorkloadX509Svid {
  const what = `svid #${index + 1} (${JSON.stringify(raw.spiffeId.slice(0, 200))})`;
  const trustDomain = trustDomainOfId(raw.spiffeId);
  if (trustDomain === undefined) throw bad(`${what} does not carry a SPIFFE ID`);
  const chainDer = splitDerCertificates(raw.x509Svid, `${what} certificate chain`);
  if (chainDer.length === 0) throw bad(`${what} has no certificate`);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chainDer[0] as Buffer);
  } catch {
    throw bad(`${what} leaf certificate cannot be parsed`);
  }
  let keyPem: string;
  try {
    const key = createPrivateKey({ key: Buffer.from(raw.x509SvidKey), format: 'der', type: 'pkcs8' });
    if (!leaf.checkPrivateKey(key)) throw bad(`${what} private key does not belong to its certificate`);
    keyPem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
  } catch (e) {
    if (e instanceof WorkloadApiError) throw e;
    throw bad(`${what} private key is not an unencrypted PKCS#8 key`);
  }
  return {
    spiffeId: raw.spiffeId,
    trustDomain,
    chainDer,
    certChainPem: chainDer.map(derCertificateToPem).join(''),
    keyPem,
    hint: raw.hint,
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
    serial: leaf.serialNumber.toLowerCase(),
  };
}

/** Validates and converts one FetchX509SVID response. */
export function toX509Context(response: X509SVIDResponse): X509Context {
  if (response.svids.length === 0) throw bad('response holds no SVID');
  if (response.svids.length > MAX_SVIDS)
    throw bad(`response holds ${response.svids.length} SVIDs, at most ${MAX_SVIDS} are accepted`);
  const svids = response.svids.map(toSvid);
  const bundles = new Map<string, Buffer[]>();
  response.svids.forEach((raw, i) => {
    const td = (svids[i] as WorkloadX509Svid).trustDomain;
    const authorities = splitDerCertificates(raw.bundle, `bundle of ${td}`);
    if (authorities.length === 0) throw bad(`svid #${i + 1} comes with an empty bundle for ${td}`);
    if (!bundles.has(td)) bundles.set(td, authorities);
  });
  for (const [key, blob] of Object.entries(response.federatedBundles)) {
    const td = trustDomainOfKey(key);
    if (td === undefined) throw bad(`federated bundle key ${JSON.stringify(key.slice(0, 200))} is not a trust domain`);
    if (bundles.has(td)) continue; // a federated copy never replaces a trust domain's own bundle
    bundles.set(td, splitDerCertificates(blob, `federated bundle of ${td}`));
  }
  return { svids, bundles };
}
