// The broker's configuration file (`countersign-broker serve --config FILE`), in
// two stages: YAML parsed with positions, then validated into a typed config.
// Unknown keys are errors; relative paths are relative to the config file.
import { readFile } from 'node:fs/promises';
import { BlockList } from 'node:net';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { addProxy } from './ip-range.js';
import { parseSpiffeId, parseTrustDomain } from '../identity/spiffe-id.js';
import { duration } from './duration.js';
import { parseYaml, validateYaml, YamlValidationError } from './yaml-file.js';

export const MAX_CONFIG_BYTES = 256 * 1024;
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const listenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 0.0.0.0:8443');
const trustDomain = z.string().refine((td) => {
  try {
    parseTrustDomain(td);
    return true;
  } catch {
    return false;
  }
}, 'expected a trust domain name: lowercase letters, digits, ".", "-", "_"');
const filePath = z.string().min(1).max(4096);
/** An RFC 3339 time with a zone, e.g. 2026-03-01T00:00:00Z; output ms since the epoch. */
const instant = z
  .string()
  .regex(
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/,
    'expected an RFC 3339 time with a zone, e.g. 2026-03-01T00:00:00Z',
  )
  .transform((text, ctx) => {
    const ms = Date.parse(text);
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(text)} is not a valid time` });
      return z.NEVER;
    }
    return ms;
  });

const bundleSchema = z
  .object({
    trust_domain: trustDomain,
    file: filePath,
    /** pem: CA certificates; spiffe: a SPIFFE bundle document (JWK Set). */
    format: z.enum(['pem', 'spiffe']).default('pem'),
  })
  .strict();

const spiffeIdWithPath = z
  .string()
  .max(2048)
  .refine((id) => {
    try {
      return parseSpiffeId(id).path !== '';
    } catch {
      return false;
    }
  }, 'expected a workload SPIFFE ID such as spiffe://example.org/ingress (lowercase trust domain, a path, no trailing "/")');

/**
 * A SPIFFE ID or a glob over SPIFFE IDs ("*" one path segment, "**" any depth,
 * "?" one character), as policy's match.workload takes them: with each wildcard
 * replaced by one legal character it must be a workload SPIFFE ID.
 */
const workloadPattern = z
  .string()
  .max(512)
  .superRefine((pattern, ctx) => {
    const problem = /\*{3,}/.test(pattern)
      ? 'has "***"; use "*" (one segment) or "**" (any depth)'
      : /[[\]{}]/.test(pattern)
        ? 'character classes and braces are not supported; use "*", "**" or "?"'
        : undefined;
    let id: ReturnType<typeof parseSpiffeId> | undefined;
    try {
      id = parseSpiffeId(pattern.replace(/\*\*|\*|\?/g, 'x'));
    } catch {
      id = undefined;
    }
    if (problem !== undefined || id === undefined || id.path === '') {
      ctx.addIssue({
        code: 'custom',
        message: `${JSON.stringify(pattern)} is not a workload SPIFFE ID or pattern${problem ? `: ${problem}` : ''}; e.g. spiffe://example.org/svc/deploy-api or spiffe://example.org/svc/*`,
      });
    }
  });

/** Who may redeem credentials, per audience (docs/credentials.md, "Single use: redemption"). */
const redeemersSchema = z
  .array(
    z
      .object({
        /** A credential "aud", exactly, or "*" for every audience. */
        audience: z.string().min(1).max(512).regex(/^\S+$/, 'expected an audience without whitespace, or "*"'),
        workloads: z.array(workloadPattern).min(1).max(64),
      })
      .strict(),
  )
  .max(256)
  .superRefine((rules, ctx) => {
    const seen = new Map<string, number>();
    rules.forEach((r, i) => {
      const first = seen.get(r.audience);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `audience ${r.audience} is already listed (redeemers[${first}]); list all its workloads there`,
          path: [i, 'audience'],
        });
      }
      seen.set(r.audience, i);
    });
  });

