// Parameters for people: pretty-printed lines, and what changed against the last
// approved request for the same operation and resource ("version: 1.4.1 -> 1.4.2").

/** The canonical parameters as indented JSON lines (unambiguous: a string cannot pose as a key). */
export function prettyLines(parametersJson: string): string[] {
  try {
    return (JSON.stringify(JSON.parse(parametersJson), null, 2) ?? 'null').split('\n');
  } catch {
    return [parametersJson];
  }
}

export interface ParameterChange {
  /** JSON path, e.g. version or images[0].tag */
  path: string;
  kind: 'changed' | 'added' | 'removed';
  before: string | undefined;
  after: string | undefined;
}

const MAX_CHANGES = 100;

function leaves(value: unknown, path: string, out: Map<string, string>): void {
  if (out.size > 10_000) return;
  if (Array.isArray(value)) {
    if (value.length === 0) out.set(path, '[]');
    value.forEach((v, i) => leaves(v, `${path}[${i}]`, out));
  } else if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    if (entries.length === 0) out.set(path, '{}');
    for (const [k, v] of entries)
      leaves(
        v,
        path === ''
          ? /^[A-Za-z_][A-Za-z0-9_]*$/.test(k)
            ? k
            : JSON.stringify(k)
          : `${path}.${/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? k : JSON.stringify(k)}`,
        out,
      );
  } else {
    out.set(path === '' ? '(whole value)' : path, JSON.stringify(value));
  }
}

/** What changed from `before` to `after` (both JSON text), leaf by leaf; at most 100 changes, then `truncated`. */
export function diffParameters(before: string, after: string): { changes: ParameterChange[]; truncated: boolean } {
  const a = new Map<string, string>();
  const b = new Map<string, string>();
  try {
    leaves(JSON.parse(before), '', a);
    leaves(JSON.parse(after), '', b);
  } catch {
    return { changes: [], truncated: false };
  }
  const changes: ParameterChange[] = [];
  for (const [path, value] of b) {
    const old = a.get(path);
    if (old === undefined) changes.push({ path, kind: 'added', before: undefined, after: value });
    else if (old !== value) changes.push({ path, kind: 'changed', before: old, after: value });
  }
  for (const [path, value] of a)
    if (!b.has(path)) changes.push({ path, kind: 'removed', before: value, after: undefined });
  changes.sort((x, y) => x.path.localeCompare(y.path));
  return { changes: changes.slice(0, MAX_CHANGES), truncated: changes.length > MAX_CHANGES };
}
