// The one spelling of a person's name. Separation of duties compares names: the
// human a request is made for, the approver who votes, the names policy and the
// principals file list. If "Alice", "alice " or "аlice" (Cyrillic а) were
// different people from "alice", alice could approve her own request. So every
// name that reaches a comparison goes through normalizePrincipalName first:
//
//   1. Unicode NFKC (compatibility forms such as fullwidth "ａｌｉｃｅ" become "alice"),
//   2. trim (leading and trailing whitespace of any kind),
//   3. case-fold (lower case; the result is ASCII, where this is exact),
//
// and the result must be ASCII in one of two forms (docs/approvals.md):
//
//   principal name  [a-z0-9][a-z0-9._+-]{0,127}
//   e-mail address  local@domain, local = dot-separated [a-z0-9_+-]+ (at most 64),
//                   domain = dot-separated labels [a-z0-9]([a-z0-9-]*[a-z0-9])? (at most
//                   63 each, 253 in all; IDNs in their xn-- form), 254 in all
//
// Anything else (other scripts, mixed scripts, invisible characters, inner
// spaces) is refused, never guessed at.
import { CountersignError } from '../errors.js';

/** The most characters accepted before normalising (NFKC can lengthen a string). */
export const MAX_PRINCIPAL_NAME_INPUT = 320;

export const PRINCIPAL_NAME_GRAMMAR =
  'a principal name (1-128 of a-z 0-9 . _ + -, starting with a letter or digit) or an e-mail address (ASCII; an international domain in its xn-- form)';

const NAME = /^[a-z0-9][a-z0-9._+-]{0,127}$/;
const LOCAL = /^[a-z0-9_+-]+(\.[a-z0-9_+-]+)*$/;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** What a policy pattern may contain besides the name characters: the glob wildcards. */
const PATTERN = /^[a-z0-9._+@*?-]+$/;

const shown = (value: string): string => JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value);

/** "U+0430", for a character that is not what it looks like. */
const codePoint = (c: string): string =>
  `U+${(c.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0')}`;

/** NFKC, trim, case-fold: the comparable form, before the grammar is checked. */
function fold(raw: string): string {
  return raw.normalize('NFKC').trim().toLowerCase();
}

/** Why a folded value is not a canonical principal name, or undefined when it is one. */
function grammarProblem(value: string): string | undefined {
  if (value === '') return 'is empty';
  const foreign = [...value].find((c) => c > '\x7e' || c < '\x21');
  if (foreign !== undefined) {
    const at = [...value].indexOf(foreign);
    const what = /\s/u.test(foreign)
      ? `a space (${codePoint(foreign)})`
      : /\p{L}/u.test(foreign)
        ? `the non-ASCII letter "${foreign}" (${codePoint(foreign)})`
        : `the character ${codePoint(foreign)}`;
    return `has ${what} at position ${at + 1}`;
  }
  const at = value.indexOf('@');
  if (at === -1) return NAME.test(value) ? undefined : 'is not a principal name';
  const local = value.slice(0, at);
  const domain = value.slice(at + 1);
  if (value.length > 254) return `is ${value.length} characters long, an e-mail address at most 254`;
  if (local.length > 64 || !LOCAL.test(local))
    return `has an e-mail local part (${shown(local)}) that is not dot-separated a-z 0-9 _ + - (at most 64)`;
  if (domain.length > 253 || !domain.split('.').every((l) => LABEL.test(l)))
    return `has an e-mail domain (${shown(domain)}) that is not a host name`;
  return undefined;
}

/** Why `raw` has no canonical form (as a sentence), or undefined when it has one. */
export function principalNameProblem(raw: string): string | undefined {
  if (raw.length > MAX_PRINCIPAL_NAME_INPUT)
    return `is ${raw.length} characters long, at most ${MAX_PRINCIPAL_NAME_INPUT} are allowed`;
  return grammarProblem(fold(raw));
}

/**
 * The canonical form of a principal name or e-mail address (NFKC, trimmed,
 * lower case, ASCII, in the grammar above). Throws INVALID_ARGUMENT
 * (ERR_PRINCIPAL_NAME_INVALID) naming `field` and the value otherwise.
 */
export function normalizePrincipalName(raw: string, field: string): string {
  const problem = typeof raw === 'string' ? principalNameProblem(raw) : 'is not a string';
  if (problem !== undefined) {
    throw new CountersignError(
      'invalid_argument',
      'ERR_PRINCIPAL_NAME_INVALID',
      `${field}: ${shown(String(raw))} ${problem}; expected ${PRINCIPAL_NAME_GRAMMAR}`,
      {
        field,
        value: String(raw).slice(0, 128),
      },
    );
  }
  return fold(raw);
}

/** The canonical form, or undefined when there is none (for lookups: an invalid name names nobody). */
export function canonicalPrincipalName(raw: string): string | undefined {
  return typeof raw === 'string' && principalNameProblem(raw) === undefined ? fold(raw) : undefined;
}

/** Why a policy pattern for principal names (a glob) has no canonical form, or undefined. */
export function principalPatternProblem(raw: string): string | undefined {
  if (raw.length > MAX_PRINCIPAL_NAME_INPUT)
    return `is ${raw.length} characters long, at most ${MAX_PRINCIPAL_NAME_INPUT} are allowed`;
  const folded = fold(raw);
  if (folded === '') return 'is empty';
  if (!PATTERN.test(folded))
    return `can only match ${PRINCIPAL_NAME_GRAMMAR}: use a-z 0-9 . _ + @ - and the wildcards * and ?`;
  return undefined;
}

/** A glob over principal names, folded the same way as the names it is matched against. */
export const canonicalPrincipalPattern = (raw: string): string => fold(raw);
