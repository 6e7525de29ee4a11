// Who is on the other end of each mTLS connection. The TLS handshake proves
// possession of the key and has OpenSSL validate the chain (RFC 5280, against
// every trust domain's authorities, at the wall clock); the chain is then
// validated here, once per connection, by verifySvid against the bundle of the
// trust domain the leaf claims, at the broker's clock, and re-validated when the
// bundles change or the SVID's validity ends. Both must accept.
//
// Behind a TLS-terminating proxy (off unless configured), a call arriving on a
// connection whose own SVID is a configured proxy ID is attributed to the
// certificate in its x-forwarded-client-cert header, validated the same way.
import { createHash } from 'node:crypto';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { Clock } from '../clock.js';
import { CountersignError } from '../errors.js';
import type { BundleStore } from './bundle-store.js';
import { SvidCache } from './svid-cache.js';
import { parseXfcc, XFCC_HEADER } from './xfcc.js';
import { verifySvid, type SvidIdentity } from './x509-svid.js';

type Verdict = SvidIdentity | CountersignError;

interface ConnectionEntry {
  chain: Buffer[];
  /** OpenSSL's refusal in the handshake, when it is one verifySvid does not judge again itself. */
  handshakeError: string | undefined;
  generation: number;
  result: Promise<Verdict>;
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
    const next: PeerCertificate | undefined = (cert as PeerCertificate & { issuerCertificate?: PeerCertificate })
      .issuerCertificate;
    cert = next && next !== cert ? next : undefined;
  }
  return chain;
}

export const peerAddress = (socket: TLSSocket): string => `${socket.remoteAddress}:${socket.remotePort}`;

// OpenSSL's handshake verdicts that verifySvid judges again, better: time (the
// broker's clock, not the wall clock, decides) and trust (verifySvid trusts only
// the leaf's own trust domain, in the bundles in force now, not those of the
// handshake). Any other refusal (name constraints, path length, purpose, a bad
// signature, a critical extension, a weak key...) stands for the connection's life.
const JUDGED_BY_VERIFY_SVID = new Set([
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
]);

/** The refusal of the peer's chain by OpenSSL in the TLS handshake that still counts, if any. */
export function handshakeRefusal(socket: Pick<TLSSocket, 'authorized' | 'authorizationError'>): string | undefined {
  if (socket.authorized) return undefined;
  // Node reports OpenSSL's X509_V_ERR_* as a string code (typed as an Error); UNSPECIFIED for the ones it has no name for.
  const code = String(socket.authorizationError ?? 'UNSPECIFIED');
  return JUDGED_BY_VERIFY_SVID.has(code) ? undefined : code;
}

export class PeerAuthenticator {
  private readonly byPeer = new Map<string, ConnectionEntry>();
  private readonly proxyIds: ReadonlySet<string>;
  /** Forwarded chains already accepted, by header hash, with the bundle generation they were judged under. */
  private readonly forwarded = new Map<string, { generation: number; result: Verdict }>();
  /** Chains accepted on any connection or header, so a new connection with a known SVID skips path validation. */
  private readonly accepted = new SvidCache();

  constructor(
    private readonly bundles: BundleStore,
    private readonly clock: Clock,
    private readonly onRefused: RefusalListener = () => {},
    xfcc?: XfccSettings,
  ) {
    this.proxyIds = new Set(xfcc?.proxyIds ?? []);
  }

  private async verify(chain: Buffer[], handshakeError?: string): Promise<Verdict> {
    let identity: SvidIdentity;
    try {
      identity = await verifySvid(chain, this.bundles.current, {
        now: this.clock.now(),
        role: 'client',
        cache: this.accepted,
      });
    } catch (e) {
      if (e instanceof CountersignError) return e;
      return new CountersignError(
        'unauthenticated',
        'ERR_SVID_MALFORMED',
        'x509svid: certificate could not be validated',
      );
    }
    if (handshakeError !== undefined) {
      return new CountersignError(
        'unauthenticated',
        'ERR_SVID_PATH_REJECTED',
        `x509svid: the TLS handshake's path validation (OpenSSL) refused the chain: ${handshakeError}`,
        {
          openssl: handshakeError,
        },
      );
    }
    return identity;
  }

  /**
   * Starts validating a new connection's client chain and remembers the outcome
   * until it closes. Resolves once it is judged (refusals are reported then), so
   * the caller can hold the connection back until its identity is known.
   */
  attach(socket: TLSSocket): Promise<void> {
    const peer = peerAddress(socket);
    const chain = peerChain(socket);
    const handshakeError = handshakeRefusal(socket);
    const entry: ConnectionEntry = {
      chain,
      handshakeError,
      generation: this.bundles.generation,
      result: this.verify(chain, handshakeError),
    };
    this.byPeer.set(peer, entry);
    socket.once('close', () => {
      if (this.byPeer.get(peer) === entry) this.byPeer.delete(peer);
    });
    return entry.result.then((result) => {
      // A connection without any certificate may be a workload about to exchange an OIDC token for its SVID
      // (Identity.ExchangeToken, the one call that needs none): it is refused, and reported, when it calls anything else.
      if (result instanceof CountersignError && chain.length > 0) this.onRefused(result, peer, {});
    });
  }

