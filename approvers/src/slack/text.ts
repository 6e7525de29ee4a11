// Text for Slack: escaping of untrusted values and truncation that never
// splits a character. Everything a requester controls (operation, resource,
// parameters, reason, ticket, names) is escaped, so it can neither mention
// (<!here>) nor disguise a link (<https://evil|prod/web>).

/** Escapes the three characters Slack's mrkdwn gives meaning to. */
export const escapeMrkdwn = (text: string): string =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Shortens to at most `max` UTF-16 units, ending with `marker`, without splitting a surrogate pair. */
export function truncate(text: string, max: number, marker = '…'): string {
  if (text.length <= max) return text;
  let cut = Math.max(0, max - marker.length);
  const code = text.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
  return text.slice(0, cut) + marker;
}

/** Text inside a ``` block: escaped, and with fences broken so a value cannot close the block. */
export const codeBlockText = (text: string): string => escapeMrkdwn(text).replace(/```/g, '`\u200b`\u200b`');

/** Inline `code`: escaped, backticks replaced so the span cannot end early. */
export const inlineCode = (text: string): string => `\`${escapeMrkdwn(text).replace(/`/g, "'")}\``;

/** Slack renders <!date^...> in each reader's own time zone; the fallback is UTC. */
export function slackDate(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const fallback = new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return `<!date^${seconds}^{date_short_pretty} {time}|${fallback}>`;
}
