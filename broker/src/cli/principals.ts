// `countersign-broker principals` (defined in principals-command.ts): what an operator does for approvers of the
// console. `link NAME` prints a one-time sign-in link (the way in without an
// identity provider, and the only way, besides the IdP, to enrol a passkey);
// `passkeys NAME` lists a person's passkeys and removes a lost one. Both are audited.
import { InvalidArgumentError } from 'commander';
import { createLocalJWKSet } from 'jose';
import { RedisAuditLog } from '../audit/audit-log.js';
import { KeyringHeadSigner } from '../audit/head.js';
import { systemClock } from '../clock.js';
import type { BrokerConfig } from '../config/config.js';
import { configuredPublicUrl, SignInLinks } from '../console/index.js';
import { CountersignError } from '../errors.js';
import { createLogger } from '../observability/logger.js';
import { Passkeys } from '../passkeys/passkeys.js';
import { PasskeyStore } from '../passkeys/store.js';
import { principalNameProblem } from '../policy/principal-name.js';
import { Principals } from '../policy/principals.js';
import { connectConfiguredRedis, durabilityOf } from '../config/redis.js';
import { Keys } from '../redis/keys.js';
import { configPath } from '../config/config.js';
import { loadConfigFrom, loadKeyring, type ConfigFlags } from './config-source.js';
import { out } from './output.js';

async function withConsole<T>(
  flags: ConfigFlags,
  name: string,
  use: (parts: {
    config: BrokerConfig;
    principal: string;
    store: PasskeyStore;
    keys: Keys;
    audit: RedisAuditLog;
    publicUrl: string;
  }) => Promise<T>,
): Promise<T> {
  const config = await loadConfigFrom(flags);
  if (!config.console.enabled)
    throw new CountersignError(
      'failed_precondition',
      'ERR_CONSOLE_OFF',
      'the approver console is off in this configuration (console.enabled)',
    );
  const principals = config.principals
    ? await Principals.load(configPath(config, config.principals.file))
    : Principals.empty();
  // Any spelling of the name finds the principal; links and passkeys use its one canonical name.
  const principal = principals.byName(name)?.name;
  if (principal === undefined) {
    const problem = principalNameProblem(name);
    throw new CountersignError(
      'invalid_argument',
      'ERR_NOT_AN_APPROVER',
      `${JSON.stringify(name)} is not a principal${problem === undefined ? '' : ` (it ${problem})`} (names: ${principals.principalNames().join(', ') || 'none'})`,
    );
  }
  const publicUrl = configuredPublicUrl(config);
  if (publicUrl === undefined)
    throw new CountersignError(
      'failed_precondition',
      'ERR_CONFIG_INVALID',
      'console.public_url is not set (and console.listen has port 0)',
    );
  const redis = await connectConfiguredRedis(config, 'countersign-principals-cli');
  try {
    const keys = new Keys(config.redis.prefix);
    // Appended like another replica would: the new head signed with the broker's key, the same durability waits.
    const keyring = await loadKeyring(config);
    const heads = new KeyringHeadSigner(
      keyring,
      config.credentials.issuer ?? `spiffe://${config.trust_domain}`,
      createLocalJWKSet(keyring.allPublicJwks()),
    );
    const durability = durabilityOf(config);
    const audit = new RedisAuditLog(redis, keys, systemClock, { heads, durability });
    return await use({ config, principal, store: new PasskeyStore(redis, keys), keys, audit, publicUrl });
  } finally {
    redis.disconnect();
  }
}

/** `principals link NAME`. */
export async function runPrincipalsLink(
  name: string,
  o: ConfigFlags & { request?: string; ttl?: number },
): Promise<void> {
  if (o.request !== undefined && !/^[A-Za-z0-9_-]{1,128}$/.test(o.request))
    throw new InvalidArgumentError(`--request: expected a request id, got ${JSON.stringify(o.request)}`);
  await withConsole(o, name, async ({ config, principal, store, keys, audit, publicUrl }) => {
    const links = new SignInLinks(
      { store, keys, audit, clock: systemClock },
      { publicUrl: () => publicUrl, ttlMs: config.console.sign_in_link_ttl },
    );
    const link = await links.issue({ principal, requestId: o.request, by: 'cli', method: 'link', ttlMs: o.ttl });
    out(link.url);
    process.stderr.write(
      `one-time sign-in link for ${principal}, valid until ${new Date(link.expiresAt).toISOString()}; give it to ${principal} only\n`,
    );
  });
}

/** `principals passkeys NAME`. */
export async function runPrincipalsPasskeys(name: string, o: ConfigFlags & { remove?: string }): Promise<void> {
  await withConsole(o, name, async ({ config, principal, store, keys, audit, publicUrl }) => {
    const url = new URL(publicUrl);
    const passkeys = new Passkeys(
      { store, keys, audit, clock: systemClock, logger: createLogger({ level: 'warn' }) },
      {
        origin: url.origin,
        rpId: url.hostname,
        rpName: 'Countersign',
        challengeTtlMs: config.console.challenge_ttl,
        maxPerPrincipal: config.console.max_passkeys,
      },
    );
    if (o.remove !== undefined) {
      if (!(await passkeys.remove(principal, o.remove, 'cli')))
        throw new CountersignError('not_found', 'ERR_PASSKEY_NOT_YOURS', `${principal} has no passkey ${o.remove}`);
      out(`removed passkey ${o.remove} of ${principal}`);
      return;
    }
    const list = await passkeys.list(principal);
    if (list.length === 0) out(`${principal} has no passkeys`);
    for (const p of list) {
      out(
        `${p.credential_id}  ${JSON.stringify(p.name)}  registered ${new Date(p.created_at).toISOString()}  ${p.last_used_at ? `last used ${new Date(p.last_used_at).toISOString()}` : 'never used'}  ${p.backed_up ? 'synced' : 'device-bound'}`,
      );
    }
  });
}
