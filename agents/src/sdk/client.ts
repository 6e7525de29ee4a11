// The requester's client: asks the broker for permission to run one operation
// over mTLS, authenticating the broker by its SPIFFE ID.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import {
  credentials,
  type Metadata,
  status as GrpcStatus,
  type ChannelCredentials,
  type ChannelOptions,
  type Interceptor,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  BrokerClient,
  ParametersError,
  parametersJsonOf,
  parseParametersJson,
  RequestState,
  type CancelRequestResponse,
  type Credential,
  type Duration,
  type GetRequestResponse,
  type JsonObject,
  type RedeemCredentialRequest,
  type RedeemCredentialResponse,
  type Request,
  type RequestOperationRequest,
  type RequestOperationResponse,
  type WatchRequestResponse,
} from '@countersign/proto';
import { CountersignClientError, fromServiceError, RequestNotApprovedError } from './errors.js';
import { devEnvHint, explainConnectionError } from './hints.js';
import { callMetadata } from './trace-context.js';
import { OidcIdentity, tokenSourceFor } from './oidc.js';
import { serverIdentityCheck, spiffeIdOfCertificate, trustDomainOf } from './server-identity.js';
import { readFileSync } from 'node:fs';
import {
  ENV,
  loadIdentity,
  resolveIdentity,
  type ClientIdentity,
  type IdentityFiles,
  type IdentityChoice,
} from './identity.js';
import {
  abortError,
  backoffMs,
  isRetryable,
  newClientRequestId,
  pause,
  withRetry,
  type RetryOptions,
} from './retry.js';
import type { IdentitySource } from './workload-api.js';

export interface ClientOptions extends Partial<ClientIdentity> {
  /** host:port of the broker. */
  address: string;
  /**
   * A rotating identity, e.g. WorkloadApiIdentity (SPIFFE Workload API), used
   * instead of certChainPem/keyPem/caPem: new connections use its newest SVID.
   */
  identitySource?: IdentitySource | undefined;
  /** Close identitySource when the client is closed. Default false. */
  ownsIdentitySource?: boolean | undefined;
  /**
   * Who the broker must be: an exact SPIFFE ID, or "spiffe://<trust domain>" for any
   * ID in that trust domain. Default: the trust domain of this client's own SVID.
   */
  serverId?: string | undefined;
  /** Per-call deadline in ms. Default 30 s. */
  timeoutMs?: number | undefined;
  /** How request(), collectCredential() and the polling of waitForApproval() retry UNAVAILABLE. */
  retry?: RetryOptions | undefined;
  /** grpc-js client interceptors (tracing, logging), run on every call. */
  interceptors?: Interceptor[] | undefined;
}

/** What connect() and fromEnv() take besides the identity. */
export interface ConnectOptions {
  address?: string | undefined;
  serverId?: string | undefined;
  timeoutMs?: number | undefined;
  retry?: RetryOptions | undefined;
  interceptors?: Interceptor[] | undefined;
}

export interface RequestOptions {
  /** Stops retrying (and the call in flight). */
  signal?: AbortSignal | undefined;
  /** Overrides the client's retry options for this call. */
  retry?: RetryOptions | undefined;
}

export interface WaitForApprovalOptions {
  /** Stops waiting; the wait then rejects with ERR_ABORTED. */
  signal?: AbortSignal | undefined;
  /** Withdraw the request in the broker when the signal aborts, with this reason (true: a generic one). */
  cancelOnAbort?: boolean | string | undefined;
  /** Every change seen: the current state first, then each vote, then the end. */
  onUpdate?: ((result: OperationResult) => void) | undefined;
  /**
   * "auto" (default): stream with WatchRequest, reconnecting with backoff, and poll
   * GetRequest instead when streams do not work (UNIMPLEMENTED, or three failed
   * streams in a row that delivered nothing). "watch" or "poll" forces one way.
   */
  mode?: 'auto' | 'watch' | 'poll' | undefined;
  /** Poll interval when the broker has not said one (it does). Default 2000 ms. */
  pollIntervalMs?: number | undefined;
  /** Told about each dropped stream or failed poll, and about the switch to polling. */
  onReconnect?: ((error: CountersignClientError, attempt: number) => void) | undefined;
  /** Longest pause between reconnects or retried polls (ms). Default 5000. */
  maxBackoffMs?: number | undefined;
}

