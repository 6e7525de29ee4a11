// The requester's SVID from a SPIFFE Workload API (SPIRE agent, csi-driver-spiffe):
// fetched at start, kept current as the agent rotates it. The client opens new
// connections with the newest SVID; the broker validates each connection's SVID,
// so a rotated one is simply a new connection.
import {
  derCertificateToPem,
  WorkloadApiClient,
  WorkloadApiError,
  type BackoffOptions,
  type WorkloadX509Svid,
  type X509Context,
} from '@countersign/proto/workload-api';
import { CountersignClientError } from './errors.js';
import type { ClientIdentity } from './client-identity.js';

export interface WorkloadApiIdentityOptions {
  /** unix:///path or tcp://IP:port; default SPIFFE_ENDPOINT_SOCKET. */
  address?: string | undefined;
  /** Which SVID to use when the workload has several; default the first. */
  spiffeId?: string | undefined;
  /** How long to wait for the first SVID. Default 30 s. */
  timeoutMs?: number | undefined;
  env?: NodeJS.ProcessEnv;
  backoff?: BackoffOptions;
}

/** A rotating identity: the SDK asks it for the current material before each new connection. */
export interface IdentitySource {
  /** Bumps whenever the SVID or the bundles change. */
  readonly generation: number;
  /** The SPIFFE ID of the current SVID. */
  readonly spiffeId: string;
  /** Current SVID and key, and the bundle of the given trust domain (to authenticate the broker). */
  identityFor(serverTrustDomain: string): ClientIdentity;
  close(): void;
}

export class WorkloadApiIdentity implements IdentitySource {
  private context: X509Context;
  private gen = 0;
  private stop: () => void;

  private constructor(
    private readonly client: WorkloadApiClient,
    first: X509Context,
    private readonly wanted: string | undefined,
  ) {
    this.context = first;
    this.pick(first);
    this.stop = client.watchX509((context) => {
      if (context === this.context) return;
      try {
        this.pick(context);
      } catch {
        return; // keep the SVID we have; the next update may carry the wanted one again
      }
      this.context = context;
      this.gen++;
    });
  }

  /** Connects and waits for the first SVID. */
  static async connect(options: WorkloadApiIdentityOptions = {}): Promise<WorkloadApiIdentity> {
    let client: WorkloadApiClient;
    try {
      client = new WorkloadApiClient({
        address: options.address,
        env: options.env ?? process.env,
        ...(options.backoff ? { backoff: options.backoff } : {}),
      });
    } catch (e) {
      throw new CountersignClientError('ERR_IDENTITY_MISSING', (e as Error).message, undefined, { cause: e });
    }
    try {
      const first = await client.fetchX509Context(options.timeoutMs ?? 30_000);
      return new WorkloadApiIdentity(client, first, options.spiffeId);
    } catch (e) {
      client.close();
      if (e instanceof CountersignClientError) throw e;
      const code =
        e instanceof WorkloadApiError && e.code === 'ERR_WORKLOAD_API_TIMEOUT'
          ? 'ERR_WORKLOAD_API_UNAVAILABLE'
          : 'ERR_IDENTITY_INVALID';
      throw new CountersignClientError(code, (e as Error).message, undefined, { cause: e });
    }
  }

  private pick(context: X509Context): WorkloadX509Svid {
    const svid = this.wanted === undefined ? context.svids[0] : context.svids.find((s) => s.spiffeId === this.wanted);
    if (svid === undefined) {
      throw new CountersignClientError(
        'ERR_IDENTITY_MISSING',
        `the Workload API offers no SVID for ${this.wanted} (it offers ${context.svids.map((s) => s.spiffeId).join(', ')})`,
      );
    }
    return svid;
  }

  get generation(): number {
    return this.gen;
  }

  /** The SVID in use now. */
  get svid(): WorkloadX509Svid {
    return this.pick(this.context);
  }

  get spiffeId(): string {
    return this.svid.spiffeId;
  }

  identityFor(serverTrustDomain: string): ClientIdentity {
    const svid = this.svid;
    const bundle = this.context.bundles.get(serverTrustDomain);
    if (bundle === undefined || bundle.length === 0) {
      throw new CountersignClientError(
        'ERR_IDENTITY_MISSING',
        `the Workload API sent no bundle for trust domain ${serverTrustDomain}, so the broker cannot be authenticated (federate with it, or set --server-id)`,
      );
    }
    // Only the broker's own trust domain's authorities: another trust domain's CA must not vouch for it.
    return { certChainPem: svid.certChainPem, keyPem: svid.keyPem, caPem: bundle.map(derCertificateToPem).join('') };
  }

  close(): void {
    this.stop();
    this.client.close();
  }
}