/** The broker's own SVID: from two files, or from a SPIFFE Workload API. */
const svidSchema = z
  .object({
    cert_file: filePath.optional(),
    key_file: filePath.optional(),
    workload_api: z
      .object({
        /** unix:///path or tcp://IP:port; default SPIFFE_ENDPOINT_SOCKET. */
        socket: z.string().min(1).max(4096).optional(),
        /** Which SVID to serve with when the Workload API hands out several; default the first. */
        spiffe_id: spiffeIdWithPath.optional(),
        /** How long start-up waits for the first SVID. */
        timeout: duration(SECOND, 10 * MINUTE).default(30 * SECOND),
        /** Also trust the bundles (own and federated) the Workload API sends. */
        trust_bundles: z.boolean().default(true),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((svid, ctx) => {
    const files = svid.cert_file !== undefined || svid.key_file !== undefined;
    if (files && svid.workload_api !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'set either cert_file and key_file, or workload_api, not both' });
    } else if (!files && svid.workload_api === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: 'expected cert_file and key_file, or workload_api: {} (the SPIFFE Workload API)',
      });
    } else if (files && (svid.cert_file === undefined || svid.key_file === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: 'cert_file and key_file go together',
        path: [svid.cert_file === undefined ? 'cert_file' : 'key_file'],
      });
    }
  });

/** Trusting a TLS-terminating proxy to forward the caller's certificate (x-forwarded-client-cert). */
const xfccSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** SPIFFE IDs of the proxies whose forwarded certificates are believed. */
    proxy_ids: z.array(spiffeIdWithPath).max(32).default([]),
  })
  .strict()
  .refine((x) => !x.enabled || x.proxy_ids.length > 0, {
    message:
      'xfcc.enabled needs at least one proxy SPIFFE ID in proxy_ids; a forwarded certificate is only believed from a known proxy',
    path: ['proxy_ids'],
  });

/** Signature algorithms an OIDC issuer may use; never "none" nor an HMAC (a public key is not a secret). */
export const OIDC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;

/** A placeholder of a spiffe_id template: {trust_domain} or a claim name (dots reach into objects). */
export const TEMPLATE_PLACEHOLDER = /\{([A-Za-z0-9_][A-Za-z0-9_.:-]{0,127})\}/g;

/** Why a spiffe_id template cannot work, or undefined. Every value is replaced by "x" for the check. */
export function spiffeTemplateProblem(template: string): string | undefined {
  if (!template.startsWith('spiffe://{trust_domain}/')) {
    return `${JSON.stringify(template)} must start with spiffe://{trust_domain}/ (exchanged SVIDs are issued in the broker's own trust domain)`;
  }
  const rest = template.slice('spiffe://{trust_domain}'.length);
  if (/[{}]/.test(rest.replace(TEMPLATE_PLACEHOLDER, '')))
    return `${JSON.stringify(template)} has an unbalanced "{" or "}"; placeholders look like {repository}`;
  if (!TEMPLATE_PLACEHOLDER.test(rest))
    return `${JSON.stringify(template)} names no claim; every job of the issuer would get the same SPIFFE ID`;
  TEMPLATE_PLACEHOLDER.lastIndex = 0;
  try {
    parseSpiffeId(`spiffe://example.org${rest.replace(TEMPLATE_PLACEHOLDER, 'x')}`);
  } catch (e) {
    return `${JSON.stringify(template)} does not give a SPIFFE ID: ${(e as Error).message}`;
  }
  return undefined;
}

const claimName = z
  .string()
  .regex(
    /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/,
    'expected a claim name such as repository_owner or kubernetes.io.namespace',
  );
const claimValue = z.union([z.string().max(1024), z.number(), z.boolean()]);

