// countersign-broker: run the broker (serve, dev) and the operator tools.
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { CountersignError } from '../errors.js';
import { err, out } from './output.js';
// Each command imports what it runs when it runs (`await import` in its action): the broker
// (gRPC, BullMQ, OpenTelemetry, the console) is loaded by serve and dev only, so `config
// check`, `policy check` or `--help` start in a fraction of the time. Only the command
// definitions and their option parsers are loaded up front.
import { auditCommand } from './audit-command.js';
import { AUDIT_EXIT_HELP, LOG_FORMATS, POLICY_TESTS_FAILED, ROLES, type Role } from './constants.js';
import type { DevOptions, DevTokenOptions } from './dev.js';
import type { ExplainOptions } from './policy.js';
import { configCommand } from './config.js';
import { keysCommand } from './keys.js';
import { principalsCommand } from './principals-command.js';

export const EXIT = { ok: 0, error: 1, usage: 2, config: 3, testsFailed: POLICY_TESTS_FAILED } as const;
const io = { out, err };

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError(`expected a port number 0-65535, got ${JSON.stringify(value)}`);
  return n;
}

const version = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const program = new Command('countersign-broker')
  .version(version, '-V, --version', 'print the version')
  .description('Countersign approval broker: workloads ask, policy and people decide, credentials prove it.')
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Exit codes:
  0  success
  1  runtime error (e.g. Redis unreachable at start-up)
  2  usage error
  3  invalid configuration, policy or key file
  4  policy check: a test case in the policy file failed
${AUDIT_EXIT_HELP.trimEnd()}`,
  );

program
  .command('serve')
  .description('run the broker from a configuration file')
  .requiredOption('--config <file>', 'broker configuration (YAML)')
  .addOption(
    new Option(
      '--role <role>',
      'all: API and queue workers; api: gRPC/HTTP only; worker: queue workers (notifications, expiry, sweeper) only',
    )
      .choices(ROLES)
      .default('all'),
  )
  .action(
    async (opts: { config: string; role: Role }) =>
      void (await (await import('./serve.js')).runServe(opts.config, opts.role)),
  );

program
  .command('dev')
  .description('run a broker with a local dev trust domain (created once in --dir, then reused)')
  .option('--dir <dir>', 'where the dev trust domain lives', '.countersign/dev')
  .option('--trust-domain <name>', 'dev trust domain name', 'example.org')
  .option('--grpc-port <port>', 'gRPC (mTLS) port, 0 picks a free one', port, 7443)
  .option('--http-port <port>', 'HTTP port (JWKS, health), 0 picks a free one', port, 7080)
  .option('--console-port <port>', 'approver console port (http://localhost:PORT), 0 picks a free one', port, 7090)
  .addOption(
    new Option('--log-format <format>', 'auto: readable on a terminal, JSON lines otherwise')
      .choices(LOG_FORMATS)
      .default('auto'),
  )
  .action(async (opts: DevOptions) => (await import('./dev.js')).runDev(opts));

program.commands
  .find((c) => c.name() === 'dev')
  ?.command('token')
  .description(
    "print a token from dev mode's local CI issuer (shaped like a GitHub Actions job's), for `countersign --oidc file:PATH`",
  )
  .option(
    '--claim <name=value>',
    'set or replace a claim, e.g. ref=refs/heads/feature; repeatable',
    (v: string, prev: string[]) => [...prev, v],
    [] as string[],
  )
  .option('--audience <aud>', "the token's aud", 'countersign')
  .option('--lifetime <seconds>', 'seconds until it expires', (v: string) => Number(v), 300)
  // --dir is the dev command's own option (countersign-broker dev token --dir D): read it there.
  .action(async (opts: Omit<DevTokenOptions, 'dir'>, cmd: Command) =>
    out(await (await import('./dev.js')).devToken({ ...opts, dir: (cmd.parent?.opts() as { dir: string }).dir })),
  );

program.addCommand(configCommand());
program.addCommand(keysCommand());
program.addCommand(auditCommand());
program.addCommand(principalsCommand());
const collect = (value: string, previous: string[]) => [...previous, value];
const policy = program.command('policy').description('check, test and explain a policy file without running a broker');

policy
  .command('check')
  .description('validate a policy file and run its own tests: cases (exit 0 only if all pass)')
  .argument('<file>', 'policy file (YAML)')
  .option('--principals <file>', 'principals file: also check approver and group names')
  .option('--output <format>', 'text or json', 'text')
  .action(async (file: string, opts: { principals?: string; output: 'text' | 'json' }) => {
    process.exitCode = await (await import('./policy.js')).runPolicyCheck(file, opts, io);
  });

policy
  .command('explain')
  .description(
    'print the decision for one request, the rule that made it, and why every other rule did or did not match',
  )
  .requiredOption('--policy <file>', 'policy file (YAML)')
  .requiredOption('--workload <spiffe-id>', "the caller's SPIFFE ID")
  .requiredOption('--operation <op>', 'operation, e.g. deploy')
  .requiredOption('--resource <res>', 'resource, e.g. prod/web')
  .option('--param <k=v>', 'a parameter: k=v (string) or k:=JSON; repeatable', collect, [])
  .option('--parameters-json <json>', 'all parameters as one JSON object')
  .option('--on-behalf-of <principal>', 'the human the caller acts for')
  .option('--reason <text>', 'the reason given with the request')
  .option('--ticket <id>', 'the change ticket given with the request')
  .option('--at <time>', 'evaluate at this RFC 3339 time (default now)')
  .option('--svid-age <duration>', "how long ago the caller's SVID was issued", '1m')
  .option('--svid-remaining <duration>', "how long the caller's SVID is still valid", '1h')
  .option('--request-rate <n>', "the caller's requests within settings.rate_window (context.request_rate)", '1')
  .option('--oidc-issuer <name>', "the caller's SVID was exchanged for an OIDC token of this issuer (workload.issuer)")
  .option('--claim <k=v>', 'a claim of that token: k=v (string) or k:=JSON (workload.claims); repeatable', collect, [])
  .option('--principals <file>', 'principals file: check names, expand groups, apply separation of duties')
  .option('--output <format>', 'text or json', 'text')
  .action(async (opts: ExplainOptions) => {
    process.exitCode = await (await import('./policy.js')).runPolicyExplain(opts, io);
  });

policy
  .command('schema')
  .description('print the JSON Schema of the policy file (also in docs/policy.schema.json)')
  .action(async () => {
    process.exitCode = (await import('./policy.js')).runPolicySchema(io);
  });

program.exitOverride((e) => {
  process.exit(e.exitCode === 0 ? EXIT.ok : EXIT.usage);
});

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof InvalidArgumentError) {
    err(`countersign-broker: ${e.message}`);
    process.exit(EXIT.usage);
  }
  if (e instanceof CountersignError) {
    err(`countersign-broker: ${e.message}`);
    process.exit(
      e.code === 'ERR_USAGE'
        ? EXIT.usage
        : ['invalid_argument', 'failed_precondition'].includes(e.kind)
          ? EXIT.config
          : EXIT.error,
    );
  }
  err(`countersign-broker: ${(e as Error).message}`);
  process.exit(EXIT.error);
}
