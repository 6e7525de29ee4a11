// Who is on the other end of each mTLS connection. The TLS layer only proves
// possession of the key; the chain is validated here, once per connection,
// against the bundle of the trust domain the leaf claims, and re-validated when
// the bundles change or the SVID's validity ends.
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { Clock } from '../clock.js';
import { CountersignError } from '../errors.js';
import type { BundleStore } from './bundle-store.js';
import { verifySvid, type SvidIdentity } from './x509-svid.js';

interface ConnectionEntry {
  chain: Buffer[];
  generation: number;
  result: SvidIdentity | CountersignError;
}

export type RefusalListener = (error: CountersignError, peer: string) => void;

/** The peer's chain as the TLS layer saw it: leaf first, each followed by its issuer. */
export function peerChain(socket: TLSSocket): Buffer[] {
  const chain: Buffer[] = [];
  let cert: PeerCertificate | undefined = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(cert.raw);
    const next: PeerCertificate | undefined = (cert as PeerCertificate & { issuerCertificate?: PeerCertificate }).issuerCertificate;
    cert = next && next !== cert ? next : undefined;
  }
  return chain;
}

export const peerAddress = (socket: TLSSocket): string => `${socket.remoteAddress}:${socket.remotePort}`;

export class PeerAuthenticator {
  private readonly byPeer = new Map<string, ConnectionEntry>();

  constructor(
    private readonly bundles: BundleStore,
    private readonly clock: Clock,
    private readonly onRefused: RefusalListener = () => {},
  ) {}

  private verify(chain: Buffer[]): SvidIdentity | CountersignError {
    try {
      return verifySvid(chain, this.bundles.current, { now: this.clock.now(), role: 'client' });
    } catch (e) {
      if (e instanceof CountersignError) return e;
      return new CountersignError('unauthenticated', 'ERR_SVID_MALFORMED', 'x509svid: certificate could not be validated');
    }
  }

  /** Validates a new connection's client chain and remembers the outcome until it closes. */
  attach(socket: TLSSocket): void {
    const peer = peerAddress(socket);
    const chain = peerChain(socket);
    const result = this.verify(chain);
    const entry: ConnectionEntry = { chain, generation: this.bundles.generation, result };
    this.byPeer.set(peer, entry);
    socket.once('close', () => {
      if (this.byPeer.get(peer) === entry) this.byPeer.delete(peer);
    });
    if (result instanceof CountersignError) this.onRefused(result, peer);
  }

  /** The identity behind a gRPC call's peer address, or a coded UNAUTHENTICATED error. */
  authenticate(peer: string): SvidIdentity {
    const entry = this.byPeer.get(peer);
    if (entry === undefined) {
      throw new CountersignError('unauthenticated', 'ERR_IDENTITY_UNKNOWN_CONNECTION', 'no authenticated mTLS connection for this call');
    }
    if (entry.generation !== this.bundles.generation) {
      entry.result = this.verify(entry.chain);
      entry.generation = this.bundles.generation;
    }
    const result = entry.result;
    if (result instanceof CountersignError) throw result;
    if (this.clock.now() > result.notAfter) {
      entry.result = new CountersignError('unauthenticated', 'ERR_SVID_EXPIRED', `x509svid: leaf certificate expired at ${new Date(result.notAfter).toISOString()}; reconnect with a fresh SVID`);
      throw entry.result;
    }
    return result;
  }

  get connections(): number {
    return this.byPeer.size;
  }
}
