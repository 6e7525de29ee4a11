// Templates such as "db/{arguments.table}": text with placeholders filled from
// one tool call. A value must be one path segment (no "/", no whitespace, not
// "." or ".."), so an argument cannot move the resource elsewhere in the
// namespace that policy matches on ("staging/../prod").
export interface Template {
  source: string;
  /** The placeholders, e.g. ["arguments.table"]. */
  placeholders: string[];
  render(call: { tool: string; arguments: Record<string, unknown> }): string;
}

export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

const PLACEHOLDER = /\{([^{}]*)\}/g;
const PATH = /^(tool|arguments(\.[A-Za-z0-9_-]+)+)$/;
const SAFE_VALUE = /^[^\s/\x00-\x1f\x7f]+$/;

export function compileTemplate(source: string): Template {
  const placeholders: string[] = [];
  for (const m of source.matchAll(PLACEHOLDER)) {
    const path = (m[1] ?? '').trim();
    if (!PATH.test(path)) {
      throw new TemplateError(
        `{${m[1] ?? ''}} is not a placeholder: use {tool} or {arguments.NAME} (nested: {arguments.NAME.FIELD})`,
      );
    }
    placeholders.push(path);
  }
  if (/[{}]/.test(source.replace(PLACEHOLDER, '')))
    throw new TemplateError(`unbalanced "{" or "}" in ${JSON.stringify(source)}`);
  return {
    source,
    placeholders,
    render(call) {
      return source.replace(PLACEHOLDER, (_whole, raw: string) => {
        const path = raw.trim();
        let value: unknown = path === 'tool' ? call.tool : call.arguments;
        for (const key of path === 'tool' ? [] : path.split('.').slice(1)) {
          value =
            value !== null && typeof value === 'object' && !Array.isArray(value) && Object.hasOwn(value, key)
              ? (value as Record<string, unknown>)[key]
              : undefined;
        }
        if (value === undefined || value === null)
          throw new TemplateError(`the call has no ${path}, which ${JSON.stringify(source)} needs`);
        if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
          throw new TemplateError(
            `${path} is ${Array.isArray(value) ? 'an array' : 'an object'}; ${JSON.stringify(source)} needs a string, number or boolean`,
          );
        }
        const text = String(value);
        if (!SAFE_VALUE.test(text) || text === '.' || text === '..') {
          throw new TemplateError(
            `${path} = ${JSON.stringify(text.slice(0, 100))} cannot go into ${JSON.stringify(source)}: a value must not be empty, "." or "..", nor contain "/", whitespace or control characters`,
          );
        }
        return text;
      });
    },
  };
}
