// Benchmark: what the MCP guard proxy costs an agent. Baseline: an MCP client
// (the SDK's) calling an unguarded tool of an MCP server directly over stdio.
// Against it, in the same run: the same call through `countersign mcp-proxy`
// (passed through untouched), and a guarded call that policy allows at once
// (RequestOperation -> credential -> forwarded -> verified by the server).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startTestBroker } from '@countersign/broker/testing';
import { fmt, runLoad, table } from './harness.js';

const CLI = fileURLToPath(new URL('../agents/bin/countersign.js', import.meta.url));
const SERVER = fileURLToPath(new URL('../agents/examples/mcp/deploy-server.ts', import.meta.url));
const GUARD = fileURLToPath(new URL('../agents/examples/mcp/guard.yaml', import.meta.url));

const POLICY = `version: 1
rules:
  - name: bench-deploys
    match: { workload: "spiffe://example.org/ci/*", operation: deploy, resource: "prod/*" }
    decision: allow
`;

export async function benchMcpProxy(options: { durationMs: number; concurrencies: number[] }): Promise<void> {
  const t = await startTestBroker({
    policy: POLICY,
    extraConfig: 'requests:\n  limits: { requests_per_second: 100000, burst: 100000 }\n',
  });
  const dir = await mkdtemp(join(tmpdir(), 'countersign-bench-mcp-'));
  const svid = t.svid('ci/deployer');
  const env = {
    ...(process.env as Record<string, string>),
    COUNTERSIGN_ADDR: t.address,
    COUNTERSIGN_CERT: join(dir, 'cert.pem'),
    COUNTERSIGN_KEY: join(dir, 'key.pem'),
    COUNTERSIGN_CA: join(dir, 'ca.pem'),
    COUNTERSIGN_JWKS_URL: t.jwksUrl,
  };
  await Promise.all([
    writeFile(env.COUNTERSIGN_CERT, svid.chainPem),
    writeFile(env.COUNTERSIGN_KEY, svid.keyPem),
    writeFile(env.COUNTERSIGN_CA, t.ca.pem),
  ]);
  const connect = async (args: string[]) => {
    const client = new Client({ name: 'bench', version: '1' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args, env, stderr: 'ignore' }));
    return client;
  };
  const direct = await connect(['--import', 'tsx', SERVER]);
  const proxied = await connect([
    CLI,
    'mcp-proxy',
    '--config',
    GUARD,
    '--',
    process.execPath,
    '--import',
    'tsx',
    SERVER,
  ]);
  const call = (client: Client, name: string, args: Record<string, unknown>) => async () => {
    const result = await client.callTool({ name, arguments: args });
    if (result.isError) throw new Error(JSON.stringify(result.content));
  };
  try {
    const rows: Record<string, string>[] = [];
    for (const concurrency of options.concurrencies) {
      const load = { concurrency, durationMs: options.durationMs };
      const base = await runLoad(call(direct, 'status', {}), load);
      const passed = await runLoad(call(proxied, 'status', {}), load);
      const guarded = await runLoad(call(proxied, 'deploy', { service: 'web', version: '1.4.2' }), load);
      rows.push({
        concurrency: String(concurrency),
        'direct calls/s': fmt(base.throughput, 0),
        'passed through /direct': fmt(passed.throughput / base.throughput, 2),
        'guarded, allowed /direct': fmt(guarded.throughput / base.throughput, 2),
        'p50 ms direct/passed/guarded': `${fmt(base.p50Ms, 2)}/${fmt(passed.p50Ms, 2)}/${fmt(guarded.p50Ms, 2)}`,
        errors: String(base.errors + passed.errors + guarded.errors),
      });
    }
    process.stdout.write(
      '\nMCP guard proxy: tools/call over stdio, direct vs through countersign mcp-proxy (passed through; guarded and allowed by policy, verified by the server)\n',
    );
    process.stdout.write(`${table(rows)}\n`);
  } finally {
    await direct.close();
    await proxied.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  }
}
