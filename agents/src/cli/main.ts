// countersign: ask the broker for permission to run one operation, wait for the
// people who must approve it, and (as one of those people) approve or deny.
//
// Only commander and the command definitions load up front: each subcommand imports what
// it uses when it runs (the gRPC client, the MCP SDK, YAML, jose), so `countersign --help`
// starts about as fast as node itself (`npm run bench -- cli`).
import { Command, InvalidArgumentError, Option } from 'commander';
import type { CountersignClient, OperationInput, OperationResult } from '../sdk/client.js';
import { MAX_WAIT_SECONDS } from '../mcp/limits.js';
import { OUTPUT_MODES, type OutputMode } from './output-modes.js';
import { verifyCommand } from './verify.js';
import { packageVersion, retryReporter } from './retry-report.js';

/** Exit codes: stable, documented in --help, used by scripts and CI. */
export const EXIT = { approved: 0, error: 1, usage: 2, denied: 3, expired: 4, cancelled: 5, pending: 6 } as const;

const EXIT_HELP = `
Exit codes (request, watch, run; see verify --help for verify's):
  0  approved (request/watch print the credential; run: CMD ran and exited 0)
  1  error talking to the broker (unreachable, refused identity, invalid request)
  2  usage error
  3  denied by policy or by an approver
  4  expired before enough approvals
  5  cancelled
  6  pending approval (the request id is printed; --wait or \`countersign watch ID\` waits)
  run only:
  N    CMD's own exit code once it ran (128+n when a signal n ended it)
  126  CMD is not executable or readable (nothing was asked), or it changed while waiting (not run)
  127  CMD was not found (nothing was asked)
  129, 130, 131, 140, 143  interrupted (SIGHUP, SIGINT/Ctrl-C, SIGQUIT, SIGUSR2, SIGTERM) while waiting;
       the request was cancelled (request --wait and watch leave it pending and exit 6)

Identity: --cert/--key/--ca or COUNTERSIGN_CERT, COUNTERSIGN_KEY, COUNTERSIGN_CA; or the SPIFFE
Workload API: --workload-api [endpoint] or COUNTERSIGN_WORKLOAD_API=1 (endpoint from
SPIFFE_ENDPOINT_SOCKET), which is also used when no files are named and SPIFFE_ENDPOINT_SOCKET is set;
or, without SPIRE, --oidc github|gitlab|k8s|file:PATH (COUNTERSIGN_OIDC) with --ca: the platform's
OIDC token is exchanged for a short-lived SVID, its key kept in memory.
Broker address: --addr or COUNTERSIGN_ADDR (host:port).`;

const out = (line: string) => process.stdout.write(`${line}\n`);
const err = (line: string) => process.stderr.write(`${line}\n`);

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError(`expected a port number 0-65535, got ${JSON.stringify(value)}`);
  return n;
}

function ttl(value: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(value);
  if (!m) throw new InvalidArgumentError('expected seconds or a duration like 90s, 5m, 1h');
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[(m[2] ?? 's') as 's' | 'm' | 'h'];
}

interface IdentityFlags {
  addr?: string;
  cert?: string;
  key?: string;
  ca?: string;
  serverId?: string;
  workloadApi?: boolean | string;
  spiffeId?: string;
  oidc?: string;
  oidcAudience?: string;
  oidcIssuer?: string;
}

