// `countersign-broker dev`: a working broker in one command, for trying it out.
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { importJWK, SignJWT, type JWK } from 'jose';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { startBroker, type RunningBroker } from '../app.js';
import { parseConfig } from '../config/config.js';
import { findDevRedis } from '../dev/redis.js';
import {
  DEV_OIDC_ISSUER,
  devConfig,
  devRedisPrefix,
  ensureDevTrustDomain,
  updateDevConfig,
  type DevConfigOwned,
} from '../dev/trust-domain.js';
import { createLogger } from '../observability/logger.js';
import { verifyRedisTrail } from './audit.js';
import type { LOG_FORMATS } from './constants.js';
import { explainListenError } from './listen-errors.js';
import { out } from './output.js';
import { closeOnSignal, reloadPolicyOnHangup } from './serve.js';

export interface DevOptions {
  dir: string;
  trustDomain: string;
  grpcPort: number;
  httpPort: number;
  consolePort: number;
  /** auto: readable lines on a terminal, JSON otherwise. */
  logFormat?: (typeof LOG_FORMATS)[number];
}

/** How long the dev banner's sign-in links work (they are single use; `principals link NAME` prints more). */
export const DEV_LINK_TTL_MS = 12 * 3600_000;

const envFile = (vars: Record<string, string>): string =>
  `${Object.entries(vars)
    .map(([k, v]) => `export ${k}=${JSON.stringify(v)}`)
    .join('\n')}\n`;

export async function runDev(options: DevOptions): Promise<void> {
  const td = await ensureDevTrustDomain({ dir: options.dir, trustDomain: options.trustDomain });
  const redis = await findDevRedis({ env: process.env, dir: td.dir, log: (line) => out(line) });
  // config.yaml is the user's once written: later starts update only what dev mode owns.
  const configFile = join(td.dir, 'config.yaml');
  const owned: DevConfigOwned = {
    trustDomain: td.trustDomain,
    grpcPort: options.grpcPort,
    httpPort: options.httpPort,
    consolePort: options.consolePort,
    redisUrl: redis.url,
    redisPrefix: devRedisPrefix(await readFile(td.caFile, 'utf8')),
  };
  const configExisted = existsSync(configFile);
  const { text: configText, added } = configExisted
    ? updateDevConfig(await readFile(configFile, 'utf8'), owned)
    : { text: devConfig(owned), added: [] };
  const config = parseConfig(configText, configFile);
  await writeFile(configFile, configText);
  const pretty = options.logFormat === 'pretty' || ((options.logFormat ?? 'auto') === 'auto' && process.stderr.isTTY);
  const logger = createLogger({ level: config.log_level, pretty });
  const broker = await startBroker(config, { logger }).catch(async (e: unknown) => {
    await redis.stop();
    throw explainListenError(
      e,
      {
        [options.grpcPort]: '--grpc-port (0 picks a free one)',
        [options.httpPort]: '--http-port (0 picks a free one)',
        [options.consolePort]: '--console-port (0 picks a free one)',
      },
      'another broker (countersign-broker dev or npm start)',
    );
  });
  const trail = await verifyRedisTrail(config).catch((e: unknown) => ({ error: (e as Error).message }));
  closeOnSignal(async () => {
    await broker.close();
    await redis.stop();
  });
  reloadPolicyOnHangup(broker);

  const addr = `127.0.0.1:${broker.grpcPort}`;
  const envDir = join(td.dir, 'env');
  await mkdir(envDir, { recursive: true });
  for (const who of [td.workload, ...td.approvers]) {
    await writeFile(
      join(envDir, `${who.name}.env`),
      envFile({
        COUNTERSIGN_ADDR: addr,
        COUNTERSIGN_CA: td.caFile,
        COUNTERSIGN_CERT: who.certFile,
        COUNTERSIGN_KEY: who.keyFile,
        COUNTERSIGN_JWKS_URL: `http://127.0.0.1:${broker.httpPort}/.well-known/jwks.json`,
      }),
    );
  }
  const shown = relative(process.cwd(), td.dir) || '.';
  out('');
  out(`Countersign dev broker is running (Ctrl-C stops it).`);
  out(
    `  trust domain  ${td.trustDomain}  (files in ${shown}${td.created.length > 0 ? `, created ${td.created.length} now` : ', reused'})`,
  );
  out(`  gRPC (mTLS)   ${addr}  as ${broker.spiffeId}`);
  out(`  HTTP          http://127.0.0.1:${broker.httpPort}  (/.well-known/jwks.json, /healthz, /readyz)`);
  out(
    `  Redis         ${redis.url}  (${redis.origin === 'started' ? 'started for you' : redis.origin === 'REDIS_URL' ? 'from REDIS_URL' : 'found locally'}, prefix ${config.redis.prefix})`,
  );
  out(
    `  policy        ${relative(process.cwd(), td.policyFile)}  (edit it: a valid change applies on save; see docs/policy.md)`,
  );
  out(
    `  config        ${relative(process.cwd(), configFile)}  (${configExisted ? 'yours, kept: ' : 'written once, then yours: '}dev mode updates only the listen ports, the console's localhost URL, redis.url and redis.prefix${added.length > 0 ? `; added the ${added.join(', ')} section` : ''})`,
  );
  out(`  logs          ${pretty ? 'below, readable' : 'stderr, JSON lines'} (--log-format pretty|json)`);
  out(
    broker.slackMode === undefined
      ? '  Slack         off  (set SLACK_BOT_TOKEN and SLACK_APP_TOKEN or SLACK_SIGNING_SECRET to turn it on; see docs/slack.md)'
      : `  Slack         on, ${broker.slackMode === 'socket' ? 'Socket Mode' : `HTTP at http://127.0.0.1:${broker.httpPort}/slack/events`}  (approvers' Slack ids: ${relative(process.cwd(), td.principalsFile)})`,
  );
  out('');
  out('Next, in another terminal in this directory:');
  out('');
  out(`  # act as the sample CI workload ${td.workload.spiffeId}`);
  out(`  source ${relative(process.cwd(), join(envDir, 'deployer.env'))}`);
  out('');
  out('  # allowed by policy: a credential bound to this exact deploy');
  out('  TOKEN=$(npx countersign request --operation deploy --resource staging/web --param version=1.4.2)');
  out('');
  out('  # check it as a resource server would; --redeem uses it once');
  out(
    '  npx countersign verify --token "$TOKEN" --audience https://deploy.' +
      td.trustDomain +
      ' --param version=1.4.2 --cert "$COUNTERSIGN_CERT" --redeem',
  );
  out('');
  out('  # anything else is denied');
  out('  npx countersign request --operation drop-table --resource prod/orders');
  out('');
  out('  # production needs a human: waits, then prints the credential once approved');
  out('  npx countersign request --operation deploy --resource prod/web --param version=1.4.2 --wait');
  out('');
  out('and in a third terminal, approve it as alice (bob is the other approver):');
  out('');
  out(`  source ${relative(process.cwd(), join(envDir, 'alice.env'))}`);
  out('  npx countersign approvals list');
  out('  npx countersign approvals approve <request id> --reason "release window"');
  out('');
  await printConsoleTour(
    broker,
    td.approvers.map((a) => a.name),
    shown,
  );
  out('From CI without SPIRE: a job trades its OIDC token for a short-lived SVID. The dev CI issuer');
  out("mints a token like a GitHub Actions job's (bob started the run, so alice approves):");
  out('');
  out(`  npx countersign-broker dev token --dir ${shown} > ci-token.jwt`);
  out(`  npx countersign run --oidc file:ci-token.jwt --ca ${relative(process.cwd(), td.caFile)} --addr ${addr} \\`);
  out('    --operation deploy --resource prod/web --param version=1.4.2 -- echo deployed');
  out('');
  out(`Afterwards, is the audit trail (also in ${relative(process.cwd(), join(td.dir, 'audit.jsonl'))}) intact?`);
  out(`  npx countersign-broker audit verify --dir ${shown}`);
  if ('error' in trail) {
    out('');
    out(`WARNING: could not check the audit trail at start-up: ${trail.error}`);
  } else if (trail.firstBreak !== undefined) {
    out('');
    out(`WARNING: this dev broker's audit trail does not verify: the chain breaks at seq ${trail.firstBreak}.`);
    out(`  npx countersign-broker audit verify --dir ${shown}     # details`);
    out('  To start a fresh dev trail, see "Resetting the dev trail" in README.md.');
  }
  out('');
}

