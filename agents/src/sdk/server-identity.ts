// Who the broker must be: the SPIFFE ID in its certificate, checked by grpc-js on
// every connection the client (client.ts) or the token exchange (oidc.ts) opens. A
// leaf, so that those two do not import each other for it.
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';

/** The URI SAN of a certificate, if it holds exactly one SPIFFE ID. */
export function spiffeIdOfCertificate(der: Buffer): string | undefined {
  const sans = new X509Certificate(der).subjectAltName ?? '';
  const uris = sans
    .split(/,\s*/)
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  return uris.length === 1 && uris[0]?.startsWith('spiffe://') ? uris[0] : undefined;
}

export function trustDomainOf(id: string): string {
  return id.slice('spiffe://'.length).split('/')[0] ?? '';
}

/** grpc-js server check: the broker's certificate must carry the expected SPIFFE ID. */
export function serverIdentityCheck(expected: string) {
  return (_host: string, cert: PeerCertificate): Error | undefined => {
    const id = cert.raw ? spiffeIdOfCertificate(cert.raw) : undefined;
    if (id === undefined) return new Error('broker certificate has no SPIFFE ID');
    const wantsTrustDomainOnly = trustDomainOf(expected) === expected.slice('spiffe://'.length);
    const ok = wantsTrustDomainOnly ? trustDomainOf(id) === trustDomainOf(expected) : id === expected;
    return ok ? undefined : new Error(`broker presented ${id}, expected ${expected}`);
  };
}
