// A Workload API server for tests that need to control exactly what is sent and
// when: rotations on cue, a broken response, an agent that goes away. It speaks
// the real protocol (the vendored SPIFFE proto over gRPC on a unix socket) and,
// like SPIRE, refuses calls without the workload.spiffe.io header. The real
// SPIRE agent is exercised in test/e2e/spire.test.ts.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials, status, type ServerWritableStream } from '@grpc/grpc-js';
import {
  SpiffeWorkloadAPIService,
  type SpiffeWorkloadAPIServer,
  type X509SVIDResponse,
} from '@countersign/proto/workload-api';
import type { CertificateAuthority, IssuedSvid } from '../../src/dev/ca.js';

type Stream = ServerWritableStream<unknown, X509SVIDResponse>;

/** A FetchX509SVID response for these SVIDs, with each trust domain's bundle and federated ones. */
export function x509Response(
  svids: { svid: IssuedSvid; bundle: CertificateAuthority[] }[],
  federated: CertificateAuthority[] = [],
): X509SVIDResponse {
  return {
    svids: svids.map(({ svid, bundle }) => ({
      spiffeId: svid.spiffeId,
      x509Svid: Buffer.concat(svid.chainDer),
      x509SvidKey: svid.privateKey.export({ type: 'pkcs8', format: 'der' }),
      bundle: Buffer.concat(bundle.map((ca) => ca.certificate.der)),
      hint: '',
    })),
    crl: [],
    federatedBundles: Object.fromEntries(federated.map((ca) => [`spiffe://${ca.trustDomain}`, ca.certificate.der])),
  };
}

export class TestWorkloadApi {
  private server: Server | undefined;
  private readonly streams = new Set<Stream>();
  private latest: X509SVIDResponse | undefined;
  /** FetchX509SVID calls answered so far (including refused ones). */
  calls = 0;
  /** The next this many calls fail with UNAVAILABLE. */
  failNext = 0;

  private constructor(
    readonly dir: string,
    readonly socketPath: string,
  ) {}

  static async start(): Promise<TestWorkloadApi> {
    const dir = await mkdtemp(join(tmpdir(), 'cs-wlapi-'));
    const api = new TestWorkloadApi(dir, join(dir, 'agent.sock'));
    await api.listen();
    return api;
  }

  /** The endpoint address, as SPIFFE_ENDPOINT_SOCKET would hold it. */
  get address(): string {
    return `unix://${this.socketPath}`;
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /** Sends a response to every open stream, and to every later caller. */
  publish(response: X509SVIDResponse): void {
    this.latest = response;
    for (const stream of this.streams) stream.write(response);
  }

  private async listen(): Promise<void> {
    const server = new Server();
    const implementation: Pick<SpiffeWorkloadAPIServer, 'fetchX509Svid'> = {
      fetchX509Svid: (stream: Stream) => {
        this.calls++;
        if (stream.metadata.get('workload.spiffe.io')[0] !== 'true') {
          stream.emit('error', { code: status.INVALID_ARGUMENT, details: 'security header missing from request' });
          return;
        }
        if (this.failNext > 0) {
          this.failNext--;
          stream.emit('error', { code: status.UNAVAILABLE, details: 'agent is not ready' });
          return;
        }
        this.streams.add(stream);
        stream.on('cancelled', () => this.streams.delete(stream));
        stream.on('close', () => this.streams.delete(stream));
        if (this.latest) stream.write(this.latest);
      },
    };
    server.addService(SpiffeWorkloadAPIService, implementation);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(this.address, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.server = server;
  }

  /** Stops answering: open streams end with UNAVAILABLE, as when an agent restarts. */
  async stop(): Promise<void> {
    for (const stream of this.streams)
      stream.emit('error', { code: status.UNAVAILABLE, details: 'agent shutting down' });
    this.streams.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await rm(this.socketPath, { force: true });
  }

  /** Listens again on the same socket. */
  async restart(): Promise<void> {
    await this.listen();
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
