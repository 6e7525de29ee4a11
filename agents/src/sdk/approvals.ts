// The approver's client: a person authenticated by their own SVID lists the
// requests they may decide and votes on them (the Approvals gRPC service).
import { type Metadata, type ServiceError } from '@grpc/grpc-js';
import {
  ApprovalsClient as GeneratedApprovalsClient,
  VoteDecision,
  type DecideResponse,
  type ListPendingResponse,
  type Request,
} from '@countersign/proto';
import { brokerChannel, type ClientOptions } from './client.js';
import { CountersignClientError, fromServiceError } from './errors.js';
import { devEnvHint, explainConnectionError } from './hints.js';
import { callMetadata } from './trace-context.js';
import { ENV, loadIdentity, type IdentityFiles } from './identity.js';

export interface DecideInput {
  requestId: string;
  decision: 'approve' | 'deny';
  reason?: string | undefined;
  /** For rules with step-up "confirm": the request's resource, typed again. */
  confirmResource?: string | undefined;
}

export interface ApprovalsClientOptions extends ClientOptions {
  /** "cli": votes are recorded as cast through the `countersign` CLI (others are "grpc"). */
  channel?: 'cli' | undefined;
}

export class ApprovalsClient {
  private readonly client: GeneratedApprovalsClient;
  private readonly timeoutMs: number;
  private readonly channel: 'cli' | undefined;
  private readonly address: string;

  constructor(options: ApprovalsClientOptions) {
    this.address = options.address;
    const { creds, channelOptions } = brokerChannel(options);
    this.client = new GeneratedApprovalsClient(options.address, creds, channelOptions);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.channel = options.channel;
  }

  /** A client from files/env: COUNTERSIGN_ADDR, COUNTERSIGN_CERT, COUNTERSIGN_KEY, COUNTERSIGN_CA. */
  static fromEnv(
    overrides: IdentityFiles & {
      address?: string | undefined;
      serverId?: string | undefined;
      channel?: 'cli' | undefined;
    } = {},
    env: NodeJS.ProcessEnv = process.env,
  ): ApprovalsClient {
    const address = overrides.address ?? env[ENV.addr];
    if (!address)
      throw new CountersignClientError(
        'ERR_ADDRESS_MISSING',
        `no broker address: set --addr or ${ENV.addr} (host:port)${devEnvHint()}`,
      );
    return new ApprovalsClient({
      ...loadIdentity(overrides, env),
      address,
      serverId: overrides.serverId ?? env[ENV.serverId],
      channel: overrides.channel,
    });
  }

  private unary<Req, Res>(
    method: (req: Req, md: Metadata, opts: { deadline: Date }, cb: (e: ServiceError | null, r: Res) => void) => unknown,
    req: Req,
  ): Promise<Res> {
    const metadata = callMetadata();
    if (this.channel !== undefined) metadata.set('countersign-channel', this.channel);
    return new Promise((resolve, reject) => {
      method.call(
        this.client,
        req,
        metadata,
        { deadline: new Date(Date.now() + this.timeoutMs) },
        (e: ServiceError | null, r: Res) =>
          e ? reject(explainConnectionError(fromServiceError(e), this.address)) : resolve(r),
      );
    });
  }

  /** Pending requests the caller may still vote on, soonest deadline first. */
  async listPending(): Promise<Request[]> {
    const res = await this.unary<Record<string, never>, ListPendingResponse>(
      this.client.listPending.bind(this.client),
      {},
    );
    return res.requests;
  }

  /** Casts the caller's vote; refusals (already resolved, self-approval, ...) throw with a stable code. */
  async decide(input: DecideInput): Promise<Request> {
    const res = await this.unary<
      { requestId: string; decision: VoteDecision; reason: string; confirmResource: string },
      DecideResponse
    >(this.client.decide.bind(this.client), {
      requestId: input.requestId,
      decision: input.decision === 'approve' ? VoteDecision.VOTE_DECISION_APPROVE : VoteDecision.VOTE_DECISION_DENY,
      reason: input.reason ?? '',
      confirmResource: input.confirmResource ?? '',
    });
    if (res.request === undefined)
      throw new CountersignClientError('ERR_BROKER_PROTOCOL', 'broker answered Decide without the request');
    return res.request;
  }

  close(): void {
    this.client.close();
  }
}
