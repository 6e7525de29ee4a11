// `countersign run ... -- CMD ARGS`: resolve CMD (refusing at once what cannot
// run), ask with CMD bound into the request, wait, and only when approved, and
// only when CMD is still the file that was approved, run it with the credential
// in COUNTERSIGN_TOKEN; CMD's exit code (or the signal that ended it) becomes
// ours, and signals sent to us reach it.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { CountersignClient, OperationInput, OperationResult } from '../sdk/client.js';
import { CountersignClientError } from '../sdk/errors.js';
import { ENV } from '../sdk/identity.js';
import {
  bindCommand,
  checkUnchanged,
  CommandError,
  COMMAND_EXIT,
  executable,
  parametersJsonOf,
  withCommandParameter,
  type BoundCommand,
} from './bound-command.js';
import { followRequest, INTERRUPT_SIGNALS, SIGNAL_EXIT, type InterruptSignal } from './follow.js';
import { outcomeLine } from './output.js';

export const RUN_EXIT = COMMAND_EXIT;

/** Signals passed on to CMD. SIGINT and SIGQUIT typed at a terminal reach CMD by themselves (same process group). */
const FORWARDED: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGUSR2'];

const say = (line: string) => void process.stderr.write(`countersign: ${line}\n`);

/** CMD as one short line for messages: plain words as they are, others JSON-quoted, at most 100 characters. */
export function describeCommand(command: string[]): string {
  const text = command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

export interface RunContext {
  client: CountersignClient;
  input: OperationInput;
  command: string[];
  /** The exit code for an end state other than APPROVED. */
  exitCodeFor(result: OperationResult): number;
  /** Let CMD inherit COUNTERSIGN_CERT and COUNTERSIGN_KEY (removed from its environment by default). */
  passIdentity?: boolean | undefined;
}

/** Returns the exit code (or ends the process by CMD's signal). */
export async function runGated(ctx: RunContext): Promise<number> {
  let bound: BoundCommand;
  try {
    bound = await bindCommand(ctx.command);
  } catch (e) {
    if (!(e instanceof CommandError)) throw e;
    say(`${e.message}; nothing was asked`);
    return e.exitCode;
  }
  try {
    return await askThenRun(ctx, bound);
  } finally {
    await bound.handle.close();
  }
}

async function askThenRun(ctx: RunContext, bound: BoundCommand): Promise<number> {
  const { client } = ctx;
  const input = withCommandParameter(ctx.input, bound.binding);
  const commandText = `${describeCommand([bound.binding.path, ...bound.binding.args])} (sha256 ${bound.binding.sha256})`;

  // An interrupt while asking: let the call finish (so we learn the request id), then withdraw it.
  let interruptedEarly: InterruptSignal | undefined;
  const early = INTERRUPT_SIGNALS.map((signal) => {
    const handler = () => {
      if (interruptedEarly !== undefined) process.exit(SIGNAL_EXIT[signal]);
      interruptedEarly = signal;
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  let result: OperationResult;
  try {
    result = await client.request(input, {
      retry: {
        onRetry: (e, attempt, delay) =>
          say(`broker unavailable (${e.message}); retrying in ${Math.round(delay)} ms (attempt ${attempt + 1})`),
      },
    });
  } finally {
    for (const [signal, handler] of early) process.off(signal, handler);
  }
  if (interruptedEarly !== undefined) {
    if (result.state === 'PENDING_APPROVAL') {
      await client.cancel(result.requestId, 'interrupted while asking (countersign run was stopped)').then(
        () => say(`interrupted: cancelled request ${result.requestId}; ${commandText} was not run`),
        (e: unknown) => say(`interrupted, but could not cancel request ${result.requestId}: ${(e as Error).message}`),
      );
    } else {
      say(`interrupted; ${commandText} was not run`);
    }
    return SIGNAL_EXIT[interruptedEarly];
  }

  if (result.state === 'PENDING_APPROVAL') {
    const followed = await followRequest(client, result.requestId, {
      onInterrupt: 'cancel',
      start: result,
      hint: `${commandText} runs once approved (Ctrl-C cancels the request)`,
    });
    if ('interrupted' in followed) {
      if (followed.error) say(`interrupted; ${followed.error.message}; ${commandText} was not run`);
      else say(`interrupted: cancelled request ${result.requestId}; ${commandText} was not run`);
      return SIGNAL_EXIT[followed.interrupted];
    }
    result = followed.ended;
  }

  if (result.state !== 'APPROVED' || result.token === undefined) {
    say(`${outcomeLine(result)}; ${commandText} was not run`);
    return ctx.exitCodeFor(result);
  }
  try {
    await checkUnchanged(bound);
  } catch (e) {
    if (!(e instanceof CommandError)) throw e;
    say(e.message);
    return e.exitCode;
  }
  say(
    `approved (request ${result.requestId}${result.rule ? `, rule ${result.rule}` : ''}); running ${commandText}` +
      (result.credentialExpiresAt ? ` (credential expires at ${result.credentialExpiresAt.toISOString()})` : ''),
  );
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (ctx.passIdentity !== true) {
    delete env[ENV.cert];
    delete env[ENV.key];
  }
  Object.assign(env, {
    COUNTERSIGN_TOKEN: result.token,
    COUNTERSIGN_REQUEST_ID: result.requestId,
    COUNTERSIGN_PARAMETERS_JSON: parametersJsonOf(input),
  });
  return runChild(bound, env);
}

async function runChild(bound: BoundCommand, env: NodeJS.ProcessEnv): Promise<number> {
  const file = bound.binding.path;
  const child = spawn(executable(bound), bound.binding.args, { stdio: 'inherit', env, argv0: bound.argv0 });
  const fromTerminal = process.stdin.isTTY === true;
  const forwarders = FORWARDED.map((signal) => {
    const handler = () => {
      // The terminal already delivered Ctrl-C / Ctrl-\ to CMD; passing it on would deliver it twice.
      if (fromTerminal && (signal === 'SIGINT' || signal === 'SIGQUIT')) return;
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  const ended = await new Promise<
    { code: number | null; signal: NodeJS.Signals | null } | { error: NodeJS.ErrnoException }
  >((resolve) => {
    child.once('error', (error: NodeJS.ErrnoException) => resolve({ error }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  for (const [signal, handler] of forwarders) process.off(signal, handler);
  if ('error' in ended) {
    if (ended.error.code === 'ENOENT') {
      say(`${file}: command not found`);
      return RUN_EXIT.notFound;
    }
    if (ended.error.code === 'EACCES') {
      say(`${file}: permission denied (not executable)`);
      return RUN_EXIT.notExecutable;
    }
    throw new CountersignClientError('ERR_COMMAND', `could not run ${file}: ${ended.error.message}`);
  }
  if (ended.signal !== null) {
    // End the way CMD ended, so whoever runs us sees the same signal (not SIGUSR1: it starts Node's inspector).
    if (ended.signal !== 'SIGUSR1') process.kill(process.pid, ended.signal);
    return 128 + (constants.signals[ended.signal] ?? 0);
  }
  return ended.code ?? 1;
}
