// A plaintext gRPC listener serving only grpc.health.v1, for the kubelet's native
// gRPC probes (which cannot present a client certificate). It reports:
//   ""            SERVING while the broker can serve (Redis reachable): readiness
//   "liveness"    SERVING while the process is alive and its event loop turns
// It exposes nothing else: no API, no reflection.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { type HealthImplementation } from 'grpc-health-check';

export interface RunningHealthServer {
  port: number;
  close(): Promise<void>;
}

export async function startHealthServer(options: {
  host: string;
  port: number;
  health: HealthImplementation;
}): Promise<RunningHealthServer> {
  const server = new Server();
  options.health.addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`,
      ServerCredentials.createInsecure(),
      (e, p) => (e ? reject(e) : resolve(p)),
    ),
  );
  return {
    port,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
