// A small MCP server standing in for one worth guarding: its `deploy` tool acts
// only with a Countersign credential for exactly this deploy (checked offline
// against the broker's JWKS), as a real resource server would. `status` needs
// nothing. Run it behind `countersign mcp-proxy --config guard.yaml`; see
// docs/agents.md.
//
// Environment: COUNTERSIGN_JWKS_URL (the broker's JWKS; the dev env files set it),
// DEPLOY_AUDIENCE (default https://deploy.example.org), and COUNTERSIGN_CERT when
// the credential must be bound to that certificate (the proxy's).
import { readFileSync } from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';
import { RemoteJwks, verifyCredential } from '@countersign/agent/verify';

const jwksUrl = process.env.COUNTERSIGN_JWKS_URL;
if (!jwksUrl)
  throw new Error('set COUNTERSIGN_JWKS_URL to the broker JWKS, e.g. http://127.0.0.1:7080/.well-known/jwks.json');
const jwks = new RemoteJwks(jwksUrl);
const audience = process.env.DEPLOY_AUDIENCE ?? 'https://deploy.example.org';
const clientCertificate = process.env.COUNTERSIGN_CERT ? readFileSync(process.env.COUNTERSIGN_CERT, 'utf8') : undefined;
const running: Record<string, string> = { web: '1.4.1', api: '2.0.0' };

const server = new McpServer({ name: 'example-deployer', version: '1.0.0' });

server.registerTool(
  'status',
  { description: 'Which version of each service runs in production.', inputSchema: {} },
  async () => ({ content: [{ type: 'text', text: JSON.stringify(running) }] }),
);

server.registerTool(
  'deploy',
  {
    description: 'Deploy a version of a service to production. Needs human approval.',
    inputSchema: { service: z.string(), version: z.string() },
  },
  async (args, extra) => {
    const token = extra._meta?.['io.countersign/credential'];
    if (typeof token !== 'string') {
      return {
        isError: true,
        content: [{ type: 'text', text: 'refused: this call carries no Countersign credential' }],
      };
    }
    try {
      const { claims } = await verifyCredential(token, {
        jwks,
        audience,
        operation: 'deploy',
        resource: `prod/${args.service}`,
        parameters: { service: args.service, version: args.version },
        ...(clientCertificate ? { clientCertificate } : {}),
      });
      running[args.service] = args.version;
      const approvers = claims.approval?.approvers.map((a) => a.principal).join(', ') ?? 'policy';
      return {
        content: [
          {
            type: 'text',
            text: `deployed ${args.service} ${args.version} (request ${claims.approval?.request_id ?? '-'}, approved by ${approvers})`,
          },
        ],
      };
    } catch (e) {
      return { isError: true, content: [{ type: 'text', text: `refused: ${(e as Error).message}` }] };
    }
  },
);

await server.connect(new StdioServerTransport());