/** One OIDC issuer whose tokens the broker exchanges for SVIDs (docs/identity.md, "Exchanging an OIDC token"). */
const oidcIssuerSchema = z
  .object({
    /** Names the issuer in SVIDs, audit records and --oidc; 1-63 of [a-z0-9-]. */
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected 1-63 characters of [a-z0-9-], e.g. github'),
    /** The tokens' "iss", exactly; discovery is at {issuer}/.well-known/openid-configuration. */
    issuer: z
      .string()
      .max(2048)
      .superRefine((text, ctx) => {
        let url: URL | undefined;
        try {
          url = new URL(text);
        } catch {
          url = undefined;
        }
        if (url === undefined || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.search || url.hash) {
          ctx.addIssue({
            code: 'custom',
            message: `expected the issuer URL exactly as its tokens' "iss" says, e.g. https://token.actions.githubusercontent.com; got ${JSON.stringify(text)}`,
          });
        } else if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname)) {
          ctx.addIssue({
            code: 'custom',
            message: `${text}: plain http is only accepted on loopback (dev mode, tests); an issuer's keys must come over https`,
          });
        }
      }),
    /** The tokens' "aud" must be exactly this (one of them, when "aud" is a list). */
    audience: z.string().min(1).max(512),
    /** The SVID's SPIFFE ID: spiffe://{trust_domain}/... with {claim} placeholders, each value escaped into one path segment. */
    spiffe_id: z
      .string()
      .max(1024)
      .superRefine((t, ctx) => {
        const problem = spiffeTemplateProblem(t);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
      }),
    /** Claim equality: a value, or a list of accepted values. Tokens without them are refused. */
    require: z.record(claimName, z.union([claimValue, z.array(claimValue).min(1).max(64)])).default({}),
    /** Longest SVID lifetime; never past the token's exp plus exp_margin either. */
    svid_ttl: duration(30 * SECOND, 24 * HOUR).default(10 * MINUTE),
    /** How far past the token's exp an SVID may live. */
    exp_margin: duration(0, HOUR).default(5 * MINUTE),
    /** Tokens issued (iat) longer ago than this are refused. */
    max_token_age: duration(MINUTE, 24 * HOUR).default(HOUR),
    /** Tolerance for exp, nbf and iat against the broker's clock. */
    clock_skew: duration(0, 5 * MINUTE).default(30 * SECOND),
    /** Keys from a JWKS file instead of the issuer's discovery (clusters whose issuer the broker cannot reach). */
    jwks_file: filePath.optional(),
    /** The issuer's JWKS URL, skipping discovery. */
    jwks_uri: z
      .string()
      .regex(/^https?:\/\/\S{1,2040}$/, 'expected an http(s) URL')
      .optional(),
    /** How long fetched keys are used without asking the issuer again (a token with an unknown kid asks at once). */
    jwks_cache: duration(SECOND, DAY).default(10 * MINUTE),
    algorithms: z.array(z.enum(OIDC_ALGORITHMS)).min(1).max(OIDC_ALGORITHMS.length).default(['RS256', 'ES256']),
    /** Each token is exchanged once (by its jti, or its hash when it has none). */
    single_use: z.boolean().default(true),
    /** The person who started the run becomes the request's on_behalf_of (separation of duties). */
    actor: z
      .object({
        /** The claim naming them, e.g. actor (GitHub) or user_login (GitLab). */
        claim: claimName,
        /** The principal field it is matched against. */
        principal_field: z.enum(['github_login', 'gitlab_login', 'email', 'name']),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((issuer, ctx) => {
    if (issuer.jwks_file !== undefined && issuer.jwks_uri !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'set jwks_file or jwks_uri, not both', path: ['jwks_uri'] });
    }
  });

