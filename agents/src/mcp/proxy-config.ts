// The guard proxy's configuration: which upstream tools need approval, and the
// operation, resource and reason each call is asked as (templates over the
// call's arguments). Errors name the file, line and key.
import { readFileSync } from 'node:fs';
import { isMap, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { z } from 'zod';
import { CountersignClientError } from '../sdk/errors.js';
import { compileTemplate, type Template } from './template.js';

export const DEFAULT_CREDENTIAL_META_KEY = 'io.countersign/credential';
export const REQUEST_ID_META_KEY = 'io.countersign/request_id';

const DURATION = /^(\d+)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

function durationMs(value: string): number {
  const m = DURATION.exec(value);
  if (!m) return NaN;
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

const duration = (min: number, max: number, what: string) =>
  z
    .string()
    .refine((v) => DURATION.test(v), { message: `${what}: expected a duration like 30s, 10m, 1h` })
    .transform(durationMs)
    .refine((ms) => ms >= min && ms <= max, {
      message: `${what}: must be between ${min / 1000}s and ${max / 3_600_000}h`,
    });

const TOOL_NAME = /^[A-Za-z0-9_.\-/*]{1,128}$/;
const OPERATION = /^[A-Za-z0-9._:-]{1,128}$/;

const toolSchema = z
  .object({
    name: z
      .string()
      .regex(TOOL_NAME, 'expected an MCP tool name (letters, digits, _ . - /), "*" matching any characters'),
    operation: z.string().min(1).max(512).describe('operation template, e.g. db.query or db.{arguments.action}'),
    resource: z.string().min(1).max(1024).describe('resource template, e.g. db/{arguments.table}'),
    reason: z.string().min(1).max(2048).optional(),
    audience: z.string().min(1).max(512).optional(),
    credential: z
      .object({
        meta: z.union([z.string().min(1).max(256), z.literal(false)]).default(DEFAULT_CREDENTIAL_META_KEY),
        argument: z
          .string()
          .regex(/^[A-Za-z0-9_.-]{1,128}$/, 'expected an argument name')
          .optional(),
      })
      .strict()
      .default({ meta: DEFAULT_CREDENTIAL_META_KEY }),
  })
  .strict();

const configSchema = z
  .object({
    version: z.literal(1, { message: 'version: expected 1' }),
    tools: z.array(toolSchema).min(1, 'tools: name at least one tool to guard'),
    unmatched: z.enum(['pass', 'refuse']).default('pass'),
    max_wait: duration(1000, 24 * 3_600_000, 'max_wait').optional(),
    progress_interval: duration(1000, 3_600_000, 'progress_interval').default(10_000),
  })
  .strict();

export interface GuardedTool {
  /** The pattern as written. */
  name: string;
  matches(toolName: string): boolean;
  operation: Template;
  resource: Template;
  reason: Template;
  audience: string | undefined;
  credential: { meta: string | false; argument: string | undefined };
}

export interface ProxyConfig {
  tools: GuardedTool[];
  unmatched: 'pass' | 'refuse';
  /** How long a call waits for approval before it is answered "still pending" (undefined: until it is decided). */
  maxWaitMs: number | undefined;
  progressIntervalMs: number;
}

const DEFAULT_REASON = 'AI agent calls MCP tool {tool}';

function globMatcher(pattern: string): (name: string) => boolean {
  if (!pattern.includes('*')) return (name) => name === pattern;
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\/-]/g, '\\$&'))
      .join('.*')}$`,
  );
  return (name) => re.test(name);
}

/**
 * Where a key path points in the YAML source, as "file:line:col": the key itself
 * for an unknown key, the nearest enclosing node for a missing one.
 */
function locate(
  doc: ReturnType<typeof parseDocument>,
  counter: LineCounter,
  file: string,
  path: readonly PropertyKey[],
  atKey = false,
): string {
  let node: unknown = doc.contents;
  let found = node as Node | undefined;
  for (const [i, part] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === part);
      if (pair === undefined) break;
      node = atKey && i === path.length - 1 ? pair.key : pair.value;
    } else if (isSeq(node)) {
      node = node.get(part, true);
    } else break;
    if ((node as Node | undefined)?.range) found = node as Node;
  }
  const range = found?.range;
  if (!range) return file;
  const { line, col } = counter.linePos(range[0]);
  return `${file}:${line}:${col}`;
}

const keyPath = (path: readonly PropertyKey[]) =>
  path.reduce<string>(
    (out, p) => (typeof p === 'number' ? `${out}[${p}]` : out === '' ? String(p) : `${out}.${String(p)}`),
    '',
  );

export function parseProxyConfig(text: string, file: string): ProxyConfig {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = counter.linePos(e.pos[0]);
    throw new CountersignClientError('ERR_PROXY_CONFIG', `${file}:${pos.line}:${pos.col}: ${e.message.split('\n')[0]}`);
  }
  const parsed = configSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const unknownKey = issue.code === 'unrecognized_keys';
      const path = unknownKey ? [...issue.path, issue.keys[0] as string] : issue.path;
      const what = unknownKey
        ? `unknown key ${JSON.stringify(issue.keys[0])}`
        : issue.code === 'invalid_type' && /received undefined/.test(issue.message)
          ? 'is required'
          : issue.message;
      return `${locate(doc, counter, file, path, unknownKey)}: ${keyPath(path) ? `${keyPath(path)}: ` : ''}${what}`;
    });
    throw new CountersignClientError('ERR_PROXY_CONFIG', problems.join('\n'));
  }
  const config = parsed.data;
  const tools = config.tools.map((t, i): GuardedTool => {
    const where = (key: string) => `${locate(doc, counter, file, ['tools', i, key])}: tools[${i}].${key}`;
    const template = (key: 'operation' | 'resource' | 'reason', source: string) => {
      try {
        return compileTemplate(source);
      } catch (e) {
        throw new CountersignClientError('ERR_PROXY_CONFIG', `${where(key)}: ${(e as Error).message}`);
      }
    };
    const operation = template('operation', t.operation);
    if (operation.placeholders.length === 0 && !OPERATION.test(t.operation)) {
      throw new CountersignClientError(
        'ERR_PROXY_CONFIG',
        `${where('operation')}: ${JSON.stringify(t.operation)} is not an operation (1-128 of letters, digits and . _ : -)`,
      );
    }
    return {
      name: t.name,
      matches: globMatcher(t.name),
      operation,
      resource: template('resource', t.resource),
      reason: template('reason', t.reason ?? DEFAULT_REASON),
      audience: t.audience,
      credential: { meta: t.credential.meta, argument: t.credential.argument },
    };
  });
  return {
    tools,
    unmatched: config.unmatched,
    maxWaitMs: config.max_wait,
    progressIntervalMs: config.progress_interval,
  };
}

export function loadProxyConfig(file: string): ProxyConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CountersignClientError(
      'ERR_PROXY_CONFIG',
      `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
    );
  }
  return parseProxyConfig(text, file);
}
