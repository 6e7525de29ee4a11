// The broker's plain HTTP listener: JWKS for resource servers, health and
// readiness for Kubernetes, and room for /metrics and /slack/events.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';

export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}

export interface HttpServerOptions {
  host: string;
  port: number;
  logger: Logger;
  jwks: () => unknown;
  readiness: ReadinessCheck[];
  /** Extra routes by exact path (e.g. /metrics) or path prefix ending in "/" . */
  routes?: Record<string, HttpHandler>;
}

export interface RunningHttpServer {
  port: number;
  server: Server;
  close(): Promise<void>;
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export async function startHttpServer(options: HttpServerOptions): Promise<RunningHttpServer> {
  const routes: Record<string, HttpHandler> = {
    '/.well-known/jwks.json': (_req, res) =>
      sendJson(res, 200, options.jwks(), { 'cache-control': 'public, max-age=60' }),
    '/healthz': (_req, res) => sendJson(res, 200, { status: 'ok' }),
    '/readyz': async (_req, res) => {
      const failures: Record<string, string> = {};
      await Promise.all(
        options.readiness.map(async (r) => {
          try {
            await r.check();
          } catch (e) {
            failures[r.name] = (e as Error).message;
          }
        }),
      );
      const ready = Object.keys(failures).length === 0;
      sendJson(res, ready ? 200 : 503, ready ? { status: 'ready' } : { status: 'not ready', failures });
    },
    ...options.routes,
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    const handler =
      routes[path] ?? Object.entries(routes).find(([prefix]) => prefix.endsWith('/') && path.startsWith(prefix))?.[1];
    if (handler === undefined) {
      sendJson(res, 404, { error: 'not found', path });
      return;
    }
    Promise.resolve(handler(req, res)).catch((err: unknown) => {
      options.logger.error({ err, path }, 'http handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  return {
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
