// The dev trust domain: everything `countersign-broker dev` needs, created once
// in a directory and reused: a CA, SVIDs for the broker, a sample workload and
// two sample approvers, a signing key, an example policy and a config file.
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isMap, isScalar, parseDocument, type YAMLMap } from 'yaml';
import { CertificateAuthority } from './ca.js';

export const DEV_SVID_LIFETIME_MS = 30 * 24 * 3600_000;
/** Re-issue an SVID when less than this is left, so a dev session never hits expiry. */
const RENEW_BEFORE_MS = 2 * 24 * 3600_000;

export interface DevIdentity {
  name: string;
  spiffeId: string;
  certFile: string;
  keyFile: string;
}

export interface DevTrustDomain {
  dir: string;
  trustDomain: string;
  caFile: string;
  caKeyFile: string;
  broker: DevIdentity;
  workload: DevIdentity;
  approvers: DevIdentity[];
  signingKeyFile: string;
  policyFile: string;
  principalsFile: string;
  /** The dev CI issuer: the intermediate CA that signs exchanged SVIDs, and the issuer's signing key (JWK) and public JWKS. */
  oidc: { caFile: string; caKeyFile: string; issuerKeyFile: string; jwksFile: string };
  configFile: string;
  /** Files created (not reused) by this call, relative to dir. */
  created: string[];
}

export function devPolicy(trustDomain: string): string {
  return `# Countersign policy for the dev trust domain ${trustDomain}. See docs/policy.md.
# Deny wins over everything, then break_glass, approve, allow; a request no rule
# matches is denied. The broker reloads this file when it changes (if the new
# version is valid and its tests below pass).
#   countersign-broker policy check policy.yaml --principals principals.yaml
#   countersign-broker policy explain --policy policy.yaml \\
#     --workload spiffe://${trustDomain}/ci/deployer --operation deploy --resource prod/web
version: 1
rules:
  - name: staging-deploys
    description: CI may deploy to staging without asking anyone.
    match:
      workload: spiffe://${trustDomain}/ci/*
      operation: deploy
      resource: staging/*
    decision: allow
    ttl: 10m

  - name: prod-deploys
    description: Production deploys need one approval from alice or bob.
    match:
      workload: spiffe://${trustDomain}/ci/*
      operation: deploy
      resource: prod/*
    decision: approve
    approval:
      approvers: [alice, bob]
      required: 1
      timeout: 15m
    ttl: 5m

  - name: prod-migrations
    description: Database migrations in production are irreversible; the approver proves it is them with a passkey, over this exact migration.
    match:
      workload: spiffe://${trustDomain}/ci/*
      operation: db-migrate
      resource: prod/*
    decision: approve
    approval:
      approvers: [alice, bob]
      required: 1
      step_up: webauthn
      timeout: 15m
    ttl: 5m

tests:
  - name: CI deploys to staging without approval
    input: { workload: "spiffe://${trustDomain}/ci/deployer", operation: deploy, resource: staging/web }
    expect: { decision: allow, rule: staging-deploys, ttl: 10m }
  - name: a prod deploy needs one approval from alice or bob
    input: { workload: "spiffe://${trustDomain}/ci/deployer", operation: deploy, resource: prod/web }
    expect: { decision: approve, rule: prod-deploys, required: 1, approvers: [alice, bob] }
  - name: a prod migration needs a passkey approval
    input: { workload: "spiffe://${trustDomain}/ci/deployer", operation: db-migrate, resource: prod/orders }
    expect: { decision: approve, rule: prod-migrations, step_up: webauthn }
  - name: anything else is denied
    input: { workload: "spiffe://${trustDomain}/ci/deployer", operation: drop-table, resource: prod/orders }
    expect: { decision: deny, rule: null }
  - name: other workloads cannot deploy
    input: { workload: "spiffe://${trustDomain}/web/frontend", operation: deploy, resource: staging/web }
    expect: { decision: deny, rule: null }
`;
}

export function devPrincipals(trustDomain: string): string {
  return `# People who may approve, and who they are on each channel. Policy rules name them.
# With a real Slack workspace, put your own Slack user ids here (see docs/slack.md).
version: 1
principals:
  - name: alice
    display_name: Alice (dev approver)
    slack_user_id: U0ALICE
    email: alice@${trustDomain}
    spiffe_ids: [spiffe://${trustDomain}/human/alice]
  - name: bob
    display_name: Bob (dev approver)
    slack_user_id: U0BOB
    email: bob@${trustDomain}
    spiffe_ids: [spiffe://${trustDomain}/human/bob]
groups:
  - name: deployers
    members: [alice, bob]
`;
}