/** The credential of an approved request. */
export interface IssuedCredential {
  /** Compact JWS; send it as `authorization: Bearer ...` or wherever the resource server wants it. */
  token: string;
  /** Its jti. */
  credentialId: string;
  expiresAt: Date | undefined;
  requestId: string;
}

/**
 * The parameters_json to send, checked with the broker's own rules
 * (@countersign/proto) so that what is approved is exactly what was given:
 * text goes as is, a value as its JSON.stringify, once it is known to be exact.
 */
function checkedParametersJson(input: Pick<OperationInput, 'parameters' | 'parametersJson'>): string {
  try {
    if (input.parametersJson !== undefined) {
      parseParametersJson(input.parametersJson);
      return input.parametersJson;
    }
    return parametersJsonOf(input.parameters ?? {});
  } catch (e) {
    if (!(e instanceof ParametersError)) throw e;
    const field = input.parametersJson !== undefined ? 'parameters_json' : 'parameters';
    throw new CountersignClientError('ERR_INVALID_FIELD', `${field}: ${e.message}`, undefined, { cause: e });
  }
}

export const END_STATES: readonly OperationState[] = ['APPROVED', 'DENIED', 'EXPIRED', 'CANCELLED'];

export interface OperationInput {
  operation: string;
  resource: string;
  /**
   * The exact arguments being authorized: plain objects and arrays, strings,
   * numbers within ±(2^53 - 1), booleans, null. Anything JSON.stringify would
   * drop or change (undefined, NaN, Infinity, a Date, ...) is refused, not sent.
   */
  parameters?: JsonObject | undefined;
  /** Parameters as JSON text, sent exactly as given after the broker's strict checks; overrides `parameters`. */
  parametersJson?: string | undefined;
  reason?: string | undefined;
  audience?: string | undefined;
  onBehalfOf?: string | undefined;
  ticket?: string | undefined;
  clientRequestId?: string | undefined;
  /** Wished credential lifetime in seconds. */
  ttlSeconds?: number | undefined;
}

export type OperationState = 'APPROVED' | 'DENIED' | 'PENDING_APPROVAL' | 'EXPIRED' | 'CANCELLED';

export interface OperationResult {
  state: OperationState;
  requestId: string;
  rule: string;
  message: string;
  /** Compact JWS, when APPROVED. */
  token?: string;
  credentialId?: string;
  credentialExpiresAt?: Date;
  /** When a pending request expires. */
  expiresAt?: Date;
  pollIntervalMs?: number;
  request?: Request;
}

const STATE_NAMES: Partial<Record<RequestState, OperationState>> = {
  [RequestState.REQUEST_STATE_APPROVED]: 'APPROVED',
  [RequestState.REQUEST_STATE_DENIED]: 'DENIED',
  [RequestState.REQUEST_STATE_PENDING_APPROVAL]: 'PENDING_APPROVAL',
  [RequestState.REQUEST_STATE_EXPIRED]: 'EXPIRED',
  [RequestState.REQUEST_STATE_CANCELLED]: 'CANCELLED',
};

export function stateName(state: RequestState): OperationState {
  const name = STATE_NAMES[state];
  if (name === undefined)
    throw new CountersignClientError('ERR_BROKER_PROTOCOL', `broker answered with unknown request state ${state}`);
  return name;
}

