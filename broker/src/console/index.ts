// The approver console as the composition root sees it: built from the config's
// `console:` section in two steps. open() binds the listener and builds what the
// approval workflow needs (passkey checks, request URLs, sign-in links); serve()
// starts the pages once the workflow exists.
import { readFile } from 'node:fs/promises';
import type { ApproverConsole as ApproverConsolePort } from '@countersign/approvers';
import type { AuditLog } from '../audit/audit-log.js';
import { relyingParty } from '../audit/passkey-assertion.js';
import type { Clock } from '../clock.js';
import { configPath, splitHostPort, type BrokerConfig } from '../config/config.js';
import { CountersignError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { Passkeys } from '../passkeys/passkeys.js';
import { PasskeyStore } from '../passkeys/store.js';
import type { Policy } from '../policy/policy.js';
import type { Principals } from '../policy/principals.js';
import type { Redis } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import type { RequestStore } from '../requests/store.js';
import type { BrokerApprovalWorkflow } from '../requests/workflow.js';
import { SignInLinks } from './links.js';
import { configuredPublicUrl } from './public-url.js';
import { OIDC_CALLBACK_PATH, OidcSignIn } from './oidc.js';
import { ConsoleRateLimiter } from './rate-limit.js';
import { ApproverConsole, listenConsole, type ConsoleListener } from './server.js';
import { SessionStore } from './sessions.js';

export { configuredPublicUrl } from './public-url.js';

export { CONSOLE_CHANNEL } from './server.js';
export { SignInLinks } from './links.js';

/** The environment variable that may hold the OIDC client secret (or console.oidc.client_secret_file). */
export const OIDC_SECRET_ENV = 'COUNTERSIGN_CONSOLE_OIDC_CLIENT_SECRET';

export interface OpenConsole {
  publicUrl: string;
  port: number | undefined;
  passkeys: Passkeys;
  links: SignInLinks;
  requestUrl: (requestId: string) => string;
  /** What Slack and other channels may use. */
  port_: ApproverConsolePort;
  /** Starts the pages (roles that serve: all, api). */
  serve(deps: { workflow: BrokerApprovalWorkflow; store: RequestStore; policy: () => Policy }): Promise<void>;
  close(): Promise<void>;
}

export interface ConsoleOpenDeps {
  redis: Redis;
  keys: Keys;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  directory: Principals;
  env: NodeJS.ProcessEnv;
}

async function oidcSecret(config: BrokerConfig, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const file = config.console.oidc?.client_secret_file;
  const fromEnv = env[OIDC_SECRET_ENV] || undefined;
  if (file !== undefined && fromEnv !== undefined) {
    throw new CountersignError(
      'invalid_argument',
      'ERR_CONFIG_INVALID',
      `console.oidc: ${OIDC_SECRET_ENV} and client_secret_file are both set; give the secret one way only`,
    );
  }
  if (file === undefined) return fromEnv;
  try {
    return (await readFile(configPath(config, file), 'utf8')).trim();
  } catch (e) {
    throw new CountersignError(
      'invalid_argument',
      'ERR_CONFIG_INVALID',
      `console.oidc.client_secret_file: cannot read ${file}: ${(e as Error).message}`,
    );
  }
}

/** Builds the console's parts; binds its listener when `listen` (roles all and api). */
export async function openConsole(
  config: BrokerConfig,
  deps: ConsoleOpenDeps,
  options: { listen: boolean },
): Promise<OpenConsole | undefined> {
  const c = config.console;
  if (!c.enabled) return undefined;
  let listener: ConsoleListener | undefined;
  if (options.listen) {
    const tls = c.tls
      ? {
          cert: await readFile(configPath(config, c.tls.cert_file), 'utf8'),
          key: await readFile(configPath(config, c.tls.key_file), 'utf8'),
        }
      : undefined;
    const { host, port } = splitHostPort(c.listen);
    listener = await listenConsole({ host, port, publicUrl: c.public_url, tls });
  }
  const publicUrl = listener?.publicUrl ?? configuredPublicUrl(config) ?? 'http://localhost';
  const store = new PasskeyStore(deps.redis, deps.keys);
  const rp = relyingParty(publicUrl);
  const passkeys = new Passkeys(
    { store, keys: deps.keys, audit: deps.audit, clock: deps.clock, logger: deps.logger },
    {
      origin: rp.origin,
      rpId: rp.rpId,
      rpName: 'Countersign',
      challengeTtlMs: c.challenge_ttl,
      maxPerPrincipal: c.max_passkeys,
    },
  );
  const links = new SignInLinks(
    { store, keys: deps.keys, audit: deps.audit, clock: deps.clock },
    { publicUrl: () => publicUrl, ttlMs: c.sign_in_link_ttl },
  );
  const requestUrl = (id: string) => `${publicUrl}/requests/${id}`;
  const oidc =
    c.oidc === undefined
      ? undefined
      : new OidcSignIn(
          { store, keys: deps.keys, clock: deps.clock, logger: deps.logger },
          {
            issuer: c.oidc.issuer,
            clientId: c.oidc.client_id,
            clientSecret: await oidcSecret(config, deps.env),
            scopes: c.oidc.scopes,
            claim: c.oidc.claim,
            displayName: c.oidc.display_name,
            redirectUri: () => `${publicUrl}${OIDC_CALLBACK_PATH}`,
          },
        );
  return {
    publicUrl,
    port: listener?.port,
    passkeys,
    links,
    requestUrl,
    port_: {
      requestUrl,
      signInLink: async (principal, requestId, issuedBy) => {
        if (issuedBy === 'slack' && !c.slack_sign_in_links) return undefined;
        return (
          await links.issue({
            principal,
            requestId,
            by: issuedBy,
            method: issuedBy === 'slack' ? 'slack_link' : 'link',
          })
        ).url;
      },
    },
    async serve({ workflow, store: requests, policy }) {
      if (listener === undefined) return;
      const sessions = new SessionStore(deps.redis, deps.keys, deps.clock, {
        idleTimeoutMs: c.session.idle_timeout,
        maxAgeMs: c.session.max_age,
      });
      const r = c.rate_limits;
      const limiter = new ConsoleRateLimiter(deps.redis, deps.keys, deps.clock, {
        perIp: { perMinute: r.per_ip.per_minute, burst: r.per_ip.burst },
        perPrincipal: { perMinute: r.per_principal.per_minute, burst: r.per_principal.burst },
        trustedProxies: r.trusted_proxies,
      });
      const pages = new ApproverConsole(
        {
          workflow,
          store: requests,
          directory: deps.directory,
          passkeys,
          links,
          sessions,
          oidc,
          limiter,
          audit: deps.audit,
          policy,
          clock: deps.clock,
          logger: deps.logger,
        },
        { publicUrl, enrollmentWindowMs: c.enrollment_window, sessionMaxAgeMs: c.session.max_age },
      );
      listener.serve(await pages.prepare());
    },
    close: async () => {
      await listener?.close();
    },
  };
}
