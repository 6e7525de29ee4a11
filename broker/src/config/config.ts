// The broker's configuration file (`countersign-broker serve --config FILE`), in
// two stages: YAML parsed with positions, then validated into a typed config.
// Unknown keys are errors; relative paths are relative to the config file.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { parseTrustDomain } from '../identity/spiffe-id.js';
import { duration } from './duration.js';
import { parseYaml, validateYaml, YamlValidationError } from './yaml-file.js';

export const MAX_CONFIG_BYTES = 256 * 1024;
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

const listenAddress = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 0.0.0.0:8443');
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
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/, 'expected an RFC 3339 time with a zone, e.g. 2026-03-01T00:00:00Z')
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
    format: z.enum(['pem']).default('pem'),
  })
  .strict();

export const configSchema = z
  .object({
    trust_domain: trustDomain,
    grpc: z
      .object({
        listen: listenAddress.default('0.0.0.0:8443'),
        max_message_bytes: z.number().int().min(64 * 1024).max(16 * 1024 * 1024).default(2 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    http: z.object({ listen: listenAddress.default('0.0.0.0:8080') }).strict().prefault({}),
    /** Plaintext grpc.health.v1 only, for the kubelet's gRPC probes; off unless set. */
    health: z.object({ grpc_listen: listenAddress.optional() }).strict().prefault({}),
    /** How long a stopping broker lets calls and jobs finish (SIGTERM). */
    shutdown_grace: duration(0, 5 * MINUTE).default(20 * SECOND),
    identity: z
      .object({
        svid: z.object({ cert_file: filePath, key_file: filePath }).strict(),
        bundles: z.array(bundleSchema).min(1).max(64),
      })
      .strict(),
    redis: z
      .object({
        url: z.string().regex(/^rediss?:\/\//, 'expected redis://host:port or rediss://host:port').default('redis://127.0.0.1:6379'),
        prefix: z.string().regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'expected 1-64 characters of [A-Za-z0-9:_.-]').default('countersign:'),
        /** A file holding the Redis password (e.g. a mounted Secret); overrides one in the URL. */
        password_file: filePath.optional(),
        sentinel: z
          .object({
            master_name: z.string().min(1).max(128),
            sentinels: z.array(listenAddress).min(1).max(16),
          })
          .strict()
          .optional(),
      })
      .strict()
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
            every_events: z.number().int().min(1).max(1_000_000).default(1000),
            interval: duration(SECOND, 24 * HOUR).default(5 * MINUTE),
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
      })
      .strict()
      .prefault({}),
    log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  })
  .strict()
  .refine((c) => c.credentials.default_ttl <= c.credentials.max_ttl, {
    message: 'credentials.default_ttl must not exceed credentials.max_ttl',
    path: ['credentials', 'default_ttl'],
  });

export type BrokerConfig = z.output<typeof configSchema> & {
  /** Directory the config file was read from; relative paths resolve against it. */
  baseDir: string;
};

/** Resolves a path from the config against the config file's directory. */
export const configPath = (config: Pick<BrokerConfig, 'baseDir'>, path: string): string => resolve(config.baseDir, path);

/** Parses and validates config text; environment overrides (REDIS_URL) apply on top. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = {}): BrokerConfig {
  const parsed = parseYaml(text, file, { maxBytes: MAX_CONFIG_BYTES, errorCode: 'ERR_CONFIG_INVALID' });
  if (parsed.value === null || typeof parsed.value !== 'object' || Array.isArray(parsed.value)) {
    throw new YamlValidationError('ERR_CONFIG_INVALID', file, [{ where: file, path: '', message: 'expected a mapping of configuration keys' }]);
  }
  const raw = parsed.value as Record<string, unknown>;
  if (env.REDIS_URL !== undefined && env.REDIS_URL !== '') {
    raw.redis = { ...((raw.redis as Record<string, unknown> | undefined) ?? {}), url: env.REDIS_URL };
  }
  const config = validateYaml(parsed, configSchema, 'ERR_CONFIG_INVALID');
  return { ...config, baseDir: dirname(resolve(file)) };
}

export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<BrokerConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new YamlValidationError('ERR_CONFIG_INVALID', file, [{ where: file, path: '', message: `cannot read: ${(e as Error).message}` }]);
  }
  return parseConfig(text, file, env);
}

export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '');
  return { host, port: Number(listen.slice(i + 1)) };
}
