// npm run bench [-- NAME ...]: runs the named benchmarks (default: all) and prints
// each figure as a ratio to a baseline measured in the same run.
import { benchAllowPath } from './allow-path.js';
import { benchAllowService } from './allow-service.js';
import { benchDurability } from './durability.js';
import { benchAuditAppend, benchVerify } from './verify.js';
import { benchPolicy } from './policy.js';
import { benchSvidVerify } from './svid-verify.js';
import { benchApprovals } from './approvals.js';
import { benchSlack } from './slack.js';
import { benchMcpProxy } from './mcp-proxy.js';
import { benchPasskey } from './passkey.js';
import { benchParameters } from './parameters.js';
import { benchCli } from './cli.js';
import { benchOidcExchange } from './oidc-exchange.js';

const seconds = Number(process.env.BENCH_SECONDS ?? '3');
const benches: Record<string, () => Promise<void>> = {
  'allow-path': () =>
    benchAllowPath({
      durationMs: seconds * 1000,
      concurrencies: (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number),
      rounds: Number(process.env.BENCH_ROUNDS ?? '5'),
      warmupMs: Number(process.env.BENCH_WARMUP_SECONDS ?? '2') * 1000,
      serverWarmup: process.env.BENCH_SERVER_WARMUP !== '0',
    }),
  'allow-service': () =>
    benchAllowService({
      calls: Number(process.env.BENCH_CALLS ?? '20000'),
      rounds: Number(process.env.BENCH_ROUNDS ?? '5'),
    }),
  durability: () => benchDurability({ durationMs: seconds * 1000, concurrencies: [1, 16, 64] }),
  verify: () => benchVerify({ durationMs: seconds * 1000 }),
  'audit-append': () => benchAuditAppend({ durationMs: seconds * 1000, concurrencies: [1, 64] }),
  policy: () => benchPolicy({ durationMs: seconds * 1000 }),
  'svid-verify': () => benchSvidVerify({ durationMs: seconds * 1000 }),
  approvals: () => benchApprovals({ requests: Number(process.env.BENCH_APPROVALS_N ?? '10000') }),
  slack: () => benchSlack({ votes: Number(process.env.BENCH_SLACK_N ?? '200') }),
  'mcp-proxy': () => benchMcpProxy({ durationMs: seconds * 1000, concurrencies: [1, 16] }),
  passkey: () => benchPasskey({ durationMs: seconds * 1000 }),
  parameters: () => benchParameters({ durationMs: seconds * 1000 }),
  cli: () => benchCli({ runs: Number(process.env.BENCH_CLI_RUNS ?? '15') }),
  'oidc-exchange': () => benchOidcExchange({ durationMs: seconds * 1000, concurrency: 8 }),
};

const selected = process.argv.slice(2);
for (const name of selected) {
  if (!(name in benches)) {
    process.stderr.write(`unknown benchmark ${name}; known: ${Object.keys(benches).join(', ')}\n`);
    process.exit(2);
  }
}
process.stdout.write(
  `node ${process.version}, ${seconds}s per measurement (BENCH_SECONDS to change), ${
    process.env.BENCH_SOURCE === '1'
      ? 'the TypeScript sources through tsx'
      : 'the compiled dist/ (BENCH_SOURCE=1: the sources)'
  }\n`,
);
for (const [name, run] of Object.entries(benches)) {
  if (selected.length > 0 && !selected.includes(name)) continue;
  await run();
}
process.exit(0);
