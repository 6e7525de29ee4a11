// Loading an SVID and trust bundles from files (cert-manager's csi-driver-spiffe,
// a Secret, or the dev trust domain).
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CountersignError } from '../errors.js';
import { BundleSet, bundleFromPem, pemToDer, type TrustBundle } from './bundle.js';

export interface SvidFiles {
  certChainPem: string;
  keyPem: string;
  /** SPIFFE ID in the leaf's URI SAN. */
  spiffeId: string;
  notAfter: number;
}

async function read(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new CountersignError('invalid_argument', 'ERR_IDENTITY_FILE', `${what} ${file}: cannot read: ${(e as Error).message}`, { file });
  }
}

export async function loadSvidFiles(certFile: string, keyFile: string): Promise<SvidFiles> {
  const certChainPem = await read(certFile, 'SVID certificate');
  const keyPem = await read(keyFile, 'SVID key');
  const leafDer = pemToDer(certChainPem)[0];
  if (leafDer === undefined) throw new CountersignError('invalid_argument', 'ERR_IDENTITY_FILE', `SVID certificate ${certFile}: no CERTIFICATE block`, { file: certFile });
  const leaf = new X509Certificate(leafDer);
  const uri = /URI:([^,\s]+)/.exec(leaf.subjectAltName ?? '')?.[1];
  if (uri === undefined || !uri.startsWith('spiffe://')) {
    throw new CountersignError('invalid_argument', 'ERR_IDENTITY_FILE', `SVID certificate ${certFile}: no SPIFFE ID in its URI SAN`, { file: certFile });
  }
  return { certChainPem, keyPem, spiffeId: uri, notAfter: Date.parse(leaf.validTo) };
}

export async function loadBundleFiles(entries: { trustDomain: string; file: string }[]): Promise<BundleSet> {
  const bundles: TrustBundle[] = [];
  for (const entry of entries) {
    const text = await read(entry.file, `bundle for ${entry.trustDomain}`);
    bundles.push(bundleFromPem(entry.trustDomain, text, entry.file));
  }
  return new BundleSet(bundles);
}
