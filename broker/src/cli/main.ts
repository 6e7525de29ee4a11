// countersign-broker: run the broker (serve, dev) and the operator tools.
import { Command, InvalidArgumentError, Option } from 'commander';
import { CountersignError } from '../errors.js';
import { err } from './output.js';
import { runDev } from './dev.js';
import { ROLES, runServe, type Role } from './serve.js';

export const EXIT = { ok: 0, error: 1, usage: 2, config: 3 } as const;

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`expected a port number 0-65535, got ${JSON.stringify(value)}`);
  return n;
}

const program = new Command('countersign-broker')
  .description('Countersign approval broker: workloads ask, policy and people decide, credentials prove it.')
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Exit codes:
  0  success
  1  runtime error (e.g. Redis unreachable at start-up)
  2  usage error
  3  invalid configuration, policy or key file`,
  );

program
  .command('serve')
  .description('run the broker from a configuration file')
  .requiredOption('--config <file>', 'broker configuration (YAML)')
  .addOption(
    new Option('--role <role>', 'all: API and queue workers; api: gRPC/HTTP only; worker: queue workers (notifications, expiry, sweeper) only')
      .choices(ROLES)
      .default('all'),
  )
  .action(async (opts: { config: string; role: Role }) => void (await runServe(opts.config, opts.role)));

program
  .command('dev')
  .description('run a broker with a local dev trust domain (created once in --dir, then reused)')
  .option('--dir <dir>', 'where the dev trust domain lives', '.countersign/dev')
  .option('--trust-domain <name>', 'dev trust domain name', 'example.org')
  .option('--grpc-port <port>', 'gRPC (mTLS) port, 0 picks a free one', port, 7443)
  .option('--http-port <port>', 'HTTP port (JWKS, health), 0 picks a free one', port, 7080)
  .action(async (opts: { dir: string; trustDomain: string; grpcPort: number; httpPort: number }) => runDev(opts));

program.exitOverride((e) => {
  process.exit(e.exitCode === 0 ? EXIT.ok : EXIT.usage);
});

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CountersignError) {
    err(`countersign-broker: ${e.message}`);
    process.exit(['invalid_argument', 'failed_precondition'].includes(e.kind) ? EXIT.config : EXIT.error);
  }
  err(`countersign-broker: ${(e as Error).message}`);
  process.exit(EXIT.error);
}