const identitySchema = z
  .object({
    svid: svidSchema,
    bundles: z.array(bundleSchema).max(64).default([]),
    /** How often SVID and bundle files are checked for changes (a bundle's spiffe_refresh_hint may shorten it). */
    reload_interval: duration(100, HOUR).default(5 * SECOND),
    xfcc: xfccSchema.prefault({}),
    /** Refused client certificates are audited as summaries: one per code and source per interval. */
    refusals: z
      .object({
        interval: duration(SECOND, HOUR).default(MINUTE),
        max_sources: z.number().int().min(1).max(1000).default(20),
      })
      .strict()
      .prefault({}),
    /** OIDC issuers whose tokens are exchanged for short-lived SVIDs (Identity.ExchangeToken). */
    oidc: z.array(oidcIssuerSchema).max(32).default([]),
    /** The intermediate CA that signs exchanged SVIDs: its certificate chain (up to a root in this trust domain's bundle) and key. */
    oidc_ca: z.object({ cert_file: filePath, key_file: filePath }).strict().optional(),
  })
  .strict()
  .superRefine((identity, ctx) => {
    const fromWorkloadApi = identity.svid.workload_api !== undefined && identity.svid.workload_api.trust_bundles;
    if (identity.bundles.length === 0 && !fromWorkloadApi) {
      ctx.addIssue({
        code: 'custom',
        message:
          'at least one trust bundle is needed: list bundles, or take them from the Workload API (svid.workload_api.trust_bundles: true)',
        path: ['bundles'],
      });
    }
    const seen = new Map<string, number>();
    identity.bundles.forEach((b, i) => {
      const first = seen.get(b.trust_domain);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `trust domain ${b.trust_domain} already has a bundle (bundles[${first}]); one bundle file per trust domain`,
          path: ['bundles', i, 'trust_domain'],
        });
      }
      seen.set(b.trust_domain, i);
    });
    const names = new Map<string, number>();
    identity.oidc.forEach((o, i) => {
      const first = names.get(o.name);
      if (first !== undefined)
        ctx.addIssue({
          code: 'custom',
          message: `issuer name ${o.name} is already used (oidc[${first}])`,
          path: ['oidc', i, 'name'],
        });
      names.set(o.name, i);
    });
    if (identity.oidc.length > 0 && identity.oidc_ca === undefined) {
      ctx.addIssue({
        code: 'custom',
        message:
          'identity.oidc needs identity.oidc_ca (cert_file, key_file): the intermediate CA that signs exchanged SVIDs',
        path: ['oidc_ca'],
      });
    }
  });

/** Host names a browser treats as a secure context over plain HTTP (no Secure cookies needed there). */
export const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/** A token bucket: per_minute sustained, burst at once. */
const rateBucket = (perMinute: number, burst: number) =>
  z
    .object({
      per_minute: z.number().int().min(1).max(100_000).default(perMinute),
      burst: z.number().int().min(1).max(100_000).default(burst),
    })
    .strict()
    .prefault({});

/** The approver console (docs/console.md): its own listener, its public address, sign-in and sessions. */
const consoleSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** Its own listener, apart from the HTTP listener that serves /metrics (see docs/console.md, "Where it is served"). */
    listen: listenAddress.default('0.0.0.0:8090'),
    /** The address approvers' browsers use: origin of cookies, WebAuthn RP ID, sign-in links and URLs in Slack and the CLI. */
    public_url: z
      .string()
      .max(2048)
      .superRefine((text, ctx) => {
        const problem = publicUrlProblem(text);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    /** Serve HTTPS directly (without an ingress terminating TLS). */
    tls: z.object({ cert_file: filePath, key_file: filePath }).strict().optional(),
    session: z
      .object({
        /** Signed out after this long without a request. */
        idle_timeout: duration(MINUTE, 12 * HOUR).default(15 * MINUTE),
        /** Signed out this long after signing in, however active. */
        max_age: duration(5 * MINUTE, 7 * DAY).default(12 * HOUR),
      })
      .strict()
      .prefault({}),
    /** How long a one-time sign-in link works (countersign-broker principals link, Slack). */
    sign_in_link_ttl: duration(MINUTE, DAY).default(15 * MINUTE),
    /** How long a WebAuthn challenge can be answered. */
    challenge_ttl: duration(30 * SECOND, 15 * MINUTE).default(5 * MINUTE),
    /** A passkey can be registered only this soon after signing in with the identity provider or an operator's link. */
    enrollment_window: duration(MINUTE, HOUR).default(10 * MINUTE),
    max_passkeys: z.number().int().min(1).max(32).default(10),
    /**
     * Token buckets (in Redis, shared by replicas) on what an attacker would hammer: sign-in link
     * redemption, the OIDC callback, passkey options and verification, votes. Past them: 429 with Retry-After.
     */
    rate_limits: z
      .object({
        /** Per client address (behind an ingress, see trusted_proxies). */
        per_ip: rateBucket(120, 60),
        /** Per signed-in principal, whatever address they come from. */
        per_principal: rateBucket(60, 30),
        /** Proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client; others' is ignored. */
        trusted_proxies: z
          .array(
            z
              .string()
              .max(64)
              .refine((t) => addProxy(new BlockList(), t), 'expected an IP address or CIDR range, e.g. 10.0.0.0/8'),
          )
          .max(64)
          .default([]),
      })
      .strict()
      .prefault({}),
    /** With Slack on, cards offer "Sign in to approve": a one-time link sent to the clicker only. */
    slack_sign_in_links: z.boolean().default(true),
    /** Sign-in with the organisation's identity provider (authorization code + PKCE). */
    oidc: z
      .object({
        issuer: z.string().regex(/^https?:\/\/\S{1,2040}$/, 'expected the issuer URL, e.g. https://login.example.com'),
        client_id: z.string().min(1).max(512),
        /** A file holding the client secret (or COUNTERSIGN_CONSOLE_OIDC_CLIENT_SECRET); none: a public client (PKCE only). */
        client_secret_file: filePath.optional(),
        /** Which claim names the principal: email (must be verified; the principal's email) or sub (the principal's oidc_subject). */
        claim: z.enum(['email', 'sub']).default('email'),
        scopes: z
          .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/, 'expected an OAuth scope'))
          .min(1)
          .max(16)
          .default(['openid', 'email']),
        /** Shown on the sign-in button. */
        display_name: z.string().min(1).max(64).default('your identity provider'),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (!c.enabled || c.public_url !== undefined) return;
    if (!LOOPBACK_HOSTS.has(splitHostPort(c.listen).host)) {
      ctx.addIssue({
        code: 'custom',
        message:
          'console.public_url is required (the https:// address approvers open) unless console.listen is on loopback',
        path: ['public_url'],
      });
    }
  });

