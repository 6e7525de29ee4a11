// HTML for the console: every interpolated value is escaped unless it is
// already Html, so markup can only come from the templates. Text from requests
// (parameters, reasons, names) is data: characters that are invisible or change
// the direction of text are shown as visible markers instead of acting.

/** Markup that is safe to emit as is (built by html`` or by the helpers here). */
export class Html {
  constructor(readonly markup: string) {}
  toString(): string {
    return this.markup;
  }
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c] as string);
}

type Value = Html | string | number | boolean | null | undefined | readonly Value[];

function render(value: Value): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.markup;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

/** A template whose values are escaped (Html values and arrays of them are kept). */
export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0] as string;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] as string);
  return new Html(out);
}

/** Markup from a trusted constant (never from input). */
export const raw = (markup: string): Html => new Html(markup);

/**
 * Characters a reader cannot see or that reorder what they see: controls,
 * format characters (bidi overrides and isolates, zero-width joiners and spaces,
 * BOM, soft hyphen), separators other than the plain space, private use and
 * unassigned code points, and blank-looking letters (Hangul fillers, braille blank).
 * Newlines stay newlines (text is shown with white-space: pre-wrap).
 */
// The combining marks (U+034F, U+180B-U+180E) stand alone in the class on purpose: each is one of
// the invisible code points it exists to find, not part of a combined character.
/* eslint-disable no-misleading-character-class -- lone combining marks are intended (see above) */
const DECEPTIVE =
  /(?!\n)[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u115f\u1160\u3164\uffa0\u2800\u034f\u180b-\u180e]/gu;
/* eslint-enable no-misleading-character-class */

const NAMES: Record<number, string> = {
  0x200b: 'ZERO WIDTH SPACE',
  0x200c: 'ZERO WIDTH NON-JOINER',
  0x200d: 'ZERO WIDTH JOINER',
  0x200e: 'LEFT-TO-RIGHT MARK',
  0x200f: 'RIGHT-TO-LEFT MARK',
  0x202a: 'LEFT-TO-RIGHT EMBEDDING',
  0x202b: 'RIGHT-TO-LEFT EMBEDDING',
  0x202c: 'POP DIRECTIONAL FORMATTING',
  0x202d: 'LEFT-TO-RIGHT OVERRIDE',
  0x202e: 'RIGHT-TO-LEFT OVERRIDE',
  0x2060: 'WORD JOINER',
  0x2066: 'LEFT-TO-RIGHT ISOLATE',
  0x2067: 'RIGHT-TO-LEFT ISOLATE',
  0x2068: 'FIRST STRONG ISOLATE',
  0x2069: 'POP DIRECTIONAL ISOLATE',
  0xfeff: 'ZERO WIDTH NO-BREAK SPACE',
  0x00ad: 'SOFT HYPHEN',
  0x00a0: 'NO-BREAK SPACE',
  0x061c: 'ARABIC LETTER MARK',
};

const codePoint = (c: string): string =>
  `U+${(c.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0')}`;

/** Whether text holds characters that visible() would mark. */
export const hasDeceptive = (text: string): boolean => text.search(DECEPTIVE) !== -1;

/**
 * Text from a request, escaped, with every deceptive character replaced by a
 * visible marker ("⟦U+202E⟧") that names it; the text can then neither run
 * code nor look like something it is not.
 */
export function visible(text: string): Html {
  let out = '';
  let last = 0;
  for (const m of text.matchAll(DECEPTIVE)) {
    const c = m[0];
    const at = m.index;
    out += escapeHtml(text.slice(last, at));
    const name = NAMES[c.codePointAt(0) as number];
    out += `<span class="cs-invisible" title="${escapeHtml(`${codePoint(c)}${name ? ` ${name}` : ''}`)}">⟦${codePoint(c)}⟧</span>`;
    last = at + c.length;
  }
  return new Html(out + escapeHtml(text.slice(last)));
}
