// The Countersign MCP server's tools: an AI agent asks for approval of one
// operation (countersign_request), follows it (countersign_status) and
// withdraws it (countersign_cancel). The agent's workload identity (its SVID)
// is the server's; the model chooses only what to ask for.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { checkParametersValue, ParametersError, VoteDecision, type JsonObject } from '@countersign/proto';
import { z } from 'zod';
import { END_STATES, type CountersignClient, type OperationResult } from '../sdk/client.js';
import { CountersignClientError } from '../sdk/errors.js';

export interface CountersignMcpOptions {
  /** The human this agent acts for (sent as on_behalf_of); set by whoever runs the server, never by the model. */
  onBehalfOf?: string | undefined;
  /** Default audience of the credentials. */
  audience?: string | undefined;
  /** How long countersign_request waits for a decision when the model does not say (seconds). Default 50. */
  defaultWaitSeconds?: number | undefined;
  /** While waiting, a progress notification this often (ms), when the client asked for progress. Default 10 s. */
  progressIntervalMs?: number | undefined;
  version?: string | undefined;
  /** The requests this server made, the only ones its tools follow and cancel (shared by the servers of one HTTP listener). */
  ownRequests?: OwnRequests | undefined;
}

/**
 * The ids of the requests this server made. The broker already limits a request
 * to the workload that made it, but other programs may share this SVID (a CI
 * job, another agent, a person with the CLI); the model must not follow, collect
 * or cancel their requests by guessing or being told an id.
 */
export class OwnRequests {
  private readonly ids = new Set<string>();
  constructor(private readonly limit = 10_000) {}

  add(id: string): void {
    this.ids.delete(id);
    this.ids.add(id);
    // The oldest go first; a request lives minutes to hours, so 10,000 is far more than any agent follows.
    for (const oldest of this.ids) {
      if (this.ids.size <= this.limit) break;
      this.ids.delete(oldest);
    }
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }
}

/** A tool's arguments: these and no others (an unknown one is refused, not dropped). */
function exactly<Shape extends z.ZodRawShape>(tool: string, shape: Shape) {
  const names = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') return undefined;
      const unknown = issue.keys.map((k) => JSON.stringify(k)).join(', ');
      return `unknown argument${issue.keys.length > 1 ? 's' : ''} ${unknown}; ${tool} takes ${names}`;
    },
  });
}

import { MAX_WAIT_SECONDS } from './limits.js';

export { MAX_WAIT_SECONDS };

const INSTRUCTIONS = `Countersign gates high-impact operations behind policy and human approval.
Before you run an operation the user's organisation protects (deploys, data exports, deleting or
changing production data, spending money), call countersign_request with the operation, the
resource, the exact parameters you will use, and an honest reason. The answer is final for that
exact request: APPROVED comes with a credential that authorizes exactly that operation with exactly
those parameters, for a few minutes; DENIED means a person or the policy said no.
Never retry a denied request with different wording, a different reason, or split into smaller
operations to get around it: report the denial to the user and stop.`;

const OPERATION = z
  .string()
  .regex(
    /^[A-Za-z0-9._:-]{1,128}$/,
    'operation must be 1-128 characters of letters, digits and . _ : - (e.g. "deploy", "db.drop_table")',
  );
const RESOURCE = z
  .string()
  .min(1, 'resource must not be empty')
  .max(512, 'resource must be at most 512 characters')
  .regex(/^[\x21-\x7e]+$/, 'resource must be printable ASCII without spaces (e.g. "prod/payments", "db/orders")');
/**
 * The parameters exactly as the client sent them, under the broker's strict
 * rules: checked before zod copies the object (a copy would drop a "__proto__"
 * member silently), so nothing is approved that differs from what was asked.
 */
