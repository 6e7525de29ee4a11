// Parsing a YAML document and validating it with a zod schema, with errors that
// say where: "policy.yaml:14:7: rules[2].approve: unknown key "aprovers" (did you
// mean "approvers"?)". Shared by the broker config and the policy file.
import { isMap, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { CountersignError, type ErrorCode } from '../errors.js';

export interface YamlProblem {
  /** "file:line:col" or "file" when the position is unknown. */
  where: string;
  /** Dotted key path, e.g. rules[2].approve.required. */
  path: string;
  message: string;
}

export class YamlValidationError extends CountersignError {
  constructor(
    code: ErrorCode,
    readonly file: string,
    readonly problems: YamlProblem[],
  ) {
    super('invalid_argument', code, problems.map(formatProblem).join('\n'), { file, problems });
  }
}

export function formatProblem(p: YamlProblem): string {
  return p.path === '' ? `${p.where}: ${p.message}` : `${p.where}: ${p.path}: ${p.message}`;
}

export function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

/** Levenshtein distance, for "did you mean" suggestions on unknown keys. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] as number;
      row[j] = Math.min(current + 1, (row[j - 1] as number) + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length] as number;
}

export function suggest(unknown: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(unknown, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(unknown.length / 3)) ? best : undefined;
}

/** The keys a zod object schema accepts at a path, for suggestions. */
function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let current: unknown = schema;
  const unwrap = (s: unknown): unknown => {
    // zod v4 keeps wrappers' inner schema in _zod.def.innerType (optional, default, ...)
    // or def.in / def.schema (pipes, lazies); follow them until an object or array.
    for (let i = 0; i < 16; i++) {
      const def = (s as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
      if (def === undefined) return s;
      if (def.type === 'object' || def.type === 'array') return s;
      const inner =
        def.innerType ?? def.in ?? (typeof def.getter === 'function' ? (def.getter as () => unknown)() : undefined);
      if (inner === undefined) return s;
      s = inner;
    }
    return s;
  };
  for (const part of path) {
    const def = (unwrap(current) as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
    if (def?.type === 'object' && typeof part === 'string') current = (def.shape as Record<string, unknown>)[part];
    else if (def?.type === 'array') current = def.element;
    else return [];
    if (current === undefined) return [];
  }
  const def = (unwrap(current) as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
  return def?.type === 'object' ? Object.keys(def.shape as Record<string, unknown>) : [];
}

export interface ParsedYaml {
  value: unknown;
  doc: Document;
  lines: LineCounter;
  file: string;
}

export function parseYaml(text: string, file: string, options: { maxBytes: number; errorCode: ErrorCode }): ParsedYaml {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > options.maxBytes) {
    throw new YamlValidationError(options.errorCode, file, [
      { where: file, path: '', message: `file is ${bytes} bytes, at most ${options.maxBytes} are accepted` },
    ]);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new YamlValidationError(
      options.errorCode,
      file,
      doc.errors.map((e) => {
        const pos = lines.linePos(e.pos[0]);
        return { where: `${file}:${pos.line}:${pos.col}`, path: '', message: e.message.split('\n')[0] ?? e.message };
      }),
    );
  }
  return { value: doc.toJS({ maxAliasCount: 50 }), doc, lines, file };
}

/** file:line:col of the node at path (or of its key when keyOf is given), else the nearest parent. */
export function locate(parsed: ParsedYaml, path: readonly PropertyKey[], keyOf?: string): string {
  for (let depth = path.length; depth >= 0; depth--) {
    const node = parsed.doc.getIn(path.slice(0, depth) as unknown[], true) as Node | undefined;
    if (node === undefined || node === null) continue;
    let offset = node.range?.[0];
    if (keyOf !== undefined && depth === path.length && isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === keyOf);
      offset = (pair?.key as Node | undefined)?.range?.[0] ?? offset;
    }
    if (offset === undefined) continue;
    const pos = parsed.lines.linePos(offset);
    return `${parsed.file}:${pos.line}:${pos.col}`;
  }
  return parsed.file;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return issue.input === undefined
        ? `is required (expected ${issue.expected})`
        : `expected ${issue.expected}, got ${typeName(issue.input)}`;
    default:
      return issue.message;
  }
}

const typeName = (v: unknown): string =>
  v === null
    ? 'null'
    : Array.isArray(v)
      ? 'array'
      : typeof v === 'object'
        ? 'mapping'
        : `${typeof v} ${JSON.stringify(v)}`;

/** Validates parsed YAML against a schema, throwing YamlValidationError listing every problem. */
export function validateYaml<S extends z.ZodType>(parsed: ParsedYaml, schema: S, errorCode: ErrorCode): z.output<S> {
  const result = schema.safeParse(parsed.value);
  if (result.success) return result.data;
  const problems: YamlProblem[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, issue.path);
      for (const key of issue.keys) {
        const hint = suggest(key, known);
        problems.push({
          where: locate(parsed, issue.path, key),
          path: keyPath(issue.path),
          message: `unknown key ${JSON.stringify(key)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : known.length > 0 ? ` (expected one of: ${known.join(', ')})` : ''}`,
        });
      }
    } else {
      problems.push({ where: locate(parsed, issue.path), path: keyPath(issue.path), message: describeIssue(issue) });
    }
  }
  throw new YamlValidationError(errorCode, parsed.file, problems);
}