/** Why a console public URL cannot work in a browser, or undefined. */
export function publicUrlProblem(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `expected an absolute URL such as https://approve.example.com, got ${JSON.stringify(text)}`;
  }
  const host = url.hostname;
  if (url.username || url.password || url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) {
    return `expected scheme, host and port only (the console is served at the root of its host), got ${JSON.stringify(text)}`;
  }
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host) || host.startsWith('[')) {
    return `${host} is an IP address: browsers refuse passkeys (WebAuthn) there; use a host name (http://localhost:PORT on this machine)`;
  }
  if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(host))
    return `${text}: plain http only works on localhost; use https:// (passkeys and secure cookies need it)`;
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `expected http(s), got ${url.protocol}`;
  return undefined;
}

export const configSchema = z
  .object({
    trust_domain: trustDomain,
    grpc: z
      .object({
        listen: listenAddress.default('0.0.0.0:8443'),
        max_message_bytes: z
          .number()
          .int()
          .min(64 * 1024)
          .max(16 * 1024 * 1024)
          .default(2 * 1024 * 1024),
        /** Streams (calls) one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
        max_concurrent_streams: z.number().int().min(1).max(10_000).default(100),
      })
      .strict()
      .prefault({}),
    http: z
      .object({ listen: listenAddress.default('0.0.0.0:8080') })
      .strict()
      .prefault({}),
    /** Plaintext grpc.health.v1 only, for the kubelet's gRPC probes; off unless set. */
    health: z.object({ grpc_listen: listenAddress.optional() }).strict().prefault({}),
    /** OpenTelemetry traces over OTLP/HTTP; OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME work too. */
    tracing: z
      .object({
        otlp_endpoint: z
          .string()
          .regex(/^https?:\/\/\S+$/, 'expected an http(s) URL such as http://otel-collector:4318')
          .optional(),
        service_name: z.string().min(1).max(128).optional(),
        sample_ratio: z.number().min(0).max(1).default(1),
      })
      .strict()
      .prefault({}),
    /** How long a stopping broker lets calls and jobs finish (SIGTERM). */
    shutdown_grace: duration(0, 5 * MINUTE).default(20 * SECOND),
    identity: identitySchema,
    redis: z
      .object({
        url: z
          .string()
          .regex(/^rediss?:\/\//, 'expected redis://host:port or rediss://host:port')
          .default('redis://127.0.0.1:6379'),
        prefix: z
          .string()
          .regex(
            /^(\{[A-Za-z0-9:_.-]{1,62}\})?[A-Za-z0-9:_.-]{0,64}$/,
            'expected 1-64 characters of [A-Za-z0-9:_.-], optionally starting with a hash tag such as {countersign}',
          )
          .max(64)
          .refine((p) => p.length > 0, 'expected 1-64 characters of [A-Za-z0-9:_.-]')
          .default('countersign:'),
        /** A file holding the Redis password (e.g. a mounted Secret); overrides one in the URL. */
        password_file: filePath.optional(),
        sentinel: z
          .object({
            master_name: z.string().min(1).max(128),
            sentinels: z.array(listenAddress).min(1).max(16),
            /** A file holding the password of the sentinels themselves (requirepass on the sentinels), when they have one. */
            password_file: filePath.optional(),
            /** Talk TLS to the sentinels too (the primary and replicas use TLS when redis.url is rediss://). */
            tls: z.boolean().default(false),
          })
          .strict()
          .optional(),
        /**
         * Redis Cluster: the seed nodes (host:port); the client learns the rest and follows
         * MOVED/ASK. Every key then shares the prefix's hash tag, so it lives in one slot.
         */
        cluster: z
          .object({
            nodes: z.array(listenAddress).min(1).max(64),
          })
          .strict()
          .optional(),
        /** TLS to Redis (rediss:// URLs, or Sentinel with tls): a private CA, and a client certificate when Redis asks for one. */
        tls: z
          .object({
            ca_file: filePath.optional(),
            cert_file: filePath.optional(),
            key_file: filePath.optional(),
            /** The name the server certificate must carry, when it is not the host connected to (e.g. Sentinel announces IPs). */
            servername: z.string().min(1).max(253).optional(),
          })
          .strict()
          .superRefine((tls, ctx) => {
            if ((tls.cert_file === undefined) !== (tls.key_file === undefined)) {
              ctx.addIssue({
                code: 'custom',
                path: [tls.cert_file === undefined ? 'cert_file' : 'key_file'],
                message: 'cert_file and key_file go together (a client certificate and its key)',
              });
            }
          })
          .optional(),
        /**
         * Durable acknowledgements: before the broker answers anything that must survive
         * a failover, this many replicas have the write (Redis WAIT); see docs/operations.md.
         */
        durability: z
          .object({
            replicas: z.number().int().min(0).max(16).default(0),
            timeout: duration(10, MINUTE).default(SECOND),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .superRefine((redis, ctx) => {
        if (redis.cluster !== undefined && redis.sentinel !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['cluster'],
            message: 'redis.cluster and redis.sentinel exclude each other: a Redis Cluster fails over by itself',
          });
        }
        if (redis.cluster !== undefined && !/^\{[^{}]+\}/.test(redis.prefix)) {
          ctx.addIssue({
            code: 'custom',
            path: ['prefix'],
            message: `on Redis Cluster the prefix must start with a hash tag, e.g. "{countersign}:" (got ${JSON.stringify(redis.prefix)}): the broker's scripts update several keys at once, and Redis Cluster runs a script only when all its keys share a slot`,
          });
        }
        if (redis.tls !== undefined && !redis.url.startsWith('rediss://') && !(redis.sentinel?.tls ?? false)) {
          ctx.addIssue({
            code: 'custom',
            path: ['tls'],
            message: `redis.tls is set but redis.url (${redis.url.replace(/\/\/([^@/]*)@/, '//***@')}) is not rediss:// and sentinel.tls is off: nothing would use TLS (with redis.cluster, make the url rediss:// to use TLS to the nodes)`,
          });
        }
      })
      .prefault({}),
    policy: z
      .object({
        file: filePath,
        /** Re-read the file this often even without a change event; 0s turns polling off. */
        reload_interval: duration(0, HOUR).default(5 * SECOND),
        /** React to file system change events on the policy file's directory. */
        watch: z.boolean().default(true),
      })
      .strict(),
    /** People who may approve, with their identities per channel, and groups. */
    principals: z.object({ file: filePath }).strict().optional(),
    /** Slack approvals (docs/slack.md). Secrets come from SLACK_* variables or the *_file keys, never from this file. */
    slack: z
      .object({
        /** Default: on when a bot token is given (SLACK_BOT_TOKEN, SLACK_BOT_TOKEN_FILE or bot_token_file). */
        enabled: z.boolean().optional(),
        mode: z.enum(['http', 'socket']).optional(),
        bot_token_file: filePath.optional(),
        signing_secret_file: filePath.optional(),
        app_token_file: filePath.optional(),
        api_url: z
          .string()
          .regex(/^https?:\/\/\S{1,2040}$/, 'expected an http(s) URL such as https://slack.com/api/')
          .optional(),
        default_channel: z
          .string()
          .regex(/^(#?[a-z0-9._-]{1,80}|[CG][A-Z0-9]{2,20})$/, 'expected a channel id (C0123ABC) or name (#approvals)')
          .optional(),
        match_by_email: z.boolean().default(false),
        usergroup_cache_ttl: duration(SECOND, 24 * HOUR).default(5 * MINUTE),
        team_id: z
          .string()
          .regex(/^[TE][A-Z0-9]{2,20}$/, 'expected a Slack workspace id such as T0123ABC')
          .optional(),
        delivery: z
          .object({
            attempts: z.number().int().min(1).max(100).default(20),
            backoff: duration(100, 5 * MINUTE).default(2 * SECOND),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    credentials: z
      .object({
        /** "iss" of every credential; default the broker's SPIFFE ID. */
        issuer: z.string().min(1).max(2048).optional(),
        default_audience: z.string().min(1).max(512),
        default_ttl: duration(10 * SECOND, 24 * HOUR).default(5 * MINUTE),
        max_ttl: duration(10 * SECOND, 24 * HOUR).default(HOUR),
        /** Keys from files (a Kubernetes Secret mounted as files works the same); see docs/credentials.md, "Keys and rotation". */
        signing_keys: z
          .array(
            z
              .object({
                file: filePath,
                /** When this key starts signing; before that it is only published. Omitted: active since forever. */
                activate_at: instant.optional(),
              })
              .strict(),
          )
          .min(1)
          .max(16),
        /** Who may redeem credentials (Broker.RedeemCredential), per audience; unset: nobody. */
        redeemers: redeemersSchema.optional(),
      })
      .strict(),
    /** The audit hash chain (docs/audit.md). */
    audit: z
      .object({
        /** JSON lines on stdout, one per record and checkpoint (for log collectors). */
        stdout: z.boolean().default(true),
        /** Also append them to this file. */
        file: filePath.optional(),
        checkpoint: z
          .object({
            // Measured in the audit-append bench (docs/audit.md, "Choosing the cadence"): about 1% of
            // the append cost and of the chain's size; the head is signed on every append anyway.
            every_events: z.number().int().min(1).max(1_000_000).default(100),
            interval: duration(SECOND, 24 * HOUR).default(MINUTE),
          })
          .strict()
          .prefault({}),
        durability: z
          .object({
            /** Replicas that must acknowledge each append (Redis WAIT / WAITAOF). */
            wait_replicas: z.number().int().min(0).max(16).default(0),
            /** Wait for the primary's AOF fsync (WAITAOF, Redis 7.2+). */
            wait_local_fsync: z.boolean().default(false),
            timeout: duration(10, MINUTE).default(SECOND),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    requests: z
      .object({
        poll_interval: duration(200, MINUTE).default(2 * SECOND),
        /** How long after approval the requester can collect its credential. */
        collection_window: duration(10 * SECOND, 24 * HOUR).default(10 * MINUTE),
        /** How long a request that ended stays readable (GetRequest, audit cross-checks). */
        retention: duration(MINUTE, 90 * DAY).default(7 * DAY),
        /** How often the sweeper ends overdue requests and finishes interrupted work. */
        sweep_interval: duration(SECOND, 5 * MINUTE).default(5 * SECOND),
        limits: z
          .object({
            max_pending_per_workload: z.number().int().min(1).max(1_000_000).default(100),
            /** Open WatchRequest streams per workload on one replica. */
            max_watch_streams_per_workload: z.number().int().min(1).max(100_000).default(128),
            requests_per_second: z.number().min(0.01).max(100_000).default(20),
            burst: z.number().int().min(1).max(1_000_000).default(200),
            max_parameters_bytes: z
              .number()
              .int()
              .min(1024)
              .max(1024 * 1024)
              .default(64 * 1024),
            max_reason_length: z
              .number()
              .int()
              .min(16)
              .max(16 * 1024)
              .default(2048),
          })
          .strict()
          .prefault({}),
        notifications: z
          .object({
            attempts: z.number().int().min(1).max(50).default(10),
            backoff: duration(100, 5 * MINUTE).default(SECOND),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    console: consoleSchema.prefault({}),
    log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  })
  .strict()
  .refine((c) => c.credentials.default_ttl <= c.credentials.max_ttl, {
    message: 'credentials.default_ttl must not exceed credentials.max_ttl',
    path: ['credentials', 'default_ttl'],
  })
  .refine((c) => c.requests.collection_window <= c.requests.retention, {
    message: 'requests.collection_window must not exceed requests.retention',
    path: ['requests', 'collection_window'],
  })
  .superRefine((c, ctx) => {
    const listeners: [string[], string | undefined][] = [
      [['grpc', 'listen'], c.grpc.listen],
      [['http', 'listen'], c.http.listen],
      [['health', 'grpc_listen'], c.health.grpc_listen],
    ];
    for (const [i, [path, listen]] of listeners.entries()) {
      const clash = listeners
        .slice(0, i)
        .find(([, other]) => listen !== undefined && other !== undefined && listenersClash(listen, other));
      if (clash !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path,
          message: `${listen} uses the same port as ${clash[0].join('.')} (${clash[1]}); each listener needs its own port`,
        });
      }
    }
  });

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);

/** Two listen addresses that cannot both be bound: the same port (not 0) on the same or a wildcard host. */
function listenersClash(a: string, b: string): boolean {
  const x = splitHostPort(a);
  const y = splitHostPort(b);
  return (
    x.port !== 0 && x.port === y.port && (x.host === y.host || WILDCARD_HOSTS.has(x.host) || WILDCARD_HOSTS.has(y.host))
  );
}

export type BrokerConfig = z.output<typeof configSchema> & {
  /** Directory the config file was read from; relative paths resolve against it. */
  baseDir: string;
};

/** Resolves a path from the config against the config file's directory. */
export const configPath = (config: Pick<BrokerConfig, 'baseDir'>, path: string): string =>
  resolve(config.baseDir, path);

/** Parses and validates config text; environment overrides (REDIS_URL) apply on top. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = {}): BrokerConfig {
  const parsed = parseYaml(text, file, { maxBytes: MAX_CONFIG_BYTES, errorCode: 'ERR_CONFIG_INVALID' });
  if (parsed.value === null || typeof parsed.value !== 'object' || Array.isArray(parsed.value)) {
    throw new YamlValidationError('ERR_CONFIG_INVALID', file, [
      { where: file, path: '', message: 'expected a mapping of configuration keys' },
    ]);
  }
  const raw = parsed.value as Record<string, unknown>;
  if (env.REDIS_URL !== undefined && env.REDIS_URL !== '') {
    raw.redis = { ...(raw.redis ?? {}), url: env.REDIS_URL };
  }
  const config = validateYaml(parsed, configSchema, 'ERR_CONFIG_INVALID');
  return { ...config, baseDir: dirname(resolve(file)) };
}

export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<BrokerConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new YamlValidationError('ERR_CONFIG_INVALID', file, [
      { where: file, path: '', message: `cannot read: ${(e as Error).message}` },
    ]);
  }
  return parseConfig(text, file, env);
}

export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '');
  return { host, port: Number(listen.slice(i + 1)) };
}
