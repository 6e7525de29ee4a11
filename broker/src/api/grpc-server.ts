// The gRPC surface: Broker and Approvals services, standard health and server
// reflection, served over mTLS. TLS is terminated here (not inside grpc-js) so
// each connection's client chain can be validated once, per SPIFFE, before any
// call on it is served; the decrypted stream is then handed to grpc-js.
import type { Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import {
  Metadata,
  Server,
  ServerCredentials,
  status as GrpcStatus,
  type ServerDuplexStream,
  type ServiceDefinition,
  type ServiceError,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { CountersignError } from '../errors.js';
import type { PeerAuthenticator } from '../identity/peer-authenticator.js';
import { reflectionServices } from './reflection.js';
import { withTolerantDecoding } from './decode.js';
import { ERROR_CODE_TRAILER } from './status.js';

export interface TlsIdentity {
  /** The broker's SVID chain (leaf first) and key, PEM. */
  certChainPem: string;
  keyPem: string;
  /** Authorities of every trust domain, PEM (the TLS layer's acceptable CAs). */
  authoritiesPem: string;
}

export interface GrpcServerOptions {
  host: string;
  port: number;
  maxMessageBytes: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams (calls) one connection may have open at once. */
  maxConcurrentStreams: number;
  peers: PeerAuthenticator;
  logger: Logger;
  services: { definition: ServiceDefinition; implementation: UntypedServiceImplementation }[];
  tls: TlsIdentity;
}

export interface RunningGrpcServer {
  port: number;
  health: HealthImplementation;
  /** Swaps the broker's certificate or the trust bundles; open connections are kept. */
  updateTls(tls: TlsIdentity): void;
  /** Stops accepting, lets calls finish for graceMs, then cuts what is left. */
  close(graceMs?: number): Promise<void>;
}

function secureContextOptions(tls: TlsIdentity) {
  return { cert: tls.certChainPem, key: tls.keyPem, ca: tls.authoritiesPem };
}

/**
 * The server as a service registers on it, with every call of those services
 * refused (UNAUTHENTICATED) unless its connection carries an accepted SVID.
 * The TLS layer lets certificate-less connections through (rejectUnauthorized:
 * false, so refusals get a precise status), so a service that does not ask
 * PeerAuthenticator itself answers anyone: this wrapper makes it ask.
 */
function requiringIdentity(server: Server, peers: PeerAuthenticator): Pick<Server, 'addService'> {
  return {
    addService(definition, implementation) {
      const guarded: UntypedServiceImplementation = {};
      for (const [name, handler] of Object.entries(implementation)) {
        guarded[name] = (call: ServerDuplexStream<unknown, unknown>, ...rest: unknown[]) => {
          // Messages that arrive while the identity is checked wait for the handler (a paused stream buffers them).
          call.pause();
          peers.authenticate(call.getPeer(), call.metadata).then(
            () => {
              (handler as (...args: unknown[]) => void)(call, ...rest);
              call.resume();
            },
            (e: unknown) => {
              const error =
                e instanceof CountersignError
                  ? e
                  : new CountersignError(
                      'unauthenticated',
                      'ERR_IDENTITY_UNKNOWN_CONNECTION',
                      'no authenticated mTLS connection for this call',
                    );
              const metadata = new Metadata();
              metadata.set(ERROR_CODE_TRAILER, error.code);
              const status: Partial<ServiceError> = {
                code: GrpcStatus.UNAUTHENTICATED,
                details: error.message,
                metadata,
              };
              // Reflection is a bidi stream: its status goes out through 'error' (see status.ts).
              call.emit('error', status);
            },
          );
        };
      }
      server.addService(definition, guarded);
    },
  };
}

export async function startGrpcServer(options: GrpcServerOptions): Promise<RunningGrpcServer> {
  const server = new Server({
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.max_send_message_length': options.maxMessageBytes,
    'grpc.max_concurrent_streams': options.maxConcurrentStreams,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  for (const s of options.services) server.addService(withTolerantDecoding(s.definition), s.implementation);

  const health = new HealthImplementation({
    '': 'SERVING',
    'countersign.v1.Broker': 'SERVING',
    'countersign.v1.Approvals': 'SERVING',
    'countersign.v1.Identity': 'SERVING',
  });
  health.addToServer(server);
  // Reflection describes the whole API: only a caller whose SVID the broker accepts may ask (health stays open for probes).
  const guarded = requiringIdentity(server, options.peers);
  for (const s of reflectionServices([
    'countersign.v1.Broker',
    'countersign.v1.Approvals',
    'countersign.v1.Identity',
    'grpc.health.v1.Health',
  ])) {
    guarded.addService(s.definition, s.implementation);
  }

  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const tlsServer: TlsServer = createTlsServer({
    ...secureContextOptions(options.tls),
    ALPNProtocols: ['h2'],
    minVersion: 'TLSv1.2',
    // OpenSSL validates the client chain here (RFC 5280, against `ca`: every trust
    // domain's authorities) but does not end the handshake on a refusal:
    // PeerAuthenticator takes its verdict along with its own SPIFFE validation, so a
    // bad chain gets a precise UNAUTHENTICATED status and an audit record instead of
    // an opaque handshake failure.
    requestCert: true,
    rejectUnauthorized: false,
  });
  // Small gRPC frames must not wait for Nagle's algorithm (grpc-js sets this on its own sockets).
  tlsServer.on('connection', (socket: Socket) => socket.setNoDelay(true));
  tlsServer.on('secureConnection', (socket: TLSSocket) => {
    socket.on('error', (err) => options.logger.debug({ err }, 'tls connection error'));
    // grpc-js gets the connection once its identity is judged, so no call waits on it.
    options.peers.attach(socket).then(
      () => {
        if (!socket.destroyed) injector.injectConnection(socket);
      },
      (err: unknown) => {
        options.logger.error({ err }, 'client identity check failed; connection closed');
        socket.destroy();
      },
    );
  });
  tlsServer.on('tlsClientError', (err) => options.logger.info({ reason: err.message }, 'tls handshake failed'));

  await new Promise<void>((resolve, reject) => {
    tlsServer.once('error', reject);
    tlsServer.listen(options.port, options.host, () => {
      tlsServer.off('error', reject);
      resolve();
    });
  });
  const address = tlsServer.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;

  return {
    port,
    health,
    updateTls(tls) {
      tlsServer.setSecureContext({ ...secureContextOptions(tls) });
    },
    async close(graceMs = 5000) {
      health.setStatus('', 'NOT_SERVING');
      const allClosed = new Promise<void>((resolve) => tlsServer.close(() => resolve()));
      injector.drain(graceMs);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([allClosed, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs + 500)))]);
      clearTimeout(timer);
      injector.destroy();
      server.forceShutdown();
    },
  };
}