const PARAMETERS = z.preprocess(
  (raw, ctx) => {
    if (raw === undefined) return raw;
    try {
      checkParametersValue(raw);
    } catch (e) {
      if (!(e instanceof ParametersError)) throw e;
      ctx.addIssue({ code: 'custom', message: `parameters: ${e.message}` });
    }
    return raw;
  },
  z.record(z.string(), z.unknown()),
);
const REQUEST_ID = z
  .string()
  .regex(
    /^req_[A-Za-z0-9_-]{1,60}$/,
    'request_id must be the id countersign_request returned, e.g. "req_CC91wDHreNIEOIVQ"',
  );
const WAIT = z
  .number()
  .int('wait_seconds must be a whole number')
  .min(0, 'wait_seconds must be 0 or more')
  .max(MAX_WAIT_SECONDS, `wait_seconds must be at most ${MAX_WAIT_SECONDS}`);

const OUTCOME_SHAPE = {
  state: z.enum(['APPROVED', 'DENIED', 'PENDING_APPROVAL', 'EXPIRED', 'CANCELLED']),
  request_id: z.string(),
  message: z.string().optional(),
  rule: z.string().optional(),
  token: z.string().optional().describe('the credential, when APPROVED'),
  credential_expires_at: z.string().optional(),
  expires_at: z.string().optional().describe('when a pending request expires'),
  approvers: z.array(z.string()).optional(),
  approvals: z.number().optional(),
  approvals_required: z.number().optional(),
};

/** A scalar field of outcomeOf's record as text, or the fallback when it is absent. */
function shown(value: unknown, fallback: string): string {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : fallback;
}

function outcomeOf(result: OperationResult): Record<string, unknown> {
  const r = result.request;
  return {
    state: result.state,
    request_id: result.requestId,
    message: result.message || undefined,
    rule: result.rule || undefined,
    token: result.token,
    credential_expires_at: result.credentialExpiresAt?.toISOString(),
    expires_at: result.state === 'PENDING_APPROVAL' ? (result.expiresAt ?? r?.expiresAt)?.toISOString() : undefined,
    approvers: r ? [...r.approvers, ...r.groups.map((g) => `group ${g}`)] : undefined,
    approvals: r ? r.votes.filter((v) => v.decision === VoteDecision.VOTE_DECISION_APPROVE).length : undefined,
    approvals_required: r?.approvalsRequired,
  };
}

/** What the model reads: the outcome, and what it may and may not do next. */
export function outcomeText(result: OperationResult): string {
  const outcome = outcomeOf(result);
  switch (result.state) {
    case 'APPROVED':
      return (
        `APPROVED (request ${result.requestId}). Credential, valid until ${shown(outcome.credential_expires_at, 'soon')}:\n${result.token ?? ''}\n` +
        'It authorizes exactly this operation on this resource with exactly these parameters, once approved; ' +
        'pass it to whatever performs the operation (e.g. as COUNTERSIGN_TOKEN or an "Authorization: Bearer" header). ' +
        'It is useless for anything else: a different operation or different parameters need a new request.'
      );
    case 'PENDING_APPROVAL':
      return (
        `PENDING_APPROVAL: request ${result.requestId} waits for ${shown(outcome.approvals_required, '?')} approval(s) from ` +
        `${((outcome.approvers as string[] | undefined) ?? []).join(', ') || 'the approvers'} (${shown(outcome.approvals, '0')} so far), ` +
        `until ${shown(outcome.expires_at, 'its deadline')}. Call countersign_status with request_id "${result.requestId}" ` +
        '(and wait_seconds) to wait for the decision. Do not make a new request for the same operation meanwhile, ' +
        'and do not perform the operation before it is approved.'
      );
    case 'DENIED':
      return (
        `DENIED (request ${result.requestId}): ${result.message || 'no reason given'}. This decision is final. ` +
        'Do not perform the operation, and do not ask again with different wording, a different reason or smaller steps ' +
        'to get around it. Tell the user it was denied and why.'
      );
    case 'EXPIRED':
      return (
        `EXPIRED (request ${result.requestId}): ${result.message || 'nobody approved it in time'}. The operation is not approved. ` +
        'Do not perform it. Ask again only if the user wants you to.'
      );
    case 'CANCELLED':
      return `CANCELLED (request ${result.requestId}): ${result.message || 'withdrawn'}. The operation is not approved; do not perform it.`;
  }
}