/**
 * The Redis prefix of one dev directory: its CA's fingerprint, so dev trust domains that share
 * a local Redis (or a directory recreated on the same Redis) never mix their requests and audit trails.
 */
export function devRedisPrefix(caPem: string): string {
  return `countersign:dev:${createHash('sha256').update(caPem).digest('hex').slice(0, 8)}:`;
}

/** The issuer URL of the dev CI issuer (`countersign-broker dev token` mints its tokens; no server behind it). */
export const DEV_OIDC_ISSUER = 'https://ci.dev.countersign.invalid';
export const DEV_OIDC_AUDIENCE = 'countersign';

/** The identity.oidc part dev mode writes: a local CI issuer whose keys are in a file. */
function devOidcSection(indent: string): string {
  return `${indent}# A local CI issuer, standing in for GitHub Actions: \`countersign-broker dev token\` mints its
${indent}# tokens, \`countersign ... --oidc file:PATH\` trades one for an SVID (docs/identity.md).
${indent}oidc_ca:
${indent}  cert_file: oidc-ca.pem
${indent}  key_file: oidc-ca-key.pem
${indent}oidc:
${indent}  - name: dev-ci
${indent}    issuer: ${DEV_OIDC_ISSUER}
${indent}    audience: ${DEV_OIDC_AUDIENCE}
${indent}    jwks_file: oidc-jwks.json
${indent}    algorithms: [ES256]
${indent}    spiffe_id: "spiffe://{trust_domain}/ci/{workflow}"
${indent}    require: { repository_owner: example }
${indent}    svid_ttl: 10m
${indent}    actor: { claim: actor, principal_field: github_login }
`;
}

/** The console section dev mode writes: passkeys need a host name (localhost), never an IP address. */
function devConsoleSection(consolePort: number): string {
  return `console:
  # The approver console: passkeys need a host name (localhost), never an IP address.
  enabled: true
  listen: 127.0.0.1:${consolePort}
${consolePort === 0 ? '' : `  public_url: ${devConsoleUrl(consolePort)}\n`}`;
}

/** The console address dev mode writes for a fixed port (with port 0 the console derives it from the port it got). */
const devConsoleUrl = (port: number): string => `http://localhost:${port}`;

export function devConfig(t: DevConfigOwned): string {
  return `# Broker configuration written by \`countersign-broker dev\`; \`countersign-broker serve
# --config ${'<this file>'}\` runs the same broker. Paths are relative to this file.
trust_domain: ${t.trustDomain}
grpc:
  listen: 127.0.0.1:${t.grpcPort}
http:
  listen: 127.0.0.1:${t.httpPort}
identity:
  svid:
    cert_file: svids/broker.pem
    key_file: svids/broker-key.pem
  bundles:
    - trust_domain: ${t.trustDomain}
      file: ca.pem
${devOidcSection('  ')}redis:
  url: ${t.redisUrl}
  prefix: "${t.redisPrefix}"
policy:
  file: policy.yaml
principals:
  file: principals.yaml
credentials:
  default_audience: https://deploy.${t.trustDomain}
  default_ttl: 5m
  max_ttl: 1h
  signing_keys:
    - file: signing-key.pem
  # Who may redeem (use up) credentials, per audience. In the tour the sample workload plays the
  # resource server too; in production list the resource servers' own SPIFFE IDs here.
  redeemers:
    - audience: https://deploy.${t.trustDomain}
      workloads: [spiffe://${t.trustDomain}/ci/deployer]
${devConsoleSection(t.consolePort)}audit:
  # The banner owns stdout in dev mode; the audit lines go to a file instead.
  stdout: false
  file: audit.jsonl
  checkpoint:
    every_events: 100
    interval: 1m
`;
}

/**
 * The names a client may dial the dev broker by: COUNTERSIGN_ADDR is 127.0.0.1:PORT, and
 * grpcurl or a Go client checks the address against the certificate's IP SANs.
 */
const BROKER_SERVER_NAMES = { dns: ['localhost'], ips: ['127.0.0.1', '::1'] };

