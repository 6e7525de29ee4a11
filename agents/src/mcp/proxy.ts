// `countersign mcp-proxy`: sits between an AI agent (MCP client, on our stdio)
// and any MCP server (the upstream, a child process on its stdio). Tool calls
// the configuration names go to the broker first, with their exact arguments as
// the parameters, and reach the upstream only once approved, carrying the
// credential; denied, expired or failed ones are answered with a refusal the
// upstream never sees. Every other message passes through as it came.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { checkParametersValue, ParametersError, parametersDigest, VoteDecision } from '@countersign/proto';
import { END_STATES, type CountersignClient, type OperationResult } from '../sdk/client.js';
import { CountersignClientError } from '../sdk/errors.js';
import { MAX_MESSAGE_BYTES, MAX_MESSAGE_DEPTH, nestedDeeperThan, readLines } from './json-lines.js';
import { REQUEST_ID_META_KEY, type GuardedTool, type ProxyConfig } from './proxy-config.js';
import { TemplateError } from './template.js';

type JsonRpcId = string | number;
interface JsonRpcMessage {
  jsonrpc?: unknown;
  id?: JsonRpcId | null;
  method?: unknown;
  params?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface ProxyOptions {
  upstream: { command: string; args: string[]; env?: NodeJS.ProcessEnv | undefined };
  /** The human the agent acts for (on_behalf_of of every request). */
  onBehalfOf?: string | undefined;
  agentIn?: Readable;
  agentOut?: Writable;
  log?: (line: string) => void;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

const MIB = 1024 * 1024;
/** Upstream answers (tool results, resources) may be larger than what the client sends; still not without end. */
const UPSTREAM_MAX_MESSAGE_BYTES = 64 * MIB;

/** The id of a message, for an error answer (null when it has none to answer to). */
const idIn = (message: unknown): JsonRpcId | null =>
  isObject(message) && (typeof message.id === 'string' || typeof message.id === 'number') ? message.id : null;

function idOf(line: string): JsonRpcId | null {
  try {
    return idIn(JSON.parse(line));
  } catch {
    return null;
  }
}

/** What the agent is told when a call does not reach the upstream. */
function refusalText(tool: string, result: OperationResult): string {
  const why = result.message || 'no reason given';
  switch (result.state) {
    case 'DENIED':
      return (
        `Countersign refused this call to ${tool}: DENIED (request ${result.requestId}): ${why}. The tool was not called. ` +
        'This decision is final: do not retry it with different arguments, wording or smaller steps to get around it; tell the user.'
      );
    case 'EXPIRED':
      return `Countersign did not approve this call to ${tool}: EXPIRED (request ${result.requestId}): ${why}. The tool was not called. Ask again only if the user wants you to.`;
    case 'CANCELLED':
      return `Countersign did not approve this call to ${tool}: CANCELLED (request ${result.requestId}): ${why}. The tool was not called.`;
    default:
      return `Countersign has not approved this call to ${tool} yet (request ${result.requestId} is ${result.state}): ${why}. The tool was not called.`;
  }
}

export class McpGuardProxy {
  private readonly upstream: ChildProcess;
  private readonly agentOut: Writable;
  private readonly log: (line: string) => void;
  /** Gated calls waiting for approval, by JSON-RPC id, with the abort that withdraws them. */
  private readonly waiting = new Map<string, AbortController>();
  private readonly inFlight = new Set<Promise<void>>();
  /** Calls answered "still pending" (max_wait): the same tool and arguments called again join that request. */
  private readonly joinable = new Map<string, string>();
  private closing = false;
  private closed: Promise<void> | undefined;
  /** Resolves with the exit code the proxy should end with. */
  readonly done: Promise<number>;

  constructor(
    private readonly client: CountersignClient,
    private readonly config: ProxyConfig,
    private readonly options: ProxyOptions,
  ) {
    this.agentOut = options.agentOut ?? process.stdout;
    this.log = options.log ?? ((line) => void process.stderr.write(`countersign mcp-proxy: ${line}\n`));
    this.upstream = spawn(options.upstream.command, options.upstream.args, {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: options.upstream.env ?? process.env,
    });
    this.done = new Promise<number>((resolve) => {
      this.upstream.once('error', (e: NodeJS.ErrnoException) => {
        this.log(
          `cannot start the upstream ${options.upstream.command}: ${e.code === 'ENOENT' ? 'command not found' : e.message}`,
        );
        void this.shutdown('the upstream did not start').then(() => resolve(e.code === 'ENOENT' ? 127 : 1));
      });
      this.upstream.once('exit', (code, signal) => {
        if (!this.closing) this.log(`the upstream exited (${signal ?? `code ${code}`})`);
        void this.shutdown('the upstream MCP server exited').then(() => resolve(code ?? 1));
      });
    });
    this.upstream.stdin?.on('error', () => undefined); // an upstream that exits early; 'exit' reports it
    this.agentOut.on('error', (e: Error) => void this.shutdown(`cannot write to the MCP client (${e.message})`));
    readLines(this.upstream.stdout as Readable, UPSTREAM_MAX_MESSAGE_BYTES, {
      line: (line) => this.agentOut.write(`${line}\n`),
      tooLong: (bytes) =>
        this.log(
          `dropped a message of ${bytes} bytes from the upstream (more than ${UPSTREAM_MAX_MESSAGE_BYTES / MIB} MiB)`,
        ),
      end: () => undefined, // the upstream's 'exit' ends the proxy
    });
    readLines(options.agentIn ?? process.stdin, MAX_MESSAGE_BYTES, {
      line: (line) => this.fromAgentGuarded(line),
      tooLong: (bytes) => {
        this.log(`refused a message of more than ${MAX_MESSAGE_BYTES / MIB} MiB (${bytes} bytes) from the MCP client`);
        this.toAgent({
          jsonrpc: '2.0',
          id: null,
          error: {
            code: -32600,
            message: `Invalid Request: a message of more than ${MAX_MESSAGE_BYTES / MIB} MiB; the Countersign proxy did not forward it`,
          },
        });
      },
      end: () => void this.shutdown('the MCP client closed the connection'),
    });
  }

  /** Whatever a message holds, handling it never ends the proxy: an unexpected error answers it (when it has an id) and forwards nothing. */
  private fromAgentGuarded(line: string): void {
    try {
      this.fromAgent(line);
    } catch (e) {
      this.log(`could not handle a message from the MCP client: ${(e as Error).message}`);
      this.toAgent({
        jsonrpc: '2.0',
        id: idOf(line),
        error: {
          code: -32603,
          message: `Internal error: the Countersign proxy could not handle this message (${(e as Error).message}); it was not forwarded`,
        },
      });
    }
  }

  private toAgent(message: unknown): void {
    this.agentOut.write(`${JSON.stringify(message)}\n`);
  }

  private toUpstream(line: string): void {
    if (this.closing) return;
    this.upstream.stdin?.write(`${line}\n`);
  }

  private fromAgent(line: string): void {
    if (line.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      // What we cannot read we cannot check: the upstream never gets it.
      this.toAgent({
        jsonrpc: '2.0',
        id: null,
        error: { code: -32700, message: 'Parse error: the Countersign proxy could not read this message as JSON' },
      });
      return;
    }
    if (nestedDeeperThan(parsed, MAX_MESSAGE_DEPTH)) {
      const id = idIn(parsed);
      this.log(
        `refused a message nested deeper than ${MAX_MESSAGE_DEPTH} levels${id === null ? '' : ` (id ${JSON.stringify(id)})`}`,
      );
      this.toAgent({
        jsonrpc: '2.0',
        id,
        error: {
          code: -32600,
          message: `Invalid Request: nested deeper than ${MAX_MESSAGE_DEPTH} levels; the Countersign proxy did not forward it`,
        },
      });
      return;
    }
    const messages = Array.isArray(parsed) ? parsed : [parsed];
    const examined = messages.map((m) =>
      isObject(m) && m.method === 'tools/call'
        ? 'call'
        : isObject(m) && m.method === 'notifications/cancelled'
          ? 'cancel'
          : 'other',
    );
    if (examined.every((kind) => kind === 'other')) {
      this.toUpstream(line);
      return;
    }
    // A batch with tool calls is taken apart: each call is examined on its own.
    const rest: unknown[] = [];
    messages.forEach((m, i) => {
      if (examined[i] === 'call') this.toolCall(m as JsonRpcMessage);
      else if (examined[i] === 'cancel') this.cancelled(m as JsonRpcMessage);
      else rest.push(m);
    });
    for (const m of rest) this.toUpstream(JSON.stringify(m));
  }

  private cancelled(message: JsonRpcMessage): void {
    const id = message.params?.requestId;
    const waiting = id === undefined ? undefined : this.waiting.get(JSON.stringify(id));
    if (waiting) waiting.abort(new Error('the MCP client cancelled the call'));
    // The upstream never saw a call that still waits for approval; anything else it must hear about.
    else this.toUpstream(JSON.stringify(message));
  }

  private refuse(id: JsonRpcId, text: string): void {
    this.toAgent({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }], isError: true } });
  }

  private toolCall(message: JsonRpcMessage): void {
    const params = isObject(message.params) ? message.params : {};
    const tool = params.name;
    const id = message.id;
    // Re-serialized, not the line as received: the upstream reads exactly what was examined
    // (no duplicate keys or other parser differences between us and it).
    const rule = typeof tool === 'string' ? this.config.tools.find((t) => t.matches(tool)) : undefined;
    if (id === undefined || id === null || typeof tool !== 'string' || rule === undefined) {
      if (this.config.unmatched === 'refuse' && typeof tool === 'string' && id !== undefined && id !== null) {
        this.log(`refused ${tool}: not in the configuration (unmatched: refuse)`);
        this.refuse(
          id,
          `The Countersign proxy refuses calls to ${tool}: it is not one of the tools this proxy lets through.`,
        );
        return;
      }
      this.toUpstream(JSON.stringify(message));
      return;
    }
    const work = this.gate(id, tool, params, rule, message).catch((e: unknown) => {
      this.log(`internal error on ${tool}: ${(e as Error).message}`);
      this.refuse(
        id,
        `The Countersign proxy could not check this call to ${tool} (${(e as Error).message}). The tool was not called.`,
      );
    });
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  private async gate(
    id: JsonRpcId,
    tool: string,
    params: Record<string, unknown>,
    rule: GuardedTool,
    message: JsonRpcMessage,
  ): Promise<void> {
    const args = params.arguments === undefined ? {} : params.arguments;
    if (!isObject(args)) {
      this.refuse(id, `The Countersign proxy refuses this call to ${tool}: its arguments must be a JSON object.`);
      return;
    }
    // The broker's strict rules, before anything: what cannot be approved exactly is not asked for (nor forwarded).
    try {
      checkParametersValue(args);
    } catch (e) {
      if (!(e instanceof ParametersError)) throw e;
      this.log(`refused ${tool}: arguments ${e.message}`);
      this.refuse(
        id,
        `The Countersign proxy refuses this call to ${tool}: its arguments cannot be approved exactly (arguments ${e.message}). The tool was not called.`,
      );
      return;
    }
    let operation: string;
    let resource: string;
    let reason: string;
    try {
      const call = { tool, arguments: args };
      operation = rule.operation.render(call);
      resource = rule.resource.render(call);
      reason = rule.reason.render(call);
    } catch (e) {
      if (!(e instanceof TemplateError)) throw e;
      this.log(`refused ${tool}: ${e.message}`);
      this.refuse(id, `The Countersign proxy refuses this call to ${tool}: ${e.message}. The tool was not called.`);
      return;
    }
    const argumentName = rule.credential.argument;
    if (argumentName !== undefined && Object.hasOwn(args, argumentName)) {
      this.refuse(
        id,
        `The Countersign proxy refuses this call to ${tool}: the argument ${argumentName} is reserved for the approval credential.`,
      );
      return;
    }

    const idKey = JSON.stringify(id);
    const abort = new AbortController();
    this.waiting.set(idKey, abort);
    const progress = this.progressReporter(params);
    const joinKey = `${tool}\u0000${parametersDigest(args)}`;
    let result: OperationResult | undefined;
    try {
      const joined = this.joinable.get(joinKey);
      if (joined !== undefined) {
        this.joinable.delete(joinKey);
        this.log(`${tool}: called again with the same arguments; waiting on request ${joined}`);
        result = await this.client.get(joined).catch(() => undefined);
        if (result === undefined || result.state === 'PENDING_APPROVAL')
          result = { state: 'PENDING_APPROVAL', requestId: joined, rule: '', message: '' };
      } else {
        result = await this.client.request(
          {
            operation,
            resource,
            parameters: args,
            reason,
            audience: rule.audience,
            onBehalfOf: this.options.onBehalfOf,
          },
          { signal: abort.signal },
        );
      }
      if (!END_STATES.includes(result.state)) {
        this.log(`${tool}: request ${result.requestId} (${operation} on ${resource}) waits for approval`);
        progress.start(result);
        result = await this.waitForDecision(result, abort.signal, progress, joinKey);
        if (result === undefined) return;
      }
    } catch (e) {
      if (abort.signal.aborted) return; // the client cancelled the call (or we are closing): no answer is expected
      const error = e instanceof CountersignClientError ? `${e.message} [${e.code}]` : (e as Error).message;
      this.log(`${tool}: no approval: ${error}`);
      this.refuse(id, `Countersign could not approve this call to ${tool}: ${error}. The tool was not called.`);
      return;
    } finally {
      progress.stop();
      this.waiting.delete(idKey);
    }

    if (result.state !== 'APPROVED' || result.token === undefined) {
      this.log(`${tool}: ${result.state.toLowerCase()} (request ${result.requestId}): ${result.message}`);
      this.refuse(id, refusalText(tool, result));
      return;
    }
    this.log(`${tool}: approved (request ${result.requestId}); forwarding the call`);
    const meta = isObject(params._meta) ? params._meta : undefined;
    const forwarded: Record<string, unknown> = { ...params };
    if (argumentName !== undefined) forwarded.arguments = { ...args, [argumentName]: result.token };
    if (rule.credential.meta !== false)
      forwarded._meta = { ...meta, [rule.credential.meta]: result.token, [REQUEST_ID_META_KEY]: result.requestId };
    this.toUpstream(JSON.stringify({ ...message, params: forwarded }));
  }

  /**
   * The end state, or (with max_wait) a "still pending" answer after which the
   * same call joins this request; undefined when the call was cancelled.
   */
  private async waitForDecision(
    pending: OperationResult,
    abort: AbortSignal,
    progress: ReturnType<McpGuardProxy['progressReporter']>,
    joinKey: string,
  ): Promise<OperationResult | undefined> {
    const limit =
      this.config.maxWaitMs === undefined
        ? abort
        : AbortSignal.any([abort, AbortSignal.timeout(this.config.maxWaitMs)]);
    try {
      return await this.client.waitForApproval(pending, { signal: limit, onUpdate: (u) => progress.update(u) });
    } catch (e) {
      if (!(e instanceof CountersignClientError && e.code === 'ERR_ABORTED')) throw e;
      if (abort.aborted) {
        const why = abort.reason instanceof Error ? abort.reason.message : 'the call was abandoned';
        await this.client.cancel(pending.requestId, why).then(
          () => this.log(`cancelled request ${pending.requestId}: ${why}`),
          (cancelError: unknown) =>
            this.log(`could not cancel request ${pending.requestId}: ${(cancelError as Error).message}`),
        );
        throw e;
      }
      this.joinable.set(joinKey, pending.requestId);
      return {
        ...pending,
        state: 'PENDING_APPROVAL',
        message: `still waiting for approval after ${Math.round((this.config.maxWaitMs ?? 0) / 1000)}s; call the tool again with exactly the same arguments to keep waiting for this request`,
      };
    }
  }

  /** notifications/progress for a call whose client asked for progress (it keeps clients that reset their timeout on progress waiting). */
  private progressReporter(params: Record<string, unknown>) {
    const token = isObject(params._meta) ? params._meta.progressToken : undefined;
    let timer: NodeJS.Timeout | undefined;
    let step = 0;
    let latest: OperationResult | undefined;
    const send = (message: string) => {
      if (token === undefined) return;
      this.toAgent({
        jsonrpc: '2.0',
        method: 'notifications/progress',
        params: { progressToken: token, progress: ++step, message },
      });
    };
    const describe = (r: OperationResult) => {
      const req = r.request;
      const approvals = req ? req.votes.filter((v) => v.decision === VoteDecision.VOTE_DECISION_APPROVE).length : 0;
      return `waiting for approval (request ${r.requestId}): ${approvals} of ${req?.approvalsRequired ?? '?'} from ${req ? [...req.approvers, ...req.groups].join(', ') : 'the approvers'}`;
    };
    return {
      start: (r: OperationResult) => {
        latest = r;
        send(describe(r));
        if (token !== undefined)
          timer = setInterval(() => latest && send(describe(latest)), this.config.progressIntervalMs);
      },
      update: (r: OperationResult) => {
        latest = r;
        if (r.state === 'PENDING_APPROVAL') send(describe(r));
      },
      stop: () => clearInterval(timer),
    };
  }

  /**
   * Withdraws what still waits, closes the upstream's stdin, and waits for it to
   * exit (SIGTERM after 5 s). Every caller waits for the first shutdown to finish,
   * so nothing (the upstream's exit included) ends the process before the
   * withdrawals are done.
   */
  shutdown(why: string): Promise<void> {
    this.closed ??= this.close(why);
    return this.closed;
  }

  private async close(why: string): Promise<void> {
    this.closing = true;
    for (const abort of this.waiting.values()) abort.abort(new Error(why));
    await Promise.allSettled([...this.inFlight]);
    this.upstream.stdin?.end();
    if (this.upstream.exitCode === null && this.upstream.signalCode === null && this.upstream.pid !== undefined) {
      const exited = new Promise<void>((resolve) => this.upstream.once('exit', () => resolve()));
      const timer = setTimeout(() => this.upstream.kill('SIGTERM'), 5000);
      await exited;
      clearTimeout(timer);
    }
  }

  /** Passes a signal on to the upstream, after withdrawing what still waits. */
  async stop(signal: NodeJS.Signals): Promise<void> {
    if (this.upstream.exitCode === null && this.upstream.signalCode === null) this.upstream.kill(signal);
    await this.shutdown(`the proxy received ${signal}`);
  }
}