/** The approver console's part of the banner: where it is, a sign-in link per approver, the passkey rule. */
async function printConsoleTour(broker: RunningBroker, approvers: string[], dir: string): Promise<void> {
  const approverConsole = broker.console;
  if (approverConsole === undefined) return;
  out('');
  out(`Approver console: ${approverConsole.publicUrl}  (passkeys: open it as localhost, not 127.0.0.1)`);
  for (const name of approvers) {
    const link = await approverConsole.links.issue({
      principal: name,
      by: 'dev',
      method: 'link',
      ttlMs: DEV_LINK_TTL_MS,
    });
    out(`  sign in as ${name.padEnd(6)} ${link.url}`);
  }
  out(`  (each link works once, for 12 hours; more: npx countersign-broker principals link alice --dir ${dir})`);
  out('');
  out('  # a production migration needs a passkey: sign in as alice, register a passkey under');
  out('  # "My passkeys", then approve it on its page (the CLI and Slack send you there)');
  out(
    '  npx countersign request --operation db-migrate --resource prod/orders --param migration=0042_add_index --wait',
  );
  out('');
}

export interface DevTokenOptions {
  dir: string;
  /** k=v claims that replace or add to the defaults. */
  claim: string[];
  audience: string;
  /** Seconds. */
  lifetime: number;
}

/**
 * `countersign-broker dev token`: a token from the dev CI issuer, shaped like a
 * GitHub Actions job's (repository, ref, workflow, actor...), for trying the
 * OIDC exchange without a CI platform: `countersign ... --oidc file:PATH`.
 */
export async function devToken(options: DevTokenOptions, now = Date.now()): Promise<string> {
  const keyFile = join(options.dir, 'oidc-issuer-key.json');
  let jwk: JWK;
  try {
    jwk = JSON.parse(await readFile(keyFile, 'utf8')) as JWK;
  } catch (e) {
    throw new Error(
      `no dev CI issuer key in ${keyFile} (${(e as Error).message}); run countersign-broker dev --dir ${options.dir} once first`,
    );
  }
  const claims: Record<string, unknown> = {
    iss: DEV_OIDC_ISSUER,
    aud: options.audience,
    sub: 'repo:example/app:ref:refs/heads/main',
    repository: 'example/app',
    repository_owner: 'example',
    workflow: 'hosted-runner',
    ref: 'refs/heads/main',
    event_name: 'push',
    run_id: String(Math.floor(now / 1000)),
    actor: 'bob',
    jti: randomUUID(),
    iat: Math.floor(now / 1000),
    nbf: Math.floor(now / 1000),
    exp: Math.floor(now / 1000) + options.lifetime,
  };
  for (const c of options.claim) {
    const i = c.indexOf('=');
    if (i <= 0) throw new Error(`--claim ${JSON.stringify(c)}: expected name=value, e.g. ref=refs/heads/feature`);
    claims[c.slice(0, i)] = c.slice(i + 1);
  }
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'JWT' })
    .sign(await importJWK(jwk, 'ES256'));
}
