// Serving the Countersign MCP server: over stdio (the client starts
// `countersign mcp`), or over streamable HTTP on a local port, to callers that
// show its bearer secret.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { CountersignClient } from '../sdk/client.js';
import { bearerMatches } from './bearer-secret.js';
import { createCountersignMcpServer, OwnRequests, type CountersignMcpOptions } from './tools.js';

/** Serves on this process's stdin/stdout until stdin closes. */
export async function serveStdio(client: CountersignClient, options: CountersignMcpOptions): Promise<void> {
  const server = createCountersignMcpServer(client, options);
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
  });
  await server.connect(transport);
  await closed;
  await server.close();
}

export interface HttpServing {
  server: Server;
  url: string;
  close(): Promise<void>;
}

const LOCAL_NAMES = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function refuse(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res
    .writeHead(status, { 'content-type': 'application/json', ...headers })
    .end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

export interface HttpOptions extends CountersignMcpOptions {
  port: number;
  host: string;
  /** What callers must send as `Authorization: Bearer <secret>` (see bearer-secret.ts). */
  bearerSecret: string;
}

/**
 * Streamable HTTP at http://HOST:PORT/mcp, stateless: each POST gets its own
 * server instance (sharing which requests this server made). Host and Origin
 * headers must name this machine (or --host), so a web page cannot reach it
 * through DNS rebinding, and every call must carry the bearer secret, so
 * another local user cannot act as this workload.
 */
export async function serveHttp(client: CountersignClient, options: HttpOptions): Promise<HttpServing> {
  if (options.bearerSecret.length === 0) throw new Error('serveHttp needs a bearer secret');
  const shared: CountersignMcpOptions = { ...options, ownRequests: options.ownRequests ?? new OwnRequests() };
  const allowed = new Set([...LOCAL_NAMES, options.host]);
  const hostnameOf = (value: string) => {
    try {
      return new URL(value.includes('://') ? value : `http://${value}`).hostname;
    } catch {
      return undefined;
    }
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== '/mcp') return refuse(res, 404, `not found: the MCP endpoint is /mcp`);
    const host = hostnameOf(req.headers.host ?? '');
    if (host === undefined || !allowed.has(host))
      return refuse(res, 403, `Host ${JSON.stringify(req.headers.host ?? '')} is not allowed`);
    const origin = req.headers.origin;
    if (origin !== undefined && !allowed.has(hostnameOf(origin) ?? ''))
      return refuse(res, 403, `Origin ${JSON.stringify(origin)} is not allowed`);
    if (!bearerMatches(req.headers.authorization, options.bearerSecret)) {
      return refuse(
        res,
        401,
        "send this server's bearer secret: Authorization: Bearer <the secret in the file its start-up line names>",
        {
          'www-authenticate': 'Bearer realm="countersign-mcp"',
        },
      );
    }
    if (req.method !== 'POST') return refuse(res, 405, 'this server is stateless: POST JSON-RPC messages to /mcp');
    const server = createCountersignMcpServer(client, shared);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  };
  const http = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) refuse(res, 500, `internal error: ${(e as Error).message}`);
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port, options.host, () => resolve());
  });
  const { port } = http.address() as AddressInfo;
  const shownHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    server: http,
    url: `http://${shownHost}:${port}/mcp`,
    close: () =>
      new Promise<void>((resolve) => {
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
}