const answer = (result: OperationResult): CallToolResult => ({
  content: [{ type: 'text', text: outcomeText(result) }],
  structuredContent: outcomeOf(result),
});

const failure = (e: unknown): CallToolResult => {
  const text =
    e instanceof CountersignClientError
      ? `countersign: ${e.message} [${e.code}]${e.code === 'ERR_BROKER_UNAVAILABLE' ? '. The approval broker is unreachable; the operation is not approved.' : ''}`
      : `countersign: ${(e as Error).message}`;
  return { content: [{ type: 'text', text }], isError: true };
};

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/**
 * Waits up to waitSeconds for the request to end; returns the last state seen
 * (still PENDING_APPROVAL when time ran out). Sends progress notifications when
 * the client asked for them (which keeps clients that reset their timeout on
 * progress waiting).
 */
async function waitUpTo(
  client: CountersignClient,
  start: OperationResult | string,
  waitSeconds: number,
  extra: Extra,
  progressIntervalMs: number,
): Promise<OperationResult> {
  const requestId = typeof start === 'string' ? start : start.requestId;
  let latest = typeof start === 'string' ? undefined : start;
  if (waitSeconds === 0) {
    if (latest !== undefined) return latest;
    // The current state, from the first message of a watch (a stream is not subject to poll_interval).
    for await (const update of client.watch(requestId, { signal: extra.signal })) return update;
    throw new CountersignClientError('ERR_ABORTED', 'the client cancelled the call');
  }
  const token = extra._meta?.progressToken;
  const began = Date.now();
  const progress = (message: string) => {
    if (token === undefined) return;
    void extra
      .sendNotification({
        method: 'notifications/progress',
        params: {
          progressToken: token,
          progress: Math.max(1, Math.round((Date.now() - began) / 1000)),
          total: waitSeconds,
          message,
        },
      })
      .catch(() => undefined);
  };
  const timer = setInterval(() => progress(`waiting for approval of ${requestId}`), progressIntervalMs);
  const deadline = AbortSignal.any([AbortSignal.timeout(waitSeconds * 1000), extra.signal]);
  try {
    return await client.waitForApproval(latest ?? requestId, {
      signal: deadline,
      onUpdate: (update) => {
        latest = update;
        const o = outcomeOf(update);
        progress(`${update.state}: ${shown(o.approvals, '0')} of ${shown(o.approvals_required, '?')} approval(s)`);
      },
    });
  } catch (e) {
    if (
      e instanceof CountersignClientError &&
      e.code === 'ERR_ABORTED' &&
      !extra.signal.aborted &&
      latest !== undefined
    )
      return latest;
    throw e;
  } finally {
    clearInterval(timer);
  }
}

const notOurs = (requestId: string): CallToolResult =>
  failure(
    new CountersignClientError(
      'ERR_REQUEST_NOT_FOUND',
      `request ${requestId} was not made through this MCP server; it follows and cancels only its own requests`,
    ),
  );

