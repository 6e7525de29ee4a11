// The requester's client: asks the broker for permission to run one operation
// over mTLS, authenticating the broker by its SPIFFE ID.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import {
  BrokerClient,
  RequestState,
  type GetRequestResponse,
  type JsonObject,
  type RedeemCredentialRequest,
  type RedeemCredentialResponse,
  type Request,
  type RequestOperationRequest,
  type RequestOperationResponse,
} from '@countersign/proto';
import { CountersignClientError, fromServiceError } from './errors.js';
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
    let ownId: string | undefined;
    if (this.source !== undefined) {
      ownId = this.source.spiffeId;
    } else {
      const { certChainPem, keyPem, caPem } = options;
      if (certChainPem === undefined || keyPem === undefined || caPem === undefined) {
        throw new CountersignClientError('ERR_IDENTITY_MISSING', 'no identity: give certChainPem, keyPem and caPem, or an identitySource (the Workload API)');
      }
      ownId = (() => {
        const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(certChainPem)?.[0];
        try {
          return leaf ? spiffeIdOfCertificate(Buffer.from(new X509Certificate(leaf).raw)) : undefined;
        } catch {
          return undefined;
        }
      })();
      if (ownId === undefined) throw new CountersignClientError('ERR_IDENTITY_INVALID', 'the client certificate holds no SPIFFE ID; is it an X.509-SVID?');
      checkKeyMatches(certChainPem, keyPem);
    }
    this.serverId = options.serverId ?? `spiffe://${trustDomainOf(ownId)}`;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.channel = this.open();
  }

  /** A connection presenting the current SVID. */
  private open(): Channel {
    const generation = this.source?.generation ?? 0;
    const identity = this.source ? this.source.identityFor(trustDomainOf(this.serverId)) : (this.options as ClientIdentity);
    const creds = credentials.createSsl(Buffer.from(identity.caPem), Buffer.from(identity.keyPem), Buffer.from(identity.certChainPem), {
      checkServerIdentity: serverIdentityCheck(this.serverId),
    });
    const client = new BrokerClient(this.options.address, creds, {
      // SPIFFE authenticates by URI SAN, not host name; SNI gets the trust domain
      // rather than an IP address (which RFC 6066 forbids).
      'grpc.ssl_target_name_override': trustDomainOf(this.serverId),
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
      'grpc.keepalive_time_ms': 60_000,
    });
    return { client, generation, active: 0, retired: false };
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
      pick(channel.client).call(channel.client, req, new Metadata(), { deadline: this.deadline() }, (e: ServiceError | null, r: Res) => {
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
    if (res.pollInterval) result.pollIntervalMs = res.pollInterval.seconds * 1000 + Math.floor(res.pollInterval.nanos / 1e6);
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

  getRequest(requestId: string): Promise<GetRequestResponse> {
    return this.unary((c) => c.getRequest, { requestId });
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
