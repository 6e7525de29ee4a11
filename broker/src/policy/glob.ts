// Glob patterns for SPIFFE IDs and resources. "*" matches within one path
// segment (never "/"), "**" matches across segments, "?" one character other
// than "/". Everything else is literal. Compiled once per pattern.

export const MAX_GLOB_LENGTH = 512;

export type GlobMatcher = (value: string) => boolean;

/** Why a pattern is not a usable glob, or undefined when it is. */
export function globProblem(pattern: string): string | undefined {
  if (pattern.length === 0) return 'pattern is empty';
  if (pattern.length > MAX_GLOB_LENGTH) return `pattern is longer than ${MAX_GLOB_LENGTH} characters`;
  if (/\*{3,}/.test(pattern)) return 'pattern has "***"; use "*" (one segment) or "**" (any depth)';
  if (/[[\]{}]/.test(pattern)) return 'character classes and braces are not supported; use "*", "**" or "?"';
  return undefined;
}

export function compileGlob(pattern: string): GlobMatcher {
  const problem = globProblem(pattern);
  if (problem !== undefined) throw new Error(`glob ${JSON.stringify(pattern)}: ${problem}`);
  if (!/[*?]/.test(pattern)) return (value) => value === pattern;
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        source += '.*';
        i++;
      } else {
        source += '[^/]*';
      }
    } else if (c === '?') {
      source += '[^/]';
    } else {
      source += c.replace(/[.+^${}()|[\]\\/-]/g, '\\$&');
    }
  }
  const re = new RegExp(`^${source}$`, 's');
  // Most values a pattern sees do not match; a substring search rejects them faster than the regex.
  const fragment = pattern.split(/[*?]+/).reduce((a, b) => (b.length > a.length ? b : a), '');
  if (fragment.length < 2) return (value) => re.test(value);
  return (value) => value.includes(fragment) && re.test(value);
}

/** Whether a pattern matches exactly one string (itself). */
export const isLiteral = (pattern: string): boolean => !/[*?]/.test(pattern);