  /**
   * The identity behind a gRPC call: its connection's SVID, or, on a configured
   * proxy's connection, the certificate the proxy forwarded. Throws a coded
   * UNAUTHENTICATED error otherwise.
   */
  async authenticate(peer: string, headers?: CallHeaders): Promise<SvidIdentity> {
    let connection: SvidIdentity;
    try {
      connection = await this.connectionIdentity(peer);
    } catch (e) {
      if (e instanceof CountersignError && this.byPeer.get(peer)?.chain.length === 0) this.onRefused(e, peer, {});
      throw e;
    }
    if (this.proxyIds.size === 0 || !this.proxyIds.has(connection.spiffeId)) return connection;
    try {
      return await this.forwardedIdentity(headers);
    } catch (e) {
      const error =
        e instanceof CountersignError
          ? e
          : new CountersignError(
              'unauthenticated',
              'ERR_XFCC_MALFORMED',
              'xfcc: the forwarded certificate could not be read',
            );
      this.onRefused(error, peer, { proxy: connection.spiffeId });
      throw error;
    }
  }

  private async forwardedIdentity(headers: CallHeaders | undefined): Promise<SvidIdentity> {
    const values = headers?.get(XFCC_HEADER) ?? [];
    if (values.length === 0) {
      throw new CountersignError(
        'unauthenticated',
        'ERR_XFCC_MISSING',
        `xfcc: the call came through a proxy without a ${XFCC_HEADER} header; a proxy does not call as itself`,
      );
    }
    if (values.length > 1)
      throw new CountersignError(
        'unauthenticated',
        'ERR_XFCC_MULTIPLE',
        `xfcc: ${values.length} ${XFCC_HEADER} headers; exactly one is accepted`,
      );
    const header = values[0]?.toString() ?? '';
    const key = createHash('sha256').update(header).digest('hex');
    let cached = this.forwarded.get(key);
    if (cached === undefined || cached.generation !== this.bundles.generation) {
      // The generation the chain is judged under, read before any await.
      const generation = this.bundles.generation;
      let result: Verdict;
      try {
        const forwarded = parseXfcc(header);
        result = await this.verify(forwarded.chain);
        if (!(result instanceof CountersignError) && forwarded.uri !== undefined && forwarded.uri !== result.spiffeId) {
          result = new CountersignError(
            'unauthenticated',
            'ERR_XFCC_INCONSISTENT',
            `xfcc: URI ${forwarded.uri.slice(0, 200)} is not the forwarded certificate's SPIFFE ID ${result.spiffeId}`,
          );
        }
      } catch (e) {
        if (!(e instanceof CountersignError)) throw e;
        result = e;
      }
      cached = { generation, result };
      // Only successes are remembered: a refusal may be about time (not yet valid) and is cheap to redo.
      if (!(result instanceof CountersignError)) {
        if (this.forwarded.size >= MAX_CACHED_FORWARDED) this.forwarded.clear();
        this.forwarded.set(key, cached);
      }
    }
    const result = cached.result;
    if (result instanceof CountersignError) throw result;
    if (this.clock.now() > result.notAfter) {
      throw new CountersignError(
        'unauthenticated',
        'ERR_SVID_EXPIRED',
        `x509svid: forwarded leaf certificate expired at ${new Date(result.notAfter).toISOString()}`,
      );
    }
    return result;
  }

  private async connectionIdentity(peer: string): Promise<SvidIdentity> {
    const entry = this.byPeer.get(peer);
    if (entry === undefined) {
      throw new CountersignError(
        'unauthenticated',
        'ERR_IDENTITY_UNKNOWN_CONNECTION',
        'no authenticated mTLS connection for this call',
      );
    }
    if (entry.generation !== this.bundles.generation) {
      entry.result = this.verify(entry.chain, entry.handshakeError);
      entry.generation = this.bundles.generation;
    }
    const result = await entry.result;
    if (result instanceof CountersignError) throw result;
    if (this.clock.now() > result.notAfter) {
      const expired = new CountersignError(
        'unauthenticated',
        'ERR_SVID_EXPIRED',
        `x509svid: leaf certificate expired at ${new Date(result.notAfter).toISOString()}; reconnect with a fresh SVID`,
      );
      entry.result = Promise.resolve(expired);
      throw expired;
    }
    return result;
  }

  get connections(): number {
    return this.byPeer.size;
  }
}
