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
const DAY = 24 * HOUR;

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
      })
      .strict()
      .prefault({}),
    policy: z.object({ file: filePath }).strict(),
    /** People who may approve, with their identities per channel, and groups. */
    principals: z.object({ file: filePath }).strict().optional(),
    credentials: z
      .object({
        /** "iss" of every credential; default the broker's SPIFFE ID. */
        issuer: z.string().min(1).max(2048).optional(),
        default_audience: z.string().min(1).max(512),
        default_ttl: duration(10 * SECOND, 24 * HOUR).default(5 * MINUTE),
        max_ttl: duration(10 * SECOND, 24 * HOUR).default(HOUR),
        signing_keys: z.array(z.object({ file: filePath }).strict()).min(1).max(16),
      })
      .strict(),
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
            requests_per_second: z.number().min(0.01).max(100_000).default(20),
            burst: z.number().int().min(1).max(1_000_000).default(200),
            max_parameters_bytes: z.number().int().min(1024).max(1024 * 1024).default(64 * 1024),
            max_reason_length: z.number().int().min(16).max(16 * 1024).default(2048),
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
