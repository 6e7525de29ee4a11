// Sign-in with the organisation's identity provider: OpenID Connect
// authorization code flow with PKCE, state and nonce, by openid-client. The
// transaction (verifier, state, nonce) waits in Redis under the SHA-256 of a
// short-lived cookie, so any replica can finish what another one started.
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import type { Clock } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import type { PasskeyStore } from '../passkeys/store.js';
import type { Keys } from '../redis/keys.js';
import { sha256 } from './sessions.js';

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret: string | undefined;
  scopes: string[];
  claim: 'email' | 'sub';
  displayName: string;
  /** The console's own callback URL (public_url + CALLBACK_PATH). */
  redirectUri: () => string;
}

export const OIDC_START_PATH = '/sign-in/oidc';
export const OIDC_CALLBACK_PATH = '/sign-in/oidc/callback';
/** How long a person has at the identity provider. */
export const OIDC_TRANSACTION_TTL_MS = 10 * 60_000;

interface Transaction {
  verifier: string;
  state: string;
  nonce: string;
  /** Where to go after signing in (a console path the server built). */
  next: string;
}

export type OidcResult =
  | { ok: true; subject: string; email: string | undefined; emailVerified: boolean; next: string }
  | { ok: false; code: 'ERR_OIDC_FAILED' | 'ERR_OIDC_TRANSACTION_UNKNOWN'; message: string };

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

export class OidcSignIn {
  private discovered: Promise<client.Configuration> | undefined;

  constructor(
    private readonly deps: { store: PasskeyStore; keys: Keys; clock: Clock; logger: Logger },
    readonly settings: OidcSettings,
  ) {}

  /** Discovery on first use (and again after a failure), so an identity provider outage never stops the broker. */
  private configuration(): Promise<client.Configuration> {
    if (this.discovered === undefined) {
      const issuer = new URL(this.settings.issuer);
      // Plain http only for an identity provider on this machine (tests, dev).
      const insecure = issuer.protocol === 'http:' && LOOPBACK.has(issuer.hostname);
      const { clientId, clientSecret } = this.settings;
      this.discovered = client
        .discovery(
          issuer,
          clientId,
          clientSecret,
          clientSecret === undefined ? client.None() : client.ClientSecretPost(clientSecret),
          {
            ...(insecure ? { execute: [client.allowInsecureRequests] } : {}),
            timeout: 10,
          },
        )
        .catch((e: unknown) => {
          this.discovered = undefined;
          throw e;
        });
    }
    return this.discovered;
  }

  /** Starts a sign-in: the transaction cookie's value and the URL to send the browser to. */
  async start(next: string): Promise<{ transaction: string; url: URL }> {
    const config = await this.configuration();
    const transaction = randomBytes(32).toString('base64url');
    const tx: Transaction = {
      verifier: client.randomPKCECodeVerifier(),
      state: client.randomState(),
      nonce: client.randomNonce(),
      next,
    };
    await this.deps.store.putOnce(
      this.deps.keys.consoleOidc(sha256(transaction)),
      JSON.stringify(tx),
      OIDC_TRANSACTION_TTL_MS,
    );
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: this.settings.redirectUri(),
      scope: this.settings.scopes.join(' '),
      code_challenge: await client.calculatePKCECodeChallenge(tx.verifier),
      code_challenge_method: 'S256',
      state: tx.state,
      nonce: tx.nonce,
    });
    return { transaction, url };
  }

  /** Finishes a sign-in at the callback: the ID token's subject and e-mail, checked by openid-client. */
  async finish(transaction: string | undefined, currentUrl: URL): Promise<OidcResult> {
    if (transaction === undefined || !/^[A-Za-z0-9_-]{43}$/.test(transaction)) {
      return {
        ok: false,
        code: 'ERR_OIDC_TRANSACTION_UNKNOWN',
        message: 'no sign-in was started in this browser (or it took longer than 10 minutes): start again',
      };
    }
    const hash = sha256(transaction);
    const taken = await this.deps.store.consumeOnce(
      this.deps.keys.consoleOidc(hash),
      this.deps.keys.consoleOidcUsed(hash),
      OIDC_TRANSACTION_TTL_MS,
    );
    if (taken.status !== 'taken')
      return {
        ok: false,
        code: 'ERR_OIDC_TRANSACTION_UNKNOWN',
        message: 'this sign-in was already finished, or took too long: start again',
      };
    const tx = JSON.parse(taken.value) as Transaction;
    try {
      const config = await this.configuration();
      const tokens = await client.authorizationCodeGrant(config, currentUrl, {
        pkceCodeVerifier: tx.verifier,
        expectedState: tx.state,
        expectedNonce: tx.nonce,
        idTokenExpected: true,
      });
      const claims = tokens.claims();
      if (claims === undefined)
        return { ok: false, code: 'ERR_OIDC_FAILED', message: 'the identity provider returned no ID token' };
      let email: unknown = claims.email;
      let verified: unknown = claims.email_verified;
      if (this.settings.claim === 'email' && email === undefined) {
        // Many providers keep scope claims out of the ID token: ask the UserInfo endpoint, for this same subject.
        const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
        email = info.email;
        verified = info.email_verified;
      }
      return {
        ok: true,
        subject: claims.sub,
        email: typeof email === 'string' ? email : undefined,
        emailVerified: verified === true,
        next: tx.next,
      };
    } catch (e) {
      this.deps.logger.info({ err: (e as Error).message, code: (e as { code?: string }).code }, 'OIDC sign-in failed');
      return {
        ok: false,
        code: 'ERR_OIDC_FAILED',
        message: `the identity provider's answer was refused: ${(e as Error).message}`,
      };
    }
  }
}
