// Who is on the other end of each mTLS connection. The TLS layer only proves
// possession of the key; the chain is validated here, once per connection,
// against the bundle of the trust domain the leaf claims, and re-validated when
// the bundles change or the SVID's validity ends.
//
// Behind a TLS-terminating proxy (off unless configured), a call arriving on a
// connection whose own SVID is a configured proxy ID is attributed to the
// certificate in its x-forwarded-client-cert header, validated the same way.
import { createHash } from 'node:crypto';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { Clock } from '../clock.js';
import { CountersignError } from '../errors.js';
import type { BundleStore } from './bundle-store.js';
import { parseXfcc, XFCC_HEADER } from './xfcc.js';
import { verifySvid, type SvidIdentity } from './x509-svid.js';

interface ConnectionEntry {
  chain: Buffer[];
  generation: number;
  result: SvidIdentity | CountersignError;
}

/** Where a refused identity came from: the connection itself, or a proxy's forwarded header. */
export interface RefusalContext {
  /** The proxy's SPIFFE ID when the refused certificate was forwarded in XFCC. */
  proxy?: string;
}

export type RefusalListener = (error: CountersignError, peer: string, context: RefusalContext) => void;

/** What a call carries besides its peer address: grpc-js Metadata fits. */
export interface CallHeaders {
  get(key: string): (string | Buffer)[];
}

export interface XfccSettings {
  /** SPIFFE IDs of the proxies whose forwarded certificates are believed. */
  proxyIds: readonly string[];
}

const MAX_CACHED_FORWARDED = 1024;

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
  private readonly proxyIds: ReadonlySet<string>;
  /** Forwarded chains already accepted, by header hash, with the bundle generation they were judged under. */
  private readonly forwarded = new Map<string, { generation: number; result: SvidIdentity | CountersignError }>();

  constructor(
    private readonly bundles: BundleStore,
    private readonly clock: Clock,
    private readonly onRefused: RefusalListener = () => {},
    xfcc?: XfccSettings,
  ) {
    this.proxyIds = new Set(xfcc?.proxyIds ?? []);
  }

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
    if (result instanceof CountersignError) this.onRefused(result, peer, {});
  }

  /**
   * The identity behind a gRPC call: its connection's SVID, or, on a configured
   * proxy's connection, the certificate the proxy forwarded. Throws a coded
   * UNAUTHENTICATED error otherwise.
   */
  authenticate(peer: string, headers?: CallHeaders): SvidIdentity {
    const connection = this.connectionIdentity(peer);
    if (this.proxyIds.size === 0 || !this.proxyIds.has(connection.spiffeId)) return connection;
    try {
      return this.forwardedIdentity(headers);
    } catch (e) {
      const error = e instanceof CountersignError ? e : new CountersignError('unauthenticated', 'ERR_XFCC_MALFORMED', 'xfcc: the forwarded certificate could not be read');
      this.onRefused(error, peer, { proxy: connection.spiffeId });
      throw error;
    }
  }

  private forwardedIdentity(headers: CallHeaders | undefined): SvidIdentity {
    const values = headers?.get(XFCC_HEADER) ?? [];
    if (values.length === 0) {
      throw new CountersignError('unauthenticated', 'ERR_XFCC_MISSING', `xfcc: the call came through a proxy without a ${XFCC_HEADER} header; a proxy does not call as itself`);
    }
    if (values.length > 1) throw new CountersignError('unauthenticated', 'ERR_XFCC_MULTIPLE', `xfcc: ${values.length} ${XFCC_HEADER} headers; exactly one is accepted`);
    const header = values[0]?.toString() ?? '';
    const key = createHash('sha256').update(header).digest('hex');
    let cached = this.forwarded.get(key);
    if (cached === undefined || cached.generation !== this.bundles.generation) {
      let result: SvidIdentity | CountersignError;
      try {
        const forwarded = parseXfcc(header);
        result = this.verify(forwarded.chain);
        if (!(result instanceof CountersignError) && forwarded.uri !== undefined && forwarded.uri !== result.spiffeId) {
          result = new CountersignError('unauthenticated', 'ERR_XFCC_INCONSISTENT', `xfcc: URI ${forwarded.uri.slice(0, 200)} is not the forwarded certificate's SPIFFE ID ${result.spiffeId}`);
        }
      } catch (e) {
        if (!(e instanceof CountersignError)) throw e;
        result = e;
      }
      cached = { generation: this.bundles.generation, result };
      // Only successes are remembered: a refusal may be about time (not yet valid) and is cheap to redo.
      if (!(result instanceof CountersignError)) {
        if (this.forwarded.size >= MAX_CACHED_FORWARDED) this.forwarded.clear();
        this.forwarded.set(key, cached);
      }
    }
    const result = cached.result;
    if (result instanceof CountersignError) throw result;
    if (this.clock.now() > result.notAfter) {
      throw new CountersignError('unauthenticated', 'ERR_SVID_EXPIRED', `x509svid: forwarded leaf certificate expired at ${new Date(result.notAfter).toISOString()}`);
    }
    return result;
  }

  private connectionIdentity(peer: string): SvidIdentity {
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
