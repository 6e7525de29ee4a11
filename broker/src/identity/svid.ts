// The broker's own X.509-SVID: the certificate chain and key it serves TLS with,
// from files or from the Workload API. Checked before it is put in service, so a
// half-written file or a wrong key never replaces a working SVID.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { CountersignError } from '../errors.js';
import { pemToDer } from './bundle.js';
import { parseSpiffeId } from './spiffe-id.js';
import { readCertificateFields } from './x509-fields.js';

export interface BrokerSvid {
  spiffeId: string;
  trustDomain: string;
  /** Leaf first (PEM), what TLS presents. */
  certChainPem: string;
  keyPem: string;
  chainDer: Buffer[];
  /** Milliseconds since the epoch. */
  notBefore: number;
  notAfter: number;
  /** Hex serial of the leaf, lowercase. */
  serial: string;
}

export const MAX_SVID_FILE_BYTES = 256 * 1024;

function svidError(where: string, message: string): CountersignError {
  return new CountersignError('invalid_argument', 'ERR_IDENTITY_SVID', `${where}: ${message}`, { where });
}

/** Builds and checks an SVID from PEM text: one SPIFFE ID, a parsable chain, a key that belongs to the leaf. */
export function svidFromPem(certChainPem: string, keyPem: string, where: string): BrokerSvid {
  if (certChainPem.length > MAX_SVID_FILE_BYTES || keyPem.length > MAX_SVID_FILE_BYTES) {
    throw svidError(where, `larger than ${MAX_SVID_FILE_BYTES} bytes`);
  }
  const chainDer = pemToDer(certChainPem);
  if (chainDer.length === 0) throw svidError(where, 'no CERTIFICATE block in the certificate file');
  let leaf: X509Certificate;
  let uris: string[];
  try {
    leaf = new X509Certificate(chainDer[0] as Buffer);
    uris = readCertificateFields(chainDer[0] as Buffer).uris;
    for (const der of chainDer.slice(1)) new X509Certificate(der);
  } catch {
    throw svidError(where, 'the certificate chain cannot be parsed');
  }
  if (uris.length !== 1)
    throw svidError(where, `the leaf certificate must carry exactly one URI SAN (a SPIFFE ID), it has ${uris.length}`);
  let trustDomain: string;
  try {
    trustDomain = parseSpiffeId(uris[0] as string).trustDomain;
  } catch (e) {
    throw svidError(where, `the leaf's URI SAN is not a SPIFFE ID: ${(e as Error).message}`);
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    throw svidError(where, 'the private key cannot be read (expected an unencrypted PEM key)');
  }
  if (!matches) throw svidError(where, 'the private key does not belong to the leaf certificate');
  return {
    spiffeId: uris[0] as string,
    trustDomain,
    certChainPem,
    keyPem,
    chainDer,
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
    serial: leaf.serialNumber.toLowerCase(),
  };
}