/** An SVID dev mode wrote is kept while it is far from expiry and names what dev mode now puts in it. */
function isCurrent(cert: X509Certificate, names: { dns: string[]; ips: string[] }, now: number): boolean {
  if (Date.parse(cert.validTo) - now <= RENEW_BEFORE_MS) return false;
  const sans = (cert.subjectAltName ?? '').split(', ');
  return (
    names.dns.every((d) => sans.includes(`DNS:${d}`)) &&
    names.ips.every((ip) => sans.includes(`IP Address:${asNodeShowsIp(ip)}`))
  );
}

/** An IP address as X509Certificate.subjectAltName prints it (IPv6 in eight unabbreviated groups). */
function asNodeShowsIp(ip: string): string {
  if (!ip.includes(':')) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const missing = 8 - groups(head).length - groups(tail).length;
  return [...groups(head), ...Array<string>(ip.includes('::') ? missing : 0).fill('0'), ...groups(tail)]
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':');
}

/** What dev mode owns in config.yaml (from its flags and what it found); the rest is the user's. */
export interface DevConfigOwned {
  trustDomain: string;
  grpcPort: number;
  httpPort: number;
  /** The approver console's port (console.listen, and console.public_url while it is dev mode's http://localhost:PORT). */
  consolePort: number;
  redisUrl: string;
  redisPrefix: string;
}

/** A console.public_url as dev mode writes it: the user's own address (a tunnel, https) is theirs. */
const DEV_CONSOLE_URL = /^http:\/\/localhost:\d{1,5}\/?$/;

/**
 * An existing dev config.yaml with only what dev mode owns brought up to date (listen
 * addresses, Redis URL and prefix, the console's localhost URL); the user's edits and
 * comments stay. A config.yaml written before the approver console existed gets dev
 * mode's console section (`added`). Text that is not valid YAML is returned as it is,
 * for the config parser to report where it is wrong.
 */
export function updateDevConfig(text: string, owned: DevConfigOwned): { text: string; added: string[] } {
  const doc = parseDocument(text);
  if (doc.errors.length > 0 || !isMap(doc.contents)) return { text, added: [] };
  let changed = false;
  const added: string[] = [];
  const set = (path: string[], value: string) => {
    if (doc.getIn(path) === value) return;
    doc.setIn(path, value);
    changed = true;
  };
  set(['grpc', 'listen'], `127.0.0.1:${owned.grpcPort}`);
  set(['http', 'listen'], `127.0.0.1:${owned.httpPort}`);
  set(['redis', 'url'], owned.redisUrl);
  set(['redis', 'prefix'], owned.redisPrefix);
  if (isMap(doc.get('identity')) && !doc.hasIn(['identity', 'oidc']) && !doc.hasIn(['identity', 'oidc_ca'])) {
    const section = parseDocument(devOidcSection('')).contents as YAMLMap;
    for (const item of section.items) (doc.get('identity') as YAMLMap).items.push(item);
    added.push('identity.oidc');
    changed = true;
  }
  if (!doc.has('console')) {
    const section = parseDocument(devConsoleSection(owned.consolePort)).get('console', true);
    doc.set(doc.createNode('console'), section);
    const pair = (doc.contents as YAMLMap).items.at(-1);
    if (pair !== undefined && isScalar(pair.key))
      pair.key.commentBefore = ' Added by countersign-broker dev: the approver console (docs/console.md).';
    added.push('console');
    changed = true;
  } else if (doc.getIn(['console', 'enabled']) !== false) {
    // A console the user turned off stays off, untouched.
    set(['console', 'listen'], `127.0.0.1:${owned.consolePort}`);
    const url = doc.getIn(['console', 'public_url']);
    if (typeof url === 'string' && DEV_CONSOLE_URL.test(url)) {
      if (owned.consolePort !== 0) set(['console', 'public_url'], devConsoleUrl(owned.consolePort));
      else {
        // Port 0: the console names the port it gets; a stale fixed one would send browsers elsewhere.
        doc.deleteIn(['console', 'public_url']);
        changed = true;
      }
    }
  }
  return { text: changed ? doc.toString() : text, added };
}

async function writeNew(path: string, content: string, created: string[], dir: string, mode = 0o644): Promise<void> {
  await writeFile(path, content, { mode });
  created.push(path.slice(dir.length + 1));
}

