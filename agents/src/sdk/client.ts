// The requester's client: asks the broker for permission to run one operation
// over mTLS, authenticating the broker by its SPIFFE ID.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { credentials, Metadata, status as GrpcStatus, type ChannelCredentials, type ChannelOptions, type ServiceError } from '@grpc/grpc-js';
import {
  BrokerClient,
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
import { CountersignClientError, fromServiceError } from './errors.js';
import { callMetadata } from './trace-context.js';
import { ENV, loadIdentity, resolveIdentity, type ClientIdentity, type IdentityFiles, type IdentityChoice } from './identity.js';
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
}

export interface OperationInput {
  operation: string;
  resource: string;
  /** The exact arguments being authorized. */
  parameters?: JsonObject | undefined;
  /** Parameters as JSON text (sent as is); overrides `parameters`. */
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
  if (name === undefined) throw new CountersignClientError('ERR_BROKER_PROTOCOL', `broker answered with unknown request state ${state}`);
  return name;
}

/** The URI SAN of a certificate, if it holds exactly one SPIFFE ID. */
export function spiffeIdOfCertificate(der: Buffer): string | undefined {
  const sans = new X509Certificate(der).subjectAltName ?? '';
  const uris = sans
    .split(/,\s*/)
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  return uris.length === 1 && uris[0]?.startsWith('spiffe://') ? uris[0] : undefined;
}

function trustDomainOf(id: string): string {
  return id.slice('spiffe://'.length).split('/')[0] ?? '';
}

/** grpc-js server check: the broker's certificate must carry the expected SPIFFE ID. */
function serverIdentityCheck(expected: string) {
  return (_host: string, cert: PeerCertificate): Error | undefined => {
    const id = cert.raw ? spiffeIdOfCertificate(cert.raw) : undefined;
    if (id === undefined) return new Error('broker certificate has no SPIFFE ID');
    const wantsTrustDomainOnly = trustDomainOf(expected) === expected.slice('spiffe://'.length);
    const ok = wantsTrustDomainOnly ? trustDomainOf(id) === trustDomainOf(expected) : id === expected;
    return ok ? undefined : new Error(`broker presented ${id}, expected ${expected}`);
  };
}