const withIdentityOptions = (cmd: Command): Command =>
  cmd
    .option('--addr <host:port>', 'broker address (default: COUNTERSIGN_ADDR)')
    .option('--cert <file>', 'your SVID certificate chain, PEM (default: COUNTERSIGN_CERT)')
    .option('--key <file>', 'your SVID private key, PEM (default: COUNTERSIGN_KEY)')
    .option('--ca <file>', 'trust bundle to authenticate the broker (default: COUNTERSIGN_CA)')
    .option(
      '--server-id <spiffe-id>',
      'expected broker SPIFFE ID or spiffe://<trust domain> (default: your own trust domain)',
    )
    .option(
      '--workload-api [endpoint]',
      'take your SVID and bundle from the SPIFFE Workload API (default endpoint: SPIFFE_ENDPOINT_SOCKET)',
    )
    .option(
      '--spiffe-id <id>',
      'with the Workload API: which of your SVIDs to use, when it offers several (default: the first)',
    )
    .option(
      '--oidc <source>',
      "no SVID? exchange your platform's OIDC token for one: github, gitlab, k8s or file:PATH (default: COUNTERSIGN_OIDC; needs --ca)",
    )
    .option(
      '--oidc-audience <aud>',
      'with --oidc github: the audience to ask for (default: COUNTERSIGN_OIDC_AUDIENCE or countersign)',
    )
    .option(
      '--oidc-issuer <name>',
      "with --oidc: the broker's name for the issuer (default: the one matching the token's iss)",
    );

const clientFrom = async (o: IdentityFlags) =>
  (await import('../sdk/client.js')).CountersignClient.connect({
    address: o.addr,
    certFile: o.cert,
    keyFile: o.key,
    caFile: o.ca,
    serverId: o.serverId,
    workloadApi: o.workloadApi,
    spiffeId: o.spiffeId,
    oidc: o.oidc,
    oidcAudience: o.oidcAudience,
    oidcIssuer: o.oidcIssuer,
  });
const approvalsFrom = async (o: IdentityFlags) =>
  (await import('../sdk/approvals.js')).ApprovalsClient.fromEnv({
    address: o.addr,
    certFile: o.cert,
    keyFile: o.key,
    caFile: o.ca,
    serverId: o.serverId,
    channel: 'cli',
  });

const HINT_LEAVE = 'waiting for approval (Ctrl-C stops waiting; the request stays pending)';

/** Follows a pending request until it ends; Ctrl-C stops waiting but leaves the request pending (exit 6). */
async function waitForEnd(
  client: CountersignClient,
  requestId: string,
  start?: OperationResult,
): Promise<OperationResult> {
  const { followRequest } = await import('./follow.js');
  const followed = await followRequest(client, requestId, { onInterrupt: 'leave', start, hint: HINT_LEAVE });
  if ('interrupted' in followed) {
    err(
      `stopped waiting; request ${requestId} is still pending (countersign watch ${requestId} resumes, countersign cancel ${requestId} withdraws it)`,
    );
    process.exit(EXIT.pending);
  }
  return followed.ended;
}

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

interface OperationFlags {
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
}