/** Creates what is missing in dir (and renews SVIDs close to expiry); reuses the rest. */
export async function ensureDevTrustDomain(options: {
  dir: string;
  trustDomain: string;
  now?: () => number;
}): Promise<Omit<DevTrustDomain, 'configFile'>> {
  const dir = resolve(options.dir);
  const now = options.now ?? Date.now;
  const created: string[] = [];
  await mkdir(join(dir, 'svids'), { recursive: true, mode: 0o700 });

  const caFile = join(dir, 'ca.pem');
  const caKeyFile = join(dir, 'ca-key.pem');
  let ca: CertificateAuthority;
  if (existsSync(caFile) && existsSync(caKeyFile)) {
    ca = CertificateAuthority.load(
      options.trustDomain,
      await readFile(caFile, 'utf8'),
      await readFile(caKeyFile, 'utf8'),
      now,
    );
    const caId = /URI:spiffe:\/\/([^,\s/]+)/.exec(new X509Certificate(ca.pem).subjectAltName ?? '')?.[1];
    if (caId !== undefined && caId !== options.trustDomain) {
      throw new Error(
        `${dir} holds a dev CA for trust domain ${caId}, not ${options.trustDomain}; use another --dir or --trust-domain ${caId}`,
      );
    }
  } else {
    ca = CertificateAuthority.createRoot(options.trustDomain, { now, notAfter: now() + 5 * 365 * 24 * 3600_000 });
    await writeNew(caFile, ca.pem, created, dir);
    await writeNew(caKeyFile, ca.certificate.keyPem, created, dir, 0o600);
  }

  const identity = async (name: string, path: string): Promise<DevIdentity> => {
    const spiffeId = `spiffe://${options.trustDomain}/${path}`;
    const certFile = join(dir, 'svids', `${name}.pem`);
    const keyFile = join(dir, 'svids', `${name}-key.pem`);
    const names = name === 'broker' ? BROKER_SERVER_NAMES : { dns: [], ips: [] };
    const fresh =
      existsSync(certFile) &&
      existsSync(keyFile) &&
      isCurrent(new X509Certificate(await readFile(certFile, 'utf8')), names, now());
    if (!fresh) {
      const svid = ca.issueSvid(spiffeId, { notAfter: now() + DEV_SVID_LIFETIME_MS, ...names });
      await writeNew(certFile, svid.chainPem, created, dir);
      await writeNew(keyFile, svid.keyPem, created, dir, 0o600);
    }
    return { name, spiffeId, certFile, keyFile };
  };
  const broker = await identity('broker', 'countersign/broker');
  const workload = await identity('deployer', 'ci/deployer');
  const approvers = [await identity('alice', 'human/alice'), await identity('bob', 'human/bob')];

  // The dev CI issuer: an intermediate below the dev CA signs exchanged SVIDs; an ES256 key signs the tokens.
  const oidc = {
    caFile: join(dir, 'oidc-ca.pem'),
    caKeyFile: join(dir, 'oidc-ca-key.pem'),
    issuerKeyFile: join(dir, 'oidc-issuer-key.json'),
    jwksFile: join(dir, 'oidc-jwks.json'),
  };
  if (!existsSync(oidc.caFile) || !existsSync(oidc.caKeyFile)) {
    const intermediate = ca.createIntermediate({
      commonName: 'Countersign dev OIDC CA',
      notAfter: now() + 5 * 365 * 24 * 3600_000,
    });
    await writeNew(oidc.caFile, intermediate.pem, created, dir);
    await writeNew(oidc.caKeyFile, intermediate.certificate.keyPem, created, dir, 0o600);
  }
  if (!existsSync(oidc.issuerKeyFile) || !existsSync(oidc.jwksFile)) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const kid = createHash('sha256')
      .update(publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64url')
      .slice(0, 16);
    await writeNew(
      oidc.issuerKeyFile,
      `${JSON.stringify({ ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256' }, null, 2)}\n`,
      created,
      dir,
      0o600,
    );
    await writeNew(
      oidc.jwksFile,
      `${JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' }] }, null, 2)}\n`,
      created,
      dir,
    );
  }

  const signingKeyFile = join(dir, 'signing-key.pem');
  if (!existsSync(signingKeyFile)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeNew(signingKeyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), created, dir, 0o600);
  }
  const policyFile = join(dir, 'policy.yaml');
  if (!existsSync(policyFile)) await writeNew(policyFile, devPolicy(options.trustDomain), created, dir);
  const principalsFile = join(dir, 'principals.yaml');
  if (!existsSync(principalsFile)) await writeNew(principalsFile, devPrincipals(options.trustDomain), created, dir);

  return {
    dir,
    trustDomain: options.trustDomain,
    caFile,
    caKeyFile,
    broker,
    workload,
    approvers,
    signingKeyFile,
    policyFile,
    principalsFile,
    oidc,
    created,
  };
}