function checkKeyMatches(certChainPem: string, keyPem: string): void {
  let matches: boolean;
  try {
    matches = new X509Certificate(certChainPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch (e) {
    throw new CountersignClientError('ERR_IDENTITY_INVALID', `cannot read the SVID certificate or key: ${(e as Error).message}`);
  }
  if (!matches) throw new CountersignClientError('ERR_IDENTITY_INVALID', 'the private key does not belong to the SVID certificate (check --cert and --key)');
}

/** The SPIFFE ID in an SVID chain's leaf, or undefined when it holds none. */
function ownSpiffeId(certChainPem: string): string | undefined {
  const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(certChainPem)?.[0];
  try {
    return leaf ? spiffeIdOfCertificate(Buffer.from(new X509Certificate(leaf).raw)) : undefined;
  } catch {
    return undefined;
  }
}

/** mTLS credentials with this SVID, the broker checked by its SPIFFE ID, and the channel options that go with them. */
function channelFor(identity: ClientIdentity, serverId: string): { creds: ChannelCredentials; channelOptions: ChannelOptions } {
  const creds = credentials.createSsl(Buffer.from(identity.caPem), Buffer.from(identity.keyPem), Buffer.from(identity.certChainPem), {
    checkServerIdentity: serverIdentityCheck(serverId),
  });
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
function checkFileIdentity(options: Partial<ClientIdentity> & { serverId?: string | undefined }): { identity: ClientIdentity; serverId: string } {
  const { certChainPem, keyPem, caPem } = options;
  if (certChainPem === undefined || keyPem === undefined || caPem === undefined) {
    throw new CountersignClientError('ERR_IDENTITY_MISSING', 'no identity: give certChainPem, keyPem and caPem, or an identitySource (the Workload API)');
  }
  const ownId = ownSpiffeId(certChainPem);
  if (ownId === undefined) throw new CountersignClientError('ERR_IDENTITY_INVALID', 'the client certificate holds no SPIFFE ID; is it an X.509-SVID?');
  checkKeyMatches(certChainPem, keyPem);
  return { identity: { certChainPem, keyPem, caPem }, serverId: options.serverId ?? `spiffe://${trustDomainOf(ownId)}` };
}

/** Credentials and channel options for any client of one broker (e.g. ApprovalsClient), from an SVID in files. */
export function brokerChannel(options: ClientOptions): { creds: ChannelCredentials; channelOptions: ChannelOptions } {
  const { identity, serverId } = checkFileIdentity(options);
  return channelFor(identity, serverId);
}

const durationMs = (d: Duration | undefined): number | undefined => (d === undefined ? undefined : d.seconds * 1000 + Math.floor(d.nanos / 1e6));

/** An OperationResult from a stored request (GetRequest, WatchRequest, CancelRequest). */
export function resultOfRequest(request: Request | undefined, credential?: Credential, pollInterval?: Duration): OperationResult {
  if (request === undefined) throw new CountersignClientError('ERR_BROKER_PROTOCOL', 'broker answered without the request');
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
  if (e.grpcStatus === GrpcStatus.UNAVAILABLE) return true;
  const fromBroker = e.code.startsWith('ERR_') && !['ERR_BROKER', 'ERR_BROKER_UNAVAILABLE', 'ERR_BROKER_TIMEOUT'].includes(e.code);
  return (
    !fromBroker &&
    (e.grpcStatus === GrpcStatus.UNKNOWN || e.grpcStatus === GrpcStatus.INTERNAL || e.grpcStatus === GrpcStatus.DEADLINE_EXCEEDED || e.grpcStatus === GrpcStatus.CANCELLED)
  );
}

const pause = (ms: number, signal: AbortSignal | undefined) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
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
    const identity = this.source ? this.source.identityFor(trustDomainOf(this.serverId)) : (this.options as ClientIdentity);
    const { creds, channelOptions } = channelFor(identity, this.serverId);
    return { client: new BrokerClient(this.options.address, creds, channelOptions), generation, active: 0, retired: false };
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
  static fromEnv(overrides: IdentityFiles & { address?: string | undefined; serverId?: string | undefined } = {}, env: NodeJS.ProcessEnv = process.env): CountersignClient {
    const address = overrides.address ?? env[ENV.addr];
    if (!address) throw new CountersignClientError('ERR_ADDRESS_MISSING', `no broker address: set --addr or ${ENV.addr} (host:port)`);
    return new CountersignClient({ ...loadIdentity(overrides, env), address, serverId: overrides.serverId ?? env[ENV.serverId] });
  }

  /**
   * A client from files, or from the SPIFFE Workload API (--workload-api,
   * COUNTERSIGN_WORKLOAD_API, or SPIFFE_ENDPOINT_SOCKET when no files are named).
   */
  static async connect(
    overrides: IdentityChoice & { address?: string | undefined; serverId?: string | undefined } = {},
    env: NodeJS.ProcessEnv = process.env,
  ): Promise<CountersignClient> {
    const address = overrides.address ?? env[ENV.addr];
    if (!address) throw new CountersignClientError('ERR_ADDRESS_MISSING', `no broker address: set --addr or ${ENV.addr} (host:port)`);
    const serverId = overrides.serverId ?? env[ENV.serverId];
    const identity = await resolveIdentity(overrides, env);
    try {
      return 'source' in identity
        ? new CountersignClient({ address, serverId, identitySource: identity.source, ownsIdentitySource: true })
        : new CountersignClient({ ...identity, address, serverId });
    } catch (e) {
      if ('source' in identity) identity.source.close();
      throw e;
    }
  }

  private deadline(): Date {
    return new Date(Date.now() + this.timeoutMs);
  }

  private unary<Req, Res>(
    pick: (c: BrokerClient) => (req: Req, md: Metadata, opts: { deadline: Date }, cb: (e: ServiceError | null, r: Res) => void) => unknown,
    req: Req,
  ): Promise<Res> {
    const channel = this.acquire();
    return new Promise((resolve, reject) => {
      pick(channel.client).call(channel.client, req, callMetadata(), { deadline: this.deadline() }, (e: ServiceError | null, r: Res) => {
        this.release(channel);
        if (e) reject(fromServiceError(e));
        else resolve(r);
      });
    });
  }

  async requestOperation(input: OperationInput): Promise<OperationResult> {
    const req: RequestOperationRequest = {
      operation: input.operation,
      resource: input.resource,
      parametersJson: input.parametersJson ?? JSON.stringify(input.parameters ?? {}),
      reason: input.reason ?? '',
      onBehalfOf: input.onBehalfOf ?? '',
      clientRequestId: input.clientRequestId ?? '',
      requestedTtl: input.ttlSeconds === undefined ? undefined : { seconds: input.ttlSeconds, nanos: 0 },
      audience: input.audience ?? '',
      ticket: input.ticket ?? '',
    };
    const res = await this.unary<RequestOperationRequest, RequestOperationResponse>((c) => c.requestOperation, req);
    const result: OperationResult = { state: stateName(res.state), requestId: res.requestId, rule: res.rule, message: res.message };
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
  async redeemCredential(token: string): Promise<{ credentialId: string; requestId: string; redeemedAt: Date | undefined }> {
    const res = await this.unary<RedeemCredentialRequest, RedeemCredentialResponse>((c) => c.redeemCredential, { token });
    return { credentialId: res.credentialId, requestId: res.requestId, redeemedAt: res.redeemedAt };
  }

  /** The raw GetRequest answer. */
  getRequest(requestId: string): Promise<GetRequestResponse> {
    return this.unary((c) => c.getRequest, { requestId });
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
      throw new CountersignClientError('ERR_NOT_APPROVED', `request ${requestId} is ${result.state}${result.message ? ` (${result.message})` : ''}, not APPROVED`);
    }
    return result as OperationResult & { token: string };
  }

  /** Withdraws a pending request. */
  async cancel(requestId: string, reason = ''): Promise<OperationResult> {
    const res = await this.unary<{ requestId: string; reason: string }, CancelRequestResponse>((c) => c.cancelRequest, { requestId, reason });
    return resultOfRequest(res.request);
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
        // The stream ended without an end state (the broker is shutting down): reopen it.
      } catch (e) {
        if (signal?.aborted) return;
        const error = e instanceof CountersignClientError ? e : fromServiceError(e as ServiceError);
        if (!isTransient(error)) throw error;
        attempt++;
        options.onReconnect?.(error, attempt);
        await pause(Math.min(options.maxBackoffMs ?? 5000, 250 * 2 ** Math.min(attempt - 1, 5)), signal);
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
    const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(this.options.certChainPem ?? '')?.[0];
    return leaf ? spiffeIdOfCertificate(Buffer.from(new X509Certificate(leaf).raw)) : undefined;
  }

  close(): void {
    this.channel.retired = true;
    this.channel.client.close();
    if (this.options.ownsIdentitySource) this.source?.close();
  }
}