export function createCountersignMcpServer(client: CountersignClient, options: CountersignMcpOptions = {}): McpServer {
  const server = new McpServer(
    { name: 'countersign', version: options.version ?? '0.1.0' },
    { instructions: INSTRUCTIONS },
  );
  const own = options.ownRequests ?? new OwnRequests();
  const defaultWait = options.defaultWaitSeconds ?? 50;
  const progressIntervalMs = options.progressIntervalMs ?? 10_000;

  server.registerTool(
    'countersign_request',
    {
      title: 'Ask for approval of one operation',
      description:
        'Ask Countersign for permission to perform ONE high-impact operation (a deploy, a data export, deleting or changing ' +
        'production data, ...) BEFORE you perform it. Policy decides at once (allow or deny) or asks people to approve. ' +
        'Give the exact parameters you will use: an approval covers exactly this operation, resource and parameters, nothing else. ' +
        'Give an honest reason; approvers read it. ' +
        'Answers: APPROVED with a short-lived credential (token) to pass to whatever performs the operation; ' +
        'PENDING_APPROVAL with a request_id (people have not decided yet: wait with countersign_status, do not ask again); ' +
        'DENIED (final: do NOT retry with different wording, a different reason or smaller steps; tell the user); ' +
        'EXPIRED (nobody decided in time). Never perform the operation unless the answer is APPROVED.',
      inputSchema: exactly('countersign_request', {
        operation: OPERATION.describe('what is to be done, e.g. "deploy", "db.drop_table", "payments.refund"'),
        resource: RESOURCE.describe('what it is done to, e.g. "prod/payments", "db/orders"'),
        parameters: PARAMETERS.optional().describe(
          'the exact arguments of the operation, as you will use them (a JSON object); default {}',
        ),
        reason: z
          .string()
          .min(1, 'reason must not be empty: say why, approvers read it')
          .max(2048, 'reason must be at most 2048 characters')
          .describe('why, in a sentence or two'),
        audience: z.string().max(512).optional().describe('who will accept the credential, when the operation says so'),
        wait_seconds: WAIT.optional().describe(
          `how long to wait for people to decide before answering PENDING_APPROVAL (0-${MAX_WAIT_SECONDS}; default ${defaultWait})`,
        ),
      }),
      outputSchema: OUTCOME_SHAPE,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
    },
    async (args, extra) => {
      try {
        const asked = await client.request(
          {
            operation: args.operation,
            resource: args.resource,
            parameters: (args.parameters ?? {}) as JsonObject,
            reason: args.reason,
            audience: args.audience ?? options.audience,
            onBehalfOf: options.onBehalfOf,
          },
          { signal: extra.signal },
        );
        own.add(asked.requestId);
        if (END_STATES.includes(asked.state)) return answer(asked);
        return answer(await waitUpTo(client, asked, args.wait_seconds ?? defaultWait, extra, progressIntervalMs));
      } catch (e) {
        return failure(e);
      }
    },
  );

  server.registerTool(
    'countersign_status',
    {
      title: 'Check or wait for an approval',
      description:
        'The state of a request made with countersign_request: PENDING_APPROVAL (still waiting for people), APPROVED (with the ' +
        'credential), DENIED (final: do not retry it in other words), EXPIRED or CANCELLED. With wait_seconds, waits up to that ' +
        'long for the decision. Use this, not a new countersign_request, to follow a pending request.',
      inputSchema: exactly('countersign_status', {
        request_id: REQUEST_ID.describe('the request_id countersign_request returned'),
        wait_seconds: WAIT.optional().describe(
          `how long to wait for a decision (0-${MAX_WAIT_SECONDS}; default 0: answer at once)`,
        ),
      }),
      outputSchema: OUTCOME_SHAPE,
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    async (args, extra) => {
      if (!own.has(args.request_id)) return notOurs(args.request_id);
      try {
        return answer(await waitUpTo(client, args.request_id, args.wait_seconds ?? 0, extra, progressIntervalMs));
      } catch (e) {
        return failure(e);
      }
    },
  );

  server.registerTool(
    'countersign_cancel',
    {
      title: 'Withdraw a pending request',
      description:
        'Withdraw a pending request made with countersign_request, e.g. because the user changed their mind or the operation is ' +
        'no longer needed. Approvers are told; it can no longer be approved.',
      inputSchema: exactly('countersign_cancel', {
        request_id: REQUEST_ID.describe('the request_id countersign_request returned'),
        reason: z
          .string()
          .max(2048, 'reason must be at most 2048 characters')
          .optional()
          .describe('why it is withdrawn'),
      }),
      outputSchema: OUTCOME_SHAPE,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    },
    async (args) => {
      if (!own.has(args.request_id)) return notOurs(args.request_id);
      try {
        return answer(await client.cancel(args.request_id, args.reason ?? 'withdrawn by the agent'));
      } catch (e) {
        return failure(e);
      }
    },
  );
  return server;
}
