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
  type Request,
  type RequestOperationRequest,
  type RequestOperationResponse,
  type WatchRequestResponse,
} from '@countersign/proto';
import { CountersignClientError, fromServiceError } from './errors.js';
import { ENV, loadIdentity, type ClientIdentity, type IdentityFiles } from './identity.js';

export interface ClientOptions extends ClientIdentity {
  /** host:port of the broker. */
  address: string;
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

/** Credentials and channel options shared by every client of one broker: mTLS with the caller's SVID, broker checked by SPIFFE ID. */
export function brokerChannel(options: ClientOptions): { creds: ChannelCredentials; channelOptions: ChannelOptions } {
  const ownId = (() => {
    const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(options.certChainPem)?.[0];
    try {
      return leaf ? spiffeIdOfCertificate(Buffer.from(new X509Certificate(leaf).raw)) : undefined;
    } catch {
      return undefined;
    }
  })();
  if (ownId === undefined) throw new CountersignClientError('ERR_IDENTITY_INVALID', 'the client certificate holds no SPIFFE ID; is it an X.509-SVID?');
  checkKeyMatches(options.certChainPem, options.keyPem);
  const serverId = options.serverId ?? `spiffe://${trustDomainOf(ownId)}`;
  const creds = credentials.createSsl(Buffer.from(options.caPem), Buffer.from(options.keyPem), Buffer.from(options.certChainPem), {
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

export class CountersignClient {
  private readonly client: BrokerClient;
  private readonly timeoutMs: number;

  constructor(options: ClientOptions) {
    const { creds, channelOptions } = brokerChannel(options);
    this.client = new BrokerClient(options.address, creds, channelOptions);
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** A client from files/env: COUNTERSIGN_ADDR, COUNTERSIGN_CERT, COUNTERSIGN_KEY, COUNTERSIGN_CA. */
  static fromEnv(overrides: IdentityFiles & { address?: string | undefined; serverId?: string | undefined } = {}, env: NodeJS.ProcessEnv = process.env): CountersignClient {
    const address = overrides.address ?? env[ENV.addr];
    if (!address) throw new CountersignClientError('ERR_ADDRESS_MISSING', `no broker address: set --addr or ${ENV.addr} (host:port)`);
    return new CountersignClient({ ...loadIdentity(overrides, env), address, serverId: overrides.serverId ?? env[ENV.serverId] });
  }

  private deadline(): Date {
    return new Date(Date.now() + this.timeoutMs);
  }

  private unary<Req, Res>(method: (req: Req, md: Metadata, opts: { deadline: Date }, cb: (e: ServiceError | null, r: Res) => void) => unknown, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(this.client, req, new Metadata(), { deadline: this.deadline() }, (e: ServiceError | null, r: Res) => (e ? reject(fromServiceError(e)) : resolve(r)));
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
    const res = await this.unary<RequestOperationRequest, RequestOperationResponse>(this.client.requestOperation, req);
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

  /** The raw GetRequest answer. */
  getRequest(requestId: string): Promise<GetRequestResponse> {
    return this.unary(this.client.getRequest, { requestId });
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
    const res = await this.unary<{ requestId: string; reason: string }, CancelRequestResponse>(this.client.cancelRequest, { requestId, reason });
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
      const stream = this.client.watchRequest({ requestId });
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
      }
    }
  }

  close(): void {
    this.client.close();
  }
}
