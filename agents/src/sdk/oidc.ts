// An SVID without SPIRE: a hosted CI job or a pod trades the OIDC token its
// platform signed for a short-lived X.509-SVID (Identity.ExchangeToken), over
// TLS that authenticates only the broker. The key is made here, in memory, and
// never leaves the process; the broker sees a CSR. OidcIdentity renews the SVID
// before it expires with a fresh token, so long runs keep working.
import { readFile } from 'node:fs/promises';
import { webcrypto, createPrivateKey } from 'node:crypto';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { IdentityClient, type ExchangeTokenResponse } from '@countersign/proto';
import { serverIdentityCheck, trustDomainOf } from './server-identity.js';
import type { ClientIdentity } from './client-identity.js';
import { CountersignClientError, fromServiceError } from './errors.js';
import type { IdentitySource } from './workload-api.js';

/** Hands out a fresh OIDC token each time it is called. */
export type OidcTokenSource = () => Promise<string>;

/** Where a projected service account token is mounted by convention (docs/identity.md). */
export const K8S_TOKEN_PATH = '/var/run/secrets/countersign/token';
/** The GitLab CI variable the job's id_tokens: entry names by default. */
export const GITLAB_TOKEN_VARIABLE = 'COUNTERSIGN_ID_TOKEN';
export const DEFAULT_AUDIENCE = 'countersign';

/**
 * GitHub Actions: the job's token from ACTIONS_ID_TOKEN_REQUEST_URL with
 * ACTIONS_ID_TOKEN_REQUEST_TOKEN as bearer and &audience= (the workflow needs
 * `permissions: id-token: write`).
 */
export function githubToken(options: { audience?: string | undefined; env?: NodeJS.ProcessEnv } = {}): OidcTokenSource {
  const env = options.env ?? process.env;
  return async () => {
    const url = env.ACTIONS_ID_TOKEN_REQUEST_URL;
    const bearer = env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
    if (!url || !bearer) {
      throw new CountersignClientError(
        'ERR_OIDC_TOKEN_UNAVAILABLE',
        'no GitHub OIDC token: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are unset; give the job `permissions: id-token: write` (fork pull requests never get one)',
      );
    }
    const target = new URL(url);
    target.searchParams.set('audience', options.audience ?? DEFAULT_AUDIENCE);
    let res: Response;
    try {
      res = await fetch(target, {
        headers: { authorization: `Bearer ${bearer}`, accept: 'application/json' },
        signal: AbortSignal.timeout(30_000),
      });
    } catch (e) {
      throw new CountersignClientError(
        'ERR_OIDC_TOKEN_UNAVAILABLE',
        `GitHub's token endpoint could not be reached: ${(e as Error).message}`,
      );
    }
    const body = (await res.json().catch(() => ({}))) as { value?: unknown };
    if (!res.ok || typeof body.value !== 'string') {
      throw new CountersignClientError(
        'ERR_OIDC_TOKEN_UNAVAILABLE',
        `GitHub's token endpoint answered HTTP ${res.status} without a token`,
      );
    }
    return body.value;
  };
}

/** GitLab CI: the token an `id_tokens:` entry put in a variable (default COUNTERSIGN_ID_TOKEN). */
export function gitlabToken(options: { variable?: string | undefined; env?: NodeJS.ProcessEnv } = {}): OidcTokenSource {
  const env = options.env ?? process.env;
  const variable = options.variable ?? GITLAB_TOKEN_VARIABLE;
  return async () => {
    const token = env[variable];
    if (!token) {
      throw new CountersignClientError(
        'ERR_OIDC_TOKEN_UNAVAILABLE',
        `no GitLab ID token in ${variable}: add to the job\n  id_tokens:\n    ${variable}:\n      aud: countersign`,
      );
    }
    return token.trim();
  };
}

/** A token file, re-read on every use (Kubernetes rotates projected tokens in place). */
export function fileToken(path: string): OidcTokenSource {
  return async () => {
    try {
      return (await readFile(path, 'utf8')).trim();
    } catch (e) {
      throw new CountersignClientError(
        'ERR_OIDC_TOKEN_UNAVAILABLE',
        `cannot read the OIDC token file ${path}: ${(e as Error).message}`,
      );
    }
  };
}

/** `--oidc github|gitlab|k8s|file:PATH` as a token source. */
export function tokenSourceFor(
  spec: string,
  options: { audience?: string | undefined; env?: NodeJS.ProcessEnv } = {},
): OidcTokenSource {
  if (spec === 'github') return githubToken(options);
  if (spec === 'gitlab') return gitlabToken({ env: options.env });
  if (spec === 'k8s') return fileToken(K8S_TOKEN_PATH);
  if (spec.startsWith('file:') && spec.length > 5) return fileToken(spec.slice(5));
  throw new CountersignClientError(
    'ERR_USAGE',
    `--oidc ${JSON.stringify(spec)}: expected github, gitlab, k8s or file:PATH`,
  );
}