const withOperationOptions = (cmd: Command): Command =>
  cmd
    .requiredOption('--operation <op>', 'what is to be done, e.g. deploy')
    .requiredOption('--resource <res>', 'what it is done to, e.g. prod/payments')
    .option(
      '--param <k=v>',
      'a parameter (repeatable); k:=JSON for non-strings',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option(
      '--parameters-json <json>',
      "all parameters as one JSON object, sent exactly as given (the broker's strict rules apply: no duplicate keys, numbers within 2^53, ...)",
    )
    .option('--reason <text>', 'why, shown to approvers')
    .option('--audience <aud>', 'who will accept the credential')
    .option('--on-behalf-of <principal>', 'the human this workload acts for')
    .option('--ticket <id>', 'change ticket reference')
    .option('--ttl <duration>', 'wished credential lifetime (e.g. 5m)', ttl)
    .option(
      '--client-request-id <id>',
      'idempotency key: retries with the same id return the same request (default: a new one per run)',
    );

const operationInput = async (o: OperationFlags): Promise<OperationInput> => ({
  operation: o.operation,
  resource: o.resource,
  parametersJson: (await import('./params.js')).parametersJsonFromFlags(o.param, o.parametersJson),
  reason: o.reason,
  audience: o.audience,
  onBehalfOf: o.onBehalfOf,
  ticket: o.ticket,
  ttlSeconds: o.ttl,
  clientRequestId: o.clientRequestId,
});

const outputOption = () =>
  new Option(
    '--output <mode>',
    'token: the credential (or pending request id); json: one object; env: export lines for eval',
  )
    .choices(OUTPUT_MODES)
    .default('token');

const program = new Command('countersign')
  .version(packageVersion(), '-V, --version', 'print the version')
  .description('Ask the Countersign broker for approval-gated, operation-bound credentials.')
  .enablePositionalOptions()
  .showHelpAfterError()
  .addHelpText('after', EXIT_HELP);

withIdentityOptions(
  withOperationOptions(
    program.command('request').description('ask permission for one operation; prints the credential when approved'),
  )
    .option('--wait', 'when approval is needed, wait for it and print the credential once approved')
    .addOption(outputOption()),
).action(async (o: IdentityFlags & OperationFlags & { wait?: boolean; output: OutputMode }) => {
  const input = await operationInput(o);
  const { printResult } = await import('./output.js');
  const client = await clientFrom(o);
  try {
    const result = await client.request(input, {
      retry: { onRetry: retryReporter(process.stderr.isTTY === true) },
    });
    const final =
      o.wait && result.state === 'PENDING_APPROVAL' ? await waitForEnd(client, result.requestId, result) : result;
    printResult(final, o.output, out, err);
    process.exitCode = exitCodeFor(final);
  } finally {
    client.close();
  }
});

withIdentityOptions(
  withOperationOptions(
    program
      .command('run')
      .description(
        'ask permission for CMD (its absolute path, SHA-256 and arguments go into the parameters as "command"), wait for approval, ' +
          'then run exactly that file with the credential in COUNTERSIGN_TOKEN (and COUNTERSIGN_REQUEST_ID, COUNTERSIGN_PARAMETERS_JSON)',
      )
      .argument('<command...>', 'the command to run once approved, after --')
      .option(
        '--pass-identity',
        'let CMD inherit COUNTERSIGN_CERT and COUNTERSIGN_KEY (by default they are removed from its environment)',
      )
      .passThroughOptions(),
  ),
).action(async (command: string[], o: IdentityFlags & OperationFlags & { passIdentity?: boolean }) => {
  const input = await operationInput(o);
  const { runGated } = await import('./run.js');
  const client = await clientFrom(o);
  let code: number;
  try {
    code = await runGated({ client, input, command, exitCodeFor, passIdentity: o.passIdentity });
  } finally {
    client.close();
  }
  process.exitCode = code;
});

program.addCommand(verifyCommand());
withIdentityOptions(
  program
    .command('watch')
    .description('wait for a pending request to end; prints the credential once approved')
    .argument('<request-id>', 'the id printed by countersign request')
    .addOption(outputOption()),
).action(async (requestId: string, o: IdentityFlags & { output: OutputMode }) => {
  const { printResult } = await import('./output.js');
  const client = await clientFrom(o);
  try {
    const final = await waitForEnd(client, requestId);
    printResult(final, o.output, out, err);
    process.exitCode = exitCodeFor(final);
  } finally {
    client.close();
  }
});

const seconds = (max: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new InvalidArgumentError(`expected whole seconds 0-${max}`);
  return n;
};

withIdentityOptions(
  program
    .command('mcp')
    .description(
      'serve the Countersign MCP tools (countersign_request, countersign_status, countersign_cancel) to an AI agent, over stdio or HTTP',
    )
    .option(
      '--http <port>',
      'serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (0 picks a free port); callers must send Authorization: Bearer <secret>',
      port,
    )
    .option('--host <address>', 'with --http: the address to listen on', '127.0.0.1')
    .option(
      '--token-file <file>',
      'with --http: the file holding the bearer secret, 0600; created with a random secret when missing (default: $XDG_CONFIG_HOME/countersign/mcp-http.token)',
    )
    .option(
      '--on-behalf-of <principal>',
      'the human this agent acts for, sent with every request (the model cannot change it)',
    )
    .option('--audience <aud>', 'default audience of the credentials')
    .option(
      '--wait-seconds <s>',
      `how long countersign_request waits for a decision by default (0-${MAX_WAIT_SECONDS})`,
      seconds(MAX_WAIT_SECONDS),
      50,
    ),
).action(
  async (
    o: IdentityFlags & {
      http?: number;
      host: string;
      tokenFile?: string;
      onBehalfOf?: string;
      audience?: string;
      waitSeconds: number;
    },
  ) => {
    const [{ CountersignClientError }, { defaultSecretFile, loadBearerSecret }, { serveHttp, serveStdio }] =
      await Promise.all([import('../sdk/errors.js'), import('../mcp/bearer-secret.js'), import('../mcp/serve.js')]);
    if (o.http === undefined && o.tokenFile !== undefined)
      throw new CountersignClientError(
        'ERR_USAGE',
        '--token-file goes with --http (over stdio, the client that starts the server is the only caller)',
      );
    const options = { onBehalfOf: o.onBehalfOf, audience: o.audience, defaultWaitSeconds: o.waitSeconds };
    if (o.http === undefined) {
      const client = await clientFrom(o);
      try {
        await serveStdio(client, options);
      } finally {
        client.close();
      }
      return;
    }
    const secretFile = o.tokenFile ?? defaultSecretFile();
    const secret = await loadBearerSecret(secretFile);
    const client = await clientFrom(o);
    const serving = await serveHttp(client, { ...options, port: o.http, host: o.host, bearerSecret: secret.secret });
    err(
      `countersign MCP server listening on ${serving.url} as ${client.spiffeId ?? 'your SVID'} (Ctrl-C stops it); ` +
        `clients send Authorization: Bearer <the secret in ${secretFile}>${secret.created ? ' (a new random secret, made now)' : ''}`,
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await serving.close();
    client.close();
  },
);

withIdentityOptions(
  program
    .command('mcp-proxy')
    .description(
      'guard any MCP server: tool calls named in --config need approval before they reach it; everything else passes through',
    )
    .requiredOption(
      '--config <file>',
      'which tools need approval, and as what operation and resource (YAML; see docs/agents.md)',
    )
    .option('--on-behalf-of <principal>', 'the human this agent acts for, sent with every request')
    .option('--upstream', 'the upstream MCP server command follows (or give it after --)')
    .argument('<command...>', 'the upstream MCP server: a command and its arguments, started with stdio')
    .passThroughOptions(),
).action(async (command: string[], o: IdentityFlags & { config: string; onBehalfOf?: string }) => {
  const [{ loadProxyConfig }, { McpGuardProxy }, { INTERRUPT_SIGNALS }] = await Promise.all([
    import('../mcp/proxy-config.js'),
    import('../mcp/proxy.js'),
    import('./follow.js'),
  ]);
  const config = loadProxyConfig(o.config);
  const client = await clientFrom(o);
  const [file, ...args] = command as [string, ...string[]];
  const proxy = new McpGuardProxy(client, config, { upstream: { command: file, args }, onBehalfOf: o.onBehalfOf });
  // Whatever ends the proxy withdraws the calls still waiting for approval first.
  for (const signal of INTERRUPT_SIGNALS) process.once(signal, () => void proxy.stop(signal));
  const crashed = (e: unknown) => {
    err(`countersign mcp-proxy: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    void proxy.shutdown('the proxy failed').finally(() => process.exit(EXIT.error));
  };
  process.once('uncaughtException', crashed);
  process.once('unhandledRejection', crashed);
  const code = await proxy.done;
  client.close();
  process.exit(code);
});

withIdentityOptions(
  program
    .command('cancel')
    .description('withdraw a pending request (only the workload that made it can); exits 0 once cancelled')
    .argument('<request-id>', 'the id printed by countersign request')
    .option('--reason <text>', 'why, recorded with the request'),
).action(async (requestId: string, o: IdentityFlags & { reason?: string }) => {
  const client = await clientFrom(o);
  try {
    const result = await client.cancel(requestId, o.reason);
    err(`cancelled request ${requestId}: ${result.message}`);
  } finally {
    client.close();
  }
});

const approvals = program
  .command('approvals')
  .description('for approvers (authenticated by their own SVID): list pending requests, approve or deny them');

withIdentityOptions(
  approvals
    .command('list')
    .description('pending requests you may decide, soonest deadline first')
    .addOption(new Option('--output <mode>', 'what to print').choices(['table', 'json']).default('table')),
).action(async (o: IdentityFlags & { output: 'table' | 'json' }) => {
  const { printPendingList } = await import('./approvals-output.js');
  const client = await approvalsFrom(o);
  try {
    printPendingList(await client.listPending(), o.output, out);
  } finally {
    client.close();
  }
});

withIdentityOptions(
  approvals
    .command('show')
    .description('one pending request in full: its parameters whole and pretty-printed, votes, rule, reason')
    .argument('<request-id>', 'the request (see countersign approvals list)'),
).action(async (requestId: string, o: IdentityFlags) => {
  const [{ CountersignClientError }, { printRequest }] = await Promise.all([
    import('../sdk/errors.js'),
    import('./approvals-output.js'),
  ]);
  const client = await approvalsFrom(o);
  try {
    const request = (await client.listPending()).find((r) => r.id === requestId);
    if (request === undefined)
      throw new CountersignClientError(
        'ERR_REQUEST_NOT_FOUND',
        `${requestId} is not among the pending requests you may decide (countersign approvals list shows them)`,
      );
    printRequest(request, out);
  } finally {
    client.close();
  }
});

async function decide(
  requestId: string,
  decision: 'approve' | 'deny',
  o: IdentityFlags & { reason?: string; confirmResource?: string },
): Promise<void> {
  const [{ CountersignClientError }, { decisionSummary, promptLine }] = await Promise.all([
    import('../sdk/errors.js'),
    import('./approvals-output.js'),
  ]);
  const client = await approvalsFrom(o);
  try {
    let reason = o.reason;
    let confirmResource = o.confirmResource;
    let request;
    try {
      request = await client.decide({ requestId, decision, reason, confirmResource });
    } catch (e) {
      // Step-up "confirm" at a terminal: ask for the resource (and a reason), then try once more.
      if (!(e instanceof CountersignClientError) || e.code !== 'ERR_STEP_UP_REQUIRED' || !process.stdin.isTTY) throw e;
      // Step-up "webauthn" cannot be done here: the message names the console page (a passkey approves there).
      if ((await client.listPending()).find((r) => r.id === requestId)?.stepUp === 'webauthn') throw e;
      err(e.message);
      confirmResource = await promptLine('type the resource to confirm: ');
      if (!reason) reason = await promptLine('reason: ');
      request = await client.decide({ requestId, decision, reason, confirmResource });
    }
    out(decisionSummary(request, decision));
  } finally {
    client.close();
  }
}

withIdentityOptions(
  approvals
    .command('approve')
    .description('approve a pending request')
    .argument('<request-id>', 'the request to approve (see countersign approvals list)')
    .option('--reason <text>', 'why, recorded with your vote')
    .option('--confirm-resource <resource>', "step-up 'confirm': the request's resource, typed again"),
).action(async (requestId: string, o: IdentityFlags & { reason?: string; confirmResource?: string }) =>
  decide(requestId, 'approve', o),
);

withIdentityOptions(
  approvals
    .command('deny')
    .description('deny a pending request')
    .argument('<request-id>', 'the request to deny (see countersign approvals list)')
    .option('--reason <text>', 'why, shown to the requester'),
).action(async (requestId: string, o: IdentityFlags & { reason?: string }) => decide(requestId, 'deny', o));

// Usage errors exit 2 in every subcommand (exitOverride is not inherited by commands added earlier).
const usageExit = (cmd: Command): void => {
  cmd.exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : EXIT.usage));
  for (const sub of cmd.commands) usageExit(sub);
};
usageExit(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const { CountersignClientError } = await import('../sdk/errors.js');
  if (e instanceof CountersignClientError) {
    err(`countersign: ${e.message}${e.code.startsWith('ERR_') ? ` [${e.code}]` : ''}`);
    process.exit(e.code === 'ERR_USAGE' ? EXIT.usage : EXIT.error);
  }
  err(`countersign: ${(e as Error).message}`);
  process.exit(EXIT.error);
}
