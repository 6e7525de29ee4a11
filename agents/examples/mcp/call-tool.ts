// A minimal MCP client, standing in for an AI agent: starts an MCP server
// command, calls one tool with JSON arguments, prints the result, and exits 0
// (or 1 when the tool answered with an error). See docs/agents.md.
//
//   npx tsx agents/examples/mcp/call-tool.ts TOOL 'JSON ARGS' -- SERVER COMMAND...
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const [tool, argsJson, separator, command, ...commandArgs] = process.argv.slice(2);
if (!tool || argsJson === undefined || separator !== '--' || !command) {
  process.stderr.write("usage: call-tool.ts TOOL 'JSON ARGS' -- SERVER COMMAND...\n");
  process.exit(2);
}
const client = new Client({ name: 'countersign-example-agent', version: '1.0.0' });
await client.connect(
  new StdioClientTransport({
    command,
    args: commandArgs,
    env: process.env as Record<string, string>,
    stderr: 'inherit',
  }),
);
try {
  // A human may take a while: keep waiting as long as the server reports progress.
  const result = await client.callTool(
    { name: tool, arguments: JSON.parse(argsJson) as Record<string, unknown> },
    undefined,
    {
      timeout: 15 * 60_000,
      resetTimeoutOnProgress: true,
      onprogress: (p) => process.stderr.write(`progress: ${p.message ?? p.progress}\n`),
    },
  );
  for (const item of result.content as { type: string; text?: string }[])
    process.stdout.write(`${item.text ?? JSON.stringify(item)}\n`);
  process.exitCode = result.isError ? 1 : 0;
} finally {
  await client.close();
}