/** A new EC P-256 key (in memory) and a CSR signed by it. */
export async function newKeyAndCsr(): Promise<{ csrPem: string; keyPem: string }> {
  // Loaded here, by the one call that makes a CSR: every other use of the SDK and the CLI starts
  // without @peculiar/x509 and its ASN.1 stack (about 0.15 s of CPU per process).
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=countersign-oidc',
    keys,
    signingAlgorithm: algorithm,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })
    .export({ type: 'pkcs8', format: 'pem' })
    .toString();
  return { csrPem: csr.toString('pem'), keyPem };
}

export interface ExchangeOptions {
  /** host:port of the broker. */
  address: string;
  /** The broker's trust bundle (PEM): the only thing that authenticates it, since this call has no SVID yet. */
  caPem: string;
  /** Who the broker must be: a SPIFFE ID or spiffe://<trust domain>. */
  serverId: string;
  /** The configured issuer's name; default: the one whose URL is the token's iss. */
  issuer?: string | undefined;
  timeoutMs?: number | undefined;
}

export interface ExchangedSvid extends ClientIdentity {
  spiffeId: string;
  expiresAt: Date;
  issuer: string;
}

/**
 * One exchange: the token and a CSR for a new key (or for `key`, one from a previous exchange
 * of the same token: the broker then renews the SVID); returns the SVID with its key.
 */
export async function exchangeToken(
  token: string,
  options: ExchangeOptions & { key?: { csrPem: string; keyPem: string } | undefined },
): Promise<ExchangedSvid> {
  const { csrPem, keyPem } = options.key ?? (await newKeyAndCsr());
  const client = new IdentityClient(
    options.address,
    credentials.createSsl(Buffer.from(options.caPem), null, null, {
      checkServerIdentity: serverIdentityCheck(options.serverId),
    }),
    {
      'grpc.ssl_target_name_override': trustDomainOf(options.serverId),
    },
  );
  try {
    const res = await new Promise<ExchangeTokenResponse>((resolve, reject) =>
      client.exchangeToken(
        { token, csr: csrPem, issuer: options.issuer ?? '' },
        new Metadata(),
        { deadline: Date.now() + (options.timeoutMs ?? 30_000) },
        (e: ServiceError | null, r) => (e ? reject(fromServiceError(e)) : resolve(r)),
      ),
    );
    return {
      certChainPem: res.svidChain,
      keyPem,
      caPem: res.trustBundle || options.caPem,
      spiffeId: res.spiffeId,
      expiresAt: res.expiresAt ?? new Date(0),
      issuer: res.issuer,
    };
  } finally {
    client.close();
  }
}

export interface OidcIdentityOptions extends ExchangeOptions {
  token: OidcTokenSource;
  /** Renew when this share of the SVID's lifetime has passed. Default 0.5. */
  renewAt?: number | undefined;
  /** Told when a renewal fails (the current SVID stays in use until it expires; renewal is retried). */
  onRenewError?: ((error: Error) => void) | undefined;
}

/** An SVID from an OIDC token, renewed before it expires: an IdentitySource for CountersignClient. */
export class OidcIdentity implements IdentitySource {
  private current: ExchangedSvid;
  private gen = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly options: OidcIdentityOptions,
    first: ExchangedSvid,
  ) {
    this.current = first;
    this.schedule();
  }

  /** The key of this identity, kept for its life: a token the platform hands out again (GitLab, a pod's token file) renews with it. */
  private key!: { csrPem: string; keyPem: string };

  static async start(options: OidcIdentityOptions): Promise<OidcIdentity> {
    const key = await newKeyAndCsr();
    const identity = new OidcIdentity(options, await exchangeToken(await options.token(), { ...options, key }));
    identity.key = key;
    return identity;
  }

  private schedule(delayMs?: number): void {
    if (this.closed) return;
    const lifetime = this.current.expiresAt.getTime() - Date.now();
    const wait = delayMs ?? Math.max(1000, lifetime * (this.options.renewAt ?? 0.5));
    this.timer = setTimeout(() => void this.renew(), wait);
    this.timer.unref();
  }

  /** Exchanges a fresh token now. */
  async renew(): Promise<void> {
    try {
      this.current = await exchangeToken(await this.options.token(), { ...this.options, key: this.key });
      this.gen++;
      this.schedule();
    } catch (e) {
      this.options.onRenewError?.(e as Error);
      this.schedule(Math.max(1000, Math.min(30_000, (this.current.expiresAt.getTime() - Date.now()) / 4)));
    }
  }

  get generation(): number {
    return this.gen;
  }
  get spiffeId(): string {
    return this.current.spiffeId;
  }
  get expiresAt(): Date {
    return this.current.expiresAt;
  }
  identityFor(): ClientIdentity {
    return { certChainPem: this.current.certChainPem, keyPem: this.current.keyPem, caPem: this.current.caPem };
  }
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }
}

/** `identitySource: await oidc({ address, caPem, serverId, token: githubToken() })`. */
export const oidc = (options: OidcIdentityOptions): Promise<OidcIdentity> => OidcIdentity.start(options);