function checkKeyMatches(certChainPem: string, keyPem: string): void {
  let matches: boolean;
  try {
    matches = new X509Certificate(certChainPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch (e) {
    throw new CountersignClientError(
      'ERR_IDENTITY_INVALID',
      `cannot read the SVID certificate or key: ${(e as Error).message}`,
    );
  }
  if (!matches)
    throw new CountersignClientError(
      'ERR_IDENTITY_INVALID',
      'the private key does not belong to the SVID certificate (check --cert and --key)',
    );
}

/** The SPIFFE ID in an SVID chain's leaf, or undefined when it holds none. */
/** Why a client certificate cannot serve as an SVID: not a certificate at all, or one without a SPIFFE ID. */
function notAnSvid(certChainPem: string): string {
  const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(certChainPem)?.[0];
  if (leaf === undefined) {
    const kind = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(certChainPem)?.[1];
    return `the client certificate (--cert or COUNTERSIGN_CERT) is not a certificate: ${kind !== undefined ? `it holds a PEM ${kind}` : 'it holds no PEM CERTIFICATE block'}; give the SVID's certificate file${devEnvHint()}`;
  }
  try {
    new X509Certificate(leaf);
  } catch (e) {
    return `the client certificate (--cert or COUNTERSIGN_CERT) cannot be parsed as X.509: ${(e as Error).message}`;
  }
  return 'the client certificate (--cert or COUNTERSIGN_CERT) is a certificate but holds no SPIFFE ID (no spiffe:// URI SAN): it is not an X.509-SVID';
}

function ownSpiffeId(certChainPem: string): string | undefined {
  const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(certChainPem)?.[0];
  try {
    return leaf ? spiffeIdOfCertificate(Buffer.from(new X509Certificate(leaf).raw)) : undefined;
  } catch {
    return undefined;
  }
}

/** spiffe://<trust domain> of the first certificate in a bundle that carries a SPIFFE ID (a SPIFFE root does). */
function bundleTrustDomainId(caPem: string): string | undefined {
  for (const block of caPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
    try {
      const id = spiffeIdOfCertificate(Buffer.from(new X509Certificate(block).raw));
      if (id !== undefined) return `spiffe://${trustDomainOf(id)}`;
    } catch {
      // not a certificate we can read: try the next
    }
  }
  return undefined;
}

/** mTLS credentials with this SVID, the broker checked by its SPIFFE ID, and the channel options that go with them. */
function channelFor(
  identity: ClientIdentity,
  serverId: string,
): { creds: ChannelCredentials; channelOptions: ChannelOptions } {
  const creds = credentials.createSsl(
    Buffer.from(identity.caPem),
    Buffer.from(identity.keyPem),
    Buffer.from(identity.certChainPem),
    {
      checkServerIdentity: serverIdentityCheck(serverId),
    },
  );
  return {
    creds,
    channelOptions: {
      // SPIFFE authenticates by URI SAN, not host name; SNI gets the trust domain
      // rather than an IP address (which RFC 6066 forbids).
      'grpc.ssl_target_name_override': trustDomainOf(serverId),
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
      'grpc.keepalive_time_ms': 60_000,
    },
  };
}

/** Checks an SVID from files and returns the broker's expected SPIFFE ID (default: its own trust domain). */
function checkFileIdentity(options: Partial<ClientIdentity> & { serverId?: string | undefined }): {
  identity: ClientIdentity;
  serverId: string;
} {
  const { certChainPem, keyPem, caPem } = options;
  if (certChainPem === undefined || keyPem === undefined || caPem === undefined) {
    throw new CountersignClientError(
      'ERR_IDENTITY_MISSING',
      'no identity: give certChainPem, keyPem and caPem, or an identitySource (the Workload API)',
    );
  }
  const ownId = ownSpiffeId(certChainPem);
  if (ownId === undefined) throw new CountersignClientError('ERR_IDENTITY_INVALID', notAnSvid(certChainPem));
  checkKeyMatches(certChainPem, keyPem);
  return {
    identity: { certChainPem, keyPem, caPem },
    serverId: options.serverId ?? `spiffe://${trustDomainOf(ownId)}`,
  };
}

/** Credentials and channel options for any client of one broker (e.g. ApprovalsClient), from an SVID in files. */
export function brokerChannel(options: ClientOptions): { creds: ChannelCredentials; channelOptions: ChannelOptions } {
  const { identity, serverId } = checkFileIdentity(options);
  return channelFor(identity, serverId);
}

const durationMs = (d: Duration | undefined): number | undefined =>
  d === undefined ? undefined : d.seconds * 1000 + Math.floor(d.nanos / 1e6);

/** An OperationResult from a stored request (GetRequest, WatchRequest, CancelRequest). */
export function resultOfRequest(
  request: Request | undefined,
  credential?: Credential,
  pollInterval?: Duration,
): OperationResult {
  if (request === undefined)
    throw new CountersignClientError('ERR_BROKER_PROTOCOL', 'broker answered without the request');
  const result: OperationResult = {
    state: stateName(request.state),
    requestId: request.id,
    rule: request.rule,
    message: request.resolutionMessage,
    request,
  };
  if (request.expiresAt) result.expiresAt = request.expiresAt;
  if (credential) {
    result.token = credential.token;
    result.credentialId = credential.id;
    if (credential.expiresAt) result.credentialExpiresAt = credential.expiresAt;
  }
  const poll = durationMs(pollInterval);
  if (poll !== undefined) result.pollIntervalMs = poll;
  return result;
}

export interface WatchOptions {
  /** Stops watching (the request itself stays pending; cancel() withdraws it). */
  signal?: AbortSignal | undefined;
  /** Called before each reconnect after the stream dropped. */
  onReconnect?: ((error: CountersignClientError, attempt: number) => void) | undefined;
  /** Longest pause between reconnects (ms). Default 5000. */
  maxBackoffMs?: number | undefined;
}

/** Whether a failed stream should be reopened: the network or Redis failed, not the request. */
export function isTransient(e: CountersignClientError): boolean {
  if (e.code === 'ERR_BROKER_UNTRUSTED') return false;
  if (e.grpcStatus === GrpcStatus.UNAVAILABLE) return true;
  const fromBroker =
    e.code.startsWith('ERR_') && !['ERR_BROKER', 'ERR_BROKER_UNAVAILABLE', 'ERR_BROKER_TIMEOUT'].includes(e.code);
  return (
    !fromBroker &&
    (e.grpcStatus === GrpcStatus.UNKNOWN ||
      e.grpcStatus === GrpcStatus.INTERNAL ||
      e.grpcStatus === GrpcStatus.DEADLINE_EXCEEDED ||
      e.grpcStatus === GrpcStatus.CANCELLED)
  );
}

const callOptions = (o: ConnectOptions): Pick<ClientOptions, 'timeoutMs' | 'retry' | 'interceptors'> => ({
  timeoutMs: o.timeoutMs,
  retry: o.retry,
  interceptors: o.interceptors,
});

interface Channel {
  client: BrokerClient;
  /** The identity generation it was opened with. */
  generation: number;
  /** Calls in flight on it. */
  active: number;
  retired: boolean;
}

export class CountersignClient {
  private channel: Channel;
  private readonly timeoutMs: number;
  private readonly serverId: string;
  private readonly source: IdentitySource | undefined;

  constructor(private readonly options: ClientOptions) {
    this.source = options.identitySource;
    if (this.source !== undefined) {
      this.serverId = options.serverId ?? `spiffe://${trustDomainOf(this.source.spiffeId)}`;
    } else {
      this.serverId = checkFileIdentity(options).serverId;
    }
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.channel = this.open();
  }

  /** A connection presenting the current SVID. */
  private open(): Channel {
    const generation = this.source?.generation ?? 0;
    const identity = this.source
      ? this.source.identityFor(trustDomainOf(this.serverId))
      : (this.options as ClientIdentity);
    const { creds, channelOptions } = channelFor(identity, this.serverId);
    const clientOptions = this.options.interceptors
      ? { ...channelOptions, interceptors: this.options.interceptors }
      : channelOptions;
    return {
      client: new BrokerClient(this.options.address, creds, clientOptions),
      generation,
      active: 0,
      retired: false,
    };
  }

  /** The channel for a new call: after a rotation, a new one; the old one closes when its calls end. */
  private acquire(): Channel {
    if (this.source !== undefined && this.source.generation !== this.channel.generation) {
      const old = this.channel;
      old.retired = true;
      if (old.active === 0) old.client.close();
      this.channel = this.open();
    }
    this.channel.active++;
    return this.channel;
  }

  private release(channel: Channel): void {
    channel.active--;
    if (channel.retired && channel.active === 0) channel.client.close();
  }

  /** A client from files/env: COUNTERSIGN_ADDR, COUNTERSIGN_CERT, COUNTERSIGN_KEY, COUNTERSIGN_CA. */
  static fromEnv(
    overrides: IdentityFiles & ConnectOptions = {},
    env: NodeJS.ProcessEnv = process.env,
  ): CountersignClient {
    const address = overrides.address ?? env[ENV.addr];
    if (!address)
      throw new CountersignClientError(
        'ERR_ADDRESS_MISSING',
        `no broker address: set --addr or ${ENV.addr} (host:port)${devEnvHint()}`,
      );
    return new CountersignClient({
      ...callOptions(overrides),
      ...loadIdentity(overrides, env),
      address,
      serverId: overrides.serverId ?? env[ENV.serverId],
    });
  }

  /**
   * A client from files, or from the SPIFFE Workload API (--workload-api,
   * COUNTERSIGN_WORKLOAD_API, or SPIFFE_ENDPOINT_SOCKET when no files are named).
   */
  static async connect(
    overrides: IdentityChoice & ConnectOptions = {},
    env: NodeJS.ProcessEnv = process.env,
  ): Promise<CountersignClient> {
    const address = overrides.address ?? env[ENV.addr];
    if (!address)
      throw new CountersignClientError(
        'ERR_ADDRESS_MISSING',
        `no broker address: set --addr or ${ENV.addr} (host:port)${devEnvHint()}`,
      );
    const serverId = overrides.serverId ?? env[ENV.serverId];
    const oidcSpec = overrides.oidc ?? (env[ENV.oidc] || undefined);
    if (oidcSpec !== undefined)
      return CountersignClient.connectWithOidc(oidcSpec, { ...overrides, address, serverId }, env);
    const identity = await resolveIdentity(overrides, env);
    try {
      return 'source' in identity
        ? new CountersignClient({
            ...callOptions(overrides),
            address,
            serverId,
            identitySource: identity.source,
            ownsIdentitySource: true,
          })
        : new CountersignClient({ ...callOptions(overrides), ...identity, address, serverId });
    } catch (e) {
      if ('source' in identity) identity.source.close();
      throw e;
    }
  }

  /** --oidc: an SVID from the platform's OIDC token, renewed before it expires. */
  private static async connectWithOidc(
    spec: string,
    o: IdentityChoice & ConnectOptions & { address: string },
    env: NodeJS.ProcessEnv,
  ): Promise<CountersignClient> {
    if (o.certFile !== undefined || o.keyFile !== undefined || o.workloadApi) {
      throw new CountersignClientError(
        'ERR_USAGE',
        'use either --oidc or an SVID (--cert/--key, --workload-api), not both',
      );
    }
    const caFile = o.caFile ?? env[ENV.ca];
    if (!caFile) {
      throw new CountersignClientError(
        'ERR_IDENTITY_MISSING',
        `--oidc needs the broker's trust bundle to authenticate it before there is an SVID: set --ca or ${ENV.ca} (the bundle is public; commit it or keep it in a variable)`,
      );
    }
    let caPem: string;
    try {
      caPem = readFileSync(caFile, 'utf8');
    } catch (e) {
      throw new CountersignClientError(
        'ERR_IDENTITY_FILE',
        `trust bundle ${caFile} (--ca/${ENV.ca}): ${(e as Error).message}`,
      );
    }
    const serverId = o.serverId ?? bundleTrustDomainId(caPem);
    if (serverId === undefined) {
      throw new CountersignClientError(
        'ERR_USAGE',
        `--oidc: the bundle names no trust domain; set --server-id or ${ENV.serverId} (e.g. spiffe://example.org)`,
      );
    }
    const source = await OidcIdentity.start({
      address: o.address,
      caPem,
      serverId,
      issuer: o.oidcIssuer ?? (env[ENV.oidcIssuer] || undefined),
      token: tokenSourceFor(spec, { audience: o.oidcAudience ?? (env[ENV.oidcAudience] || undefined), env }),
      timeoutMs: o.timeoutMs,
    });
    return new CountersignClient({
      ...callOptions(o),
      address: o.address,
      serverId,
      identitySource: source,
      ownsIdentitySource: true,
    });
  }

  private deadline(): Date {
    return new Date(Date.now() + this.timeoutMs);
  }

  private unary<Req, Res>(
    pick: (
      c: BrokerClient,
    ) => (
      req: Req,
      md: Metadata,
      opts: { deadline: Date },
      cb: (e: ServiceError | null, r: Res) => void,
    ) => { cancel(): void },
    req: Req,
    signal?: AbortSignal,
  ): Promise<Res> {
    const channel = this.acquire();
    return new Promise((resolve, reject) => {
      const call = pick(channel.client).call(
        channel.client,
        req,
        callMetadata(),
        { deadline: this.deadline() },
        (e: ServiceError | null, r: Res) => {
          this.release(channel);
          signal?.removeEventListener('abort', onAbort);
          if (e) reject(explainConnectionError(fromServiceError(e), this.options.address));
          else resolve(r);
        },
      );
      function onAbort() {
        call.cancel();
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Asks once, as given (no idempotency key is added, nothing is retried).
   * request() is what most callers want.
   */
  async requestOperation(input: OperationInput, signal?: AbortSignal): Promise<OperationResult> {
    const req: RequestOperationRequest = {
      operation: input.operation,
      resource: input.resource,
      parametersJson: checkedParametersJson(input),
      reason: input.reason ?? '',
      onBehalfOf: input.onBehalfOf ?? '',
      clientRequestId: input.clientRequestId ?? '',
      requestedTtl: input.ttlSeconds === undefined ? undefined : { seconds: input.ttlSeconds, nanos: 0 },
      audience: input.audience ?? '',
      ticket: input.ticket ?? '',
    };
    const res = await this.unary<RequestOperationRequest, RequestOperationResponse>(
      (c) => c.requestOperation.bind(c),
      req,
      signal,
    );
    const result: OperationResult = {
      state: stateName(res.state),
      requestId: res.requestId,
      rule: res.rule,
      message: res.message,
    };
    if (res.credential) {
      result.token = res.credential.token;
      result.credentialId = res.credential.id;
      if (res.credential.expiresAt) result.credentialExpiresAt = res.credential.expiresAt;
    }
    if (res.expiresAt) result.expiresAt = res.expiresAt;
    const poll = durationMs(res.pollInterval);
    if (poll !== undefined) result.pollIntervalMs = poll;
    if (res.request) result.request = res.request;
    return result;
  }

  /**
   * Marks a credential as used, once (for resource servers that want single use).
   * A second redemption fails with code ERR_CREDENTIAL_ALREADY_REDEEMED, saying when and by whom.
   */
  async redeemCredential(
    token: string,
  ): Promise<{ credentialId: string; requestId: string; redeemedAt: Date | undefined }> {
    const res = await this.unary<RedeemCredentialRequest, RedeemCredentialResponse>((c) => c.redeemCredential.bind(c), {
      token,
    });
    return { credentialId: res.credentialId, requestId: res.requestId, redeemedAt: res.redeemedAt };
  }

  /** The raw GetRequest answer. */
  getRequest(requestId: string): Promise<GetRequestResponse> {
    return this.unary((c) => c.getRequest.bind(c), { requestId });
  }

  /**
   * Polls a request once: its state, and its credential once APPROVED. Polling
   * faster than pollIntervalMs while it is pending fails with ERR_SLOW_DOWN.
   */
  async get(requestId: string): Promise<OperationResult> {
    const res = await this.getRequest(requestId);
    return resultOfRequest(res.request, res.credential, res.pollInterval);
  }

  /**
   * The credential of an approved request. Every collection within the broker's
   * collection window returns the same credential; only the certificate that made
   * the request can collect it. Throws ERR_NOT_APPROVED when the request is not
   * (yet) approved.
   */
  async collect(requestId: string): Promise<OperationResult & { token: string }> {
    const result = await this.get(requestId);
    if (result.state !== 'APPROVED' || result.token === undefined) {
      throw new CountersignClientError(
        'ERR_NOT_APPROVED',
        `request ${requestId} is ${result.state}${result.message ? ` (${result.message})` : ''}, not APPROVED`,
      );
    }
    return result as OperationResult & { token: string };
  }

  /** Withdraws a pending request. */
  async cancel(requestId: string, reason = ''): Promise<OperationResult> {
    const res = await this.unary<{ requestId: string; reason: string }, CancelRequestResponse>(
      (c) => c.cancelRequest.bind(c),
      { requestId, reason },
    );
    return resultOfRequest(res.request);
  }

  /**
   * Asks for permission to run one operation. The idempotency key
   * (input.clientRequestId, or a fresh one) is the same on every retry, so a
   * retried request that the broker had already created comes back as that
   * request, never a second one. Retries UNAVAILABLE with backoff.
   * Resolves with any state: APPROVED (with the token), DENIED, or
   * PENDING_APPROVAL (then waitForApproval()).
   */
  request(input: OperationInput, options: RequestOptions = {}): Promise<OperationResult> {
    const keyed = { ...input, clientRequestId: input.clientRequestId ?? newClientRequestId() };
    return withRetry('RequestOperation', () => this.requestOperation(keyed, options.signal), {
      ...this.options.retry,
      ...options.retry,
      signal: options.signal,
    });
  }

  /**
   * Waits until a request ends and resolves with its end state: APPROVED (with
   * the token), DENIED, EXPIRED or CANCELLED. A denial is an answer, not an
   * error; broker errors other than UNAVAILABLE reject, and so does an abort
   * (ERR_ABORTED, after withdrawing the request when cancelOnAbort is set;
   * ERR_CANCEL_FAILED when that was refused, e.g. because it was approved meanwhile).
   */
  async waitForApproval(
    request: string | OperationResult,
    options: WaitForApprovalOptions = {},
  ): Promise<OperationResult> {
    const requestId = typeof request === 'string' ? request : request.requestId;
    const known = typeof request === 'string' ? undefined : request;
    if (known !== undefined && END_STATES.includes(known.state)) return known;
    const { signal } = options;
    try {
      const mode = options.mode ?? 'auto';
      if (mode !== 'poll') {
        const final = await this.waitByWatching(requestId, options, mode === 'auto');
        if (final !== undefined) return final;
      }
      if (signal?.aborted) throw abortError(signal, `waiting for request ${requestId}`);
      return await this.waitByPolling(requestId, options, known?.pollIntervalMs ?? options.pollIntervalMs ?? 2000);
    } catch (e) {
      if (signal?.aborted && options.cancelOnAbort) {
        const reason =
          typeof options.cancelOnAbort === 'string' ? options.cancelOnAbort : 'the requester stopped waiting';
        try {
          await withRetry('CancelRequest', () => this.cancel(requestId, reason), {
            ...this.options.retry,
            attempts: 3,
          });
        } catch (cancelError) {
          throw new CountersignClientError(
            'ERR_CANCEL_FAILED',
            `stopped waiting for request ${requestId}, but could not cancel it: ${(cancelError as Error).message}`,
            undefined,
            { cause: cancelError },
          );
        }
      }
      if (signal?.aborted) throw abortError(signal, `waiting for request ${requestId}`);
      throw e;
    }
  }

  /** The end state by WatchRequest, or undefined when streams do not work here and polling should take over. */
  private async waitByWatching(
    requestId: string,
    options: WaitForApprovalOptions,
    mayFallBack: boolean,
  ): Promise<OperationResult | undefined> {
    const stop = new AbortController();
    const outer = options.signal;
    const onOuterAbort = () => stop.abort(outer?.reason);
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    let failuresWithoutMessage = 0;
    let fellBack = false;
    let last: OperationResult | undefined;
    try {
      const stream = this.watch(requestId, {
        signal: stop.signal,
        maxBackoffMs: options.maxBackoffMs,
        onReconnect: (error, attempt) => {
          options.onReconnect?.(error, attempt);
          failuresWithoutMessage = last === undefined ? failuresWithoutMessage + 1 : 0;
          if (mayFallBack && failuresWithoutMessage >= 3) {
            fellBack = true;
            stop.abort();
          }
        },
      });
      for await (const update of stream) {
        last = update;
        options.onUpdate?.(update);
      }
    } catch (e) {
      if (!(mayFallBack && e instanceof CountersignClientError && e.grpcStatus === GrpcStatus.UNIMPLEMENTED)) throw e;
      fellBack = true;
    } finally {
      outer?.removeEventListener('abort', onOuterAbort);
    }
    if (outer?.aborted) throw abortError(outer, `waiting for request ${requestId}`);
    if (fellBack) {
      options.onReconnect?.(
        new CountersignClientError('ERR_WATCH_UNAVAILABLE', 'watching does not work here; polling instead'),
        0,
      );
      return undefined;
    }
    if (last === undefined || !END_STATES.includes(last.state)) {
      throw new CountersignClientError('ERR_WATCH_ENDED', `stopped watching request ${requestId} before it ended`);
    }
    return last;
  }

  /**
   * The end state by GetRequest, no faster than the broker's poll interval; a
   * "slow down" answer (ERR_SLOW_DOWN) doubles the interval, up to 60 s.
   */
  private async waitByPolling(
    requestId: string,
    options: WaitForApprovalOptions,
    initialIntervalMs: number,
  ): Promise<OperationResult> {
    const { signal } = options;
    let intervalMs = Math.max(1, initialIntervalMs);
    let failures = 0;
    let seen = '';
    for (;;) {
      await pause(intervalMs, signal);
      if (signal?.aborted) throw abortError(signal, `waiting for request ${requestId}`);
      let result: OperationResult;
      try {
        result = await this.get(requestId);
        failures = 0;
      } catch (e) {
        if (e instanceof CountersignClientError && e.code === 'ERR_SLOW_DOWN') {
          intervalMs = Math.min(60_000, intervalMs * 2);
          continue;
        }
        if (!isRetryable(e)) throw e;
        failures++;
        options.onReconnect?.(e, failures);
        await pause(backoffMs(failures, 250, options.maxBackoffMs ?? 5000), signal);
        continue;
      }
      if (result.pollIntervalMs !== undefined) intervalMs = Math.max(intervalMs, result.pollIntervalMs);
      const key = `${result.state}/${result.request?.votes.length ?? 0}`;
      if (key !== seen) {
        seen = key;
        options.onUpdate?.(result);
      }
      if (END_STATES.includes(result.state)) return result;
    }
  }

  /**
   * The credential of an approved request (from a result that carries it, or
   * collected from the broker, retrying UNAVAILABLE). Any other state throws a
   * RequestNotApprovedError: ERR_REQUEST_DENIED, ERR_REQUEST_EXPIRED,
   * ERR_REQUEST_CANCELLED or ERR_REQUEST_PENDING.
   */
  async collectCredential(request: string | OperationResult, options: RequestOptions = {}): Promise<IssuedCredential> {
    let result = typeof request === 'string' ? undefined : request;
    if (result === undefined || (result.state === 'APPROVED' && result.token === undefined)) {
      const requestId = typeof request === 'string' ? request : request.requestId;
      result = await withRetry(`collecting request ${requestId}`, () => this.get(requestId), {
        ...this.options.retry,
        ...options.retry,
        signal: options.signal,
      });
    }
    if (result.state !== 'APPROVED' || result.token === undefined) throw new RequestNotApprovedError(result);
    return {
      token: result.token,
      credentialId: result.credentialId ?? '',
      expiresAt: result.credentialExpiresAt,
      requestId: result.requestId,
    };
  }

  /**
   * Every state change of a request, starting with its current state, until it
   * ends (the last result carries the credential when APPROVED). A dropped
   * stream is reopened with backoff; the broker answers a reopened stream with
   * the current state, so an outcome reached meanwhile is not missed.
   */
  async *watch(requestId: string, options: WatchOptions = {}): AsyncGenerator<OperationResult, void, undefined> {
    const { signal } = options;
    let attempt = 0;
    let last = '';
    while (!signal?.aborted) {
      const channel = this.acquire();
      const stream = channel.client.watchRequest({ requestId }, callMetadata());
      const onAbort = () => stream.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        for await (const message of stream as AsyncIterable<WatchRequestResponse>) {
          attempt = 0;
          const result = resultOfRequest(message.request, message.credential);
          const seen = `${result.state}/${result.request?.votes.length ?? 0}/${result.token ?? ''}`;
          if (seen !== last) {
            last = seen;
            yield result;
          }
          if (result.state !== 'PENDING_APPROVAL') return;
        }
        // The stream ended without an end state (the broker is shutting down): reopen it, after a pause
        // so that something closing every stream at once cannot make this spin.
        if (signal?.aborted) return;
        attempt++;
        options.onReconnect?.(
          new CountersignClientError('ERR_WATCH_ENDED', 'the broker ended the stream before the request ended'),
          attempt,
        );
        await pause(backoffMs(attempt, 250, options.maxBackoffMs ?? 5000), signal);
      } catch (e) {
        if (signal?.aborted) return;
        const error = explainConnectionError(
          e instanceof CountersignClientError ? e : fromServiceError(e as ServiceError),
          this.options.address,
        );
        if (!isTransient(error)) throw error;
        attempt++;
        options.onReconnect?.(error, attempt);
        await pause(backoffMs(attempt, 250, options.maxBackoffMs ?? 5000), signal);
      } finally {
        signal?.removeEventListener('abort', onAbort);
        stream.cancel();
        this.release(channel);
      }
    }
  }

  /** The SPIFFE ID this client authenticates as (the current SVID's, with the Workload API). */
  get spiffeId(): string | undefined {
    if (this.source) return this.source.spiffeId;
    const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(
      this.options.certChainPem ?? '',
    )?.[0];
    return leaf ? spiffeIdOfCertificate(Buffer.from(new X509Certificate(leaf).raw)) : undefined;
  }

  close(): void {
    this.channel.retired = true;
    this.channel.client.close();
    if (this.options.ownsIdentitySource) this.source?.close();
  }
}
