// A real OIDC issuer for the token-exchange tests, served over HTTP on loopback:
// a discovery document and a JWKS (node:http + jose), keys that can rotate, and
// tokens shaped like GitHub Actions', GitLab CI's and Kubernetes projected
// service account tokens (claims as their documentation lists them). Also a
// stand-in for GitHub's token request endpoint (ACTIONS_ID_TOKEN_REQUEST_URL).
import { randomUUID } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type CryptoKey } from 'jose';

export interface IssuerKey {
  kid: string;
  alg: 'RS256' | 'ES256';
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function newIssuerKey(alg: 'RS256' | 'ES256' = 'RS256'): Promise<IssuerKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = randomUUID();
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export interface SignOptions {
  key?: IssuerKey;
  /** Claims that override the defaults (iss, aud, iat, nbf, exp, jti); undefined removes one. */
  lifetimeSeconds?: number;
}

export class LocalIssuer {
  /** Keys served in the JWKS. */
  published: IssuerKey[];
  signing: IssuerKey;
  jwksFetches = 0;
  /** Bearer tokens the GitHub stand-in accepts, and the claims of the tokens it hands out. */
  githubRequestToken = randomUUID();
  githubClaims: Record<string, unknown> = {};
  readonly githubRequests: URL[] = [];
  private down = false;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    first: IssuerKey,
  ) {
    this.published = [first];
    this.signing = first;
  }

  static async start(): Promise<LocalIssuer> {
    const first = await newIssuerKey();
    let issuer: LocalIssuer | undefined;
    const server = createServer((req, res) => issuer?.handle(req.url ?? '/', req.headers.authorization, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    issuer = new LocalIssuer(server, `http://127.0.0.1:${port}`, first);
    return issuer;
  }

  private handle(path: string, authorization: string | undefined, res: ServerResponse): void {
    if (this.down) {
      res.writeHead(503).end();
      return;
    }
    const url = new URL(path, this.url);
    const json = (status: number, body: unknown): void =>
      void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (url.pathname === '/.well-known/openid-configuration') {
      json(200, {
        issuer: this.url,
        jwks_uri: `${this.url}/jwks`,
        id_token_signing_alg_values_supported: ['RS256', 'ES256'],
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
      });
    } else if (url.pathname === '/jwks') {
      this.jwksFetches++;
      json(200, { keys: this.published.map((k) => k.publicJwk) });
    } else if (url.pathname === '/github-token') {
      this.githubRequests.push(url);
      if (authorization !== `Bearer ${this.githubRequestToken}`) return json(401, { message: 'bad bearer' });
      const audience = url.searchParams.get('audience');
      if (!audience) return json(400, { message: 'audience is required' });
      void this.sign({ ...this.githubClaims, aud: audience }).then((value) => json(200, { count: 1, value }));
    } else {
      json(404, {});
    }
  }

  /** Publishes a new key and signs with it from now on (the old one stays published until dropped). */
  async rotate(alg: 'RS256' | 'ES256' = 'ES256'): Promise<IssuerKey> {
    const key = await newIssuerKey(alg);
    this.published = [...this.published, key];
    this.signing = key;
    return key;
  }

  unpublish(kid: string): void {
    this.published = this.published.filter((k) => k.kid !== kid);
  }

  /** Answers 503 to everything (the issuer is unreachable) until brought back. */
  setDown(down: boolean): void {
    this.down = down;
  }

  /** A token with iss, iat, nbf, exp and jti filled in (overridable: a value of undefined removes the claim). */
  async sign(claims: Record<string, unknown>, options: SignOptions = {}): Promise<string> {
    const key = options.key ?? this.signing;
    const now = Math.floor(Date.now() / 1000);
    const full: Record<string, unknown> = {
      iss: this.url,
      iat: now,
      nbf: now - 5,
      exp: now + (options.lifetimeSeconds ?? 300),
      jti: randomUUID(),
      ...claims,
    };
    for (const [k, v] of Object.entries(full)) if (v === undefined) delete full[k];
    return new SignJWT(full).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}

/** Claims of a GitHub Actions job token (docs.github.com, "About security hardening with OpenID Connect"). */
export function githubClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const repository = (overrides.repository as string | undefined) ?? 'my-org/app';
  const environment = (overrides.environment as string | undefined) ?? 'prod';
  return {
    aud: 'countersign',
    sub: `repo:${repository}:environment:${environment}`,
    ref: 'refs/heads/main',
    ref_type: 'branch',
    sha: 'e2e0a5f0d3c2b1a0e2e0a5f0d3c2b1a0e2e0a5f0',
    repository,
    repository_id: '74',
    repository_owner: repository.split('/')[0],
    repository_owner_id: '65',
    repository_visibility: 'private',
    run_id: '5912345678',
    run_number: '42',
    run_attempt: '1',
    actor: 'alice',
    actor_id: '12',
    triggering_actor: 'alice',
    workflow: 'deploy',
    workflow_ref: `${repository}/.github/workflows/deploy.yml@refs/heads/main`,
    job_workflow_ref: `${repository}/.github/workflows/deploy.yml@refs/heads/main`,
    event_name: 'push',
    head_ref: '',
    base_ref: '',
    environment,
    runner_environment: 'github-hosted',
    ...overrides,
  };
}

/** Claims of a GitLab CI id_tokens: token (docs.gitlab.com, "ID token authentication"). */
export function gitlabClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    aud: 'countersign',
    sub: 'project_path:my-group/app:ref_type:branch:ref:main',
    namespace_id: '72',
    namespace_path: 'my-group',
    project_id: '20',
    project_path: 'my-group/app',
    user_id: '5',
    user_login: 'bob',
    user_email: 'bob@example.org',
    pipeline_id: '574',
    pipeline_source: 'push',
    job_id: '302',
    ref: 'main',
    ref_type: 'branch',
    ref_protected: 'true',
    environment: 'production',
    environment_protected: 'true',
    ...overrides,
  };
}

/** Claims of a Kubernetes projected service account token. */
export function k8sClaims(
  namespace = 'payments',
  serviceAccount = 'deployer',
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    aud: ['countersign'],
    sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
    'kubernetes.io': {
      namespace,
      pod: { name: `${serviceAccount}-7d9c8`, uid: randomUUID() },
      serviceaccount: { name: serviceAccount, uid: randomUUID() },
    },
    ...overrides,
  };
}
