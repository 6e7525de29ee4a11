// countersign: ask the broker for permission to run one operation.
import { Command, InvalidArgumentError, Option } from 'commander';
import { CountersignClient, type OperationResult } from '../sdk/client.js';
import { CountersignClientError } from '../sdk/errors.js';
import { parseParams } from './params.js';
import { verifyCommand } from './verify.js';

/** Exit codes: stable, documented in --help, used by scripts and CI. */
export const EXIT = { approved: 0, error: 1, usage: 2, denied: 3, expired: 4, cancelled: 5, pending: 6 } as const;

const EXIT_HELP = `
Exit codes (request; see verify --help for verify's):
  0  approved (the credential is printed)
  1  error talking to the broker (unreachable, refused identity, invalid request)
  2  usage error
  3  denied by policy or by an approver
  4  expired before enough approvals
  5  cancelled
  6  pending approval (the request id is printed)

Identity: --cert/--key/--ca or COUNTERSIGN_CERT, COUNTERSIGN_KEY, COUNTERSIGN_CA; or the SPIFFE
Workload API: --workload-api [endpoint] or COUNTERSIGN_WORKLOAD_API=1 (endpoint from
SPIFFE_ENDPOINT_SOCKET), which is also used when no files are named and SPIFFE_ENDPOINT_SOCKET is set.
Broker address: --addr or COUNTERSIGN_ADDR (host:port).`;

const out = (line: string) => process.stdout.write(`${line}\n`);
const err = (line: string) => process.stderr.write(`${line}\n`);

function ttl(value: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(value);
  if (!m) throw new InvalidArgumentError('expected seconds or a duration like 90s, 5m, 1h');
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 }[(m[2] ?? 's') as 's' | 'm' | 'h']);
}

interface IdentityFlags {
  addr?: string;
  cert?: string;
  key?: string;
  ca?: string;
  serverId?: string;
  workloadApi?: boolean | string;
  spiffeId?: string;
}

const withIdentityOptions = (cmd: Command): Command =>
  cmd
    .option('--addr <host:port>', 'broker address (default: COUNTERSIGN_ADDR)')
    .option('--cert <file>', 'your SVID certificate chain, PEM (default: COUNTERSIGN_CERT)')
    .option('--key <file>', 'your SVID private key, PEM (default: COUNTERSIGN_KEY)')
    .option('--ca <file>', 'trust bundle to authenticate the broker (default: COUNTERSIGN_CA)')
    .option('--server-id <spiffe-id>', 'expected broker SPIFFE ID or spiffe://<trust domain> (default: your own trust domain)')
    .option('--workload-api [endpoint]', 'take your SVID and bundle from the SPIFFE Workload API (default endpoint: SPIFFE_ENDPOINT_SOCKET)')
    .option('--spiffe-id <id>', 'with the Workload API: which of your SVIDs to use, when it offers several (default: the first)');

const clientFrom = (o: IdentityFlags) =>
  CountersignClient.connect({ address: o.addr, certFile: o.cert, keyFile: o.key, caFile: o.ca, serverId: o.serverId, workloadApi: o.workloadApi, spiffeId: o.spiffeId });

function exitCodeFor(result: OperationResult): number {
  switch (result.state) {
    case 'APPROVED':
      return EXIT.approved;
    case 'DENIED':
      return EXIT.denied;
    case 'EXPIRED':
      return EXIT.expired;
    case 'CANCELLED':
      return EXIT.cancelled;
    case 'PENDING_APPROVAL':
      return EXIT.pending;
  }
}

function printResult(result: OperationResult, output: 'token' | 'json'): void {
  if (output === 'json') {
    out(
      JSON.stringify(
        {
          state: result.state,
          request_id: result.requestId,
          rule: result.rule || undefined,
          message: result.message || undefined,
          token: result.token,
          credential_id: result.credentialId,
          credential_expires_at: result.credentialExpiresAt?.toISOString(),
          expires_at: result.expiresAt?.toISOString(),
          poll_interval_ms: result.pollIntervalMs,
        },
        null,
        2,
      ),
    );
    return;
  }
  switch (result.state) {
    case 'APPROVED':
      out(result.token ?? '');
      break;
    case 'PENDING_APPROVAL':
      err(`pending approval: request ${result.requestId} (rule ${result.rule}); ${result.message}`);
      if (result.expiresAt) err(`expires at ${result.expiresAt.toISOString()}`);
      out(result.requestId);
      break;
    default:
      err(`${result.state.toLowerCase()}: ${result.message || 'no reason given'}${result.rule ? ` (rule ${result.rule})` : ''}`);
  }
}

const program = new Command('countersign')
  .description('Ask the Countersign broker for approval-gated, operation-bound credentials.')
  .showHelpAfterError()
  .addHelpText('after', EXIT_HELP);

withIdentityOptions(
  program
    .command('request')
    .description('ask permission for one operation; prints the credential when approved')
    .requiredOption('--operation <op>', 'what is to be done, e.g. deploy')
    .requiredOption('--resource <res>', 'what it is done to, e.g. prod/payments')
    .option('--param <k=v>', 'a parameter (repeatable); k:=JSON for non-strings', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--parameters-json <json>', 'all parameters as one JSON object')
    .option('--reason <text>', 'why, shown to approvers')
    .option('--audience <aud>', 'who will accept the credential')
    .option('--on-behalf-of <principal>', 'the human this workload acts for')
    .option('--ticket <id>', 'change ticket reference')
    .option('--ttl <duration>', 'wished credential lifetime (e.g. 5m)', ttl)
    .option('--client-request-id <id>', 'idempotency key: retries with the same id return the same request')
    .addOption(new Option('--output <mode>', 'what to print').choices(['token', 'json']).default('token')),
).action(async (o: IdentityFlags & {
  operation: string;
  resource: string;
  param: string[];
  parametersJson?: string;
  reason?: string;
  audience?: string;
  onBehalfOf?: string;
  ticket?: string;
  ttl?: number;
  clientRequestId?: string;
  output: 'token' | 'json';
}) => {
  const parameters = parseParams(o.param, o.parametersJson);
  const client = await clientFrom(o);
  try {
    const result = await client.requestOperation({
      operation: o.operation,
      resource: o.resource,
      parameters,
      reason: o.reason,
      audience: o.audience,
      onBehalfOf: o.onBehalfOf,
      ticket: o.ticket,
      ttlSeconds: o.ttl,
      clientRequestId: o.clientRequestId,
    });
    printResult(result, o.output);
    process.exitCode = exitCodeFor(result);
  } finally {
    client.close();
  }
});

program.addCommand(verifyCommand());

program.exitOverride((e) => {
  process.exit(e.exitCode === 0 ? 0 : EXIT.usage);
});

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CountersignClientError) {
    err(`countersign: ${e.message}${e.code.startsWith('ERR_') ? ` [${e.code}]` : ''}`);
    process.exit(e.code === 'ERR_USAGE' ? EXIT.usage : EXIT.error);
  }
  err(`countersign: ${(e as Error).message}`);
  process.exit(EXIT.error);
}
