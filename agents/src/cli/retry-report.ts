// How the CLI reports retries and its version.
import { readFileSync } from 'node:fs';
import type { CountersignClientError } from '../sdk/errors.js';

/**
 * What a person sees while the broker is unreachable: on a terminal, the reason once and then
 * nothing until it answers or retries run out; in logs (CI), one short line per retry.
 */
export function retryReporter(
  terminal: boolean,
  print: (line: string) => void = (line) => void process.stderr.write(`${line}\n`),
): (e: CountersignClientError, attempt: number, delayMs: number) => void {
  return (e, attempt, delay) => {
    if (attempt === 1) print(`${e.message}\nretrying for a few seconds${terminal ? ' (Ctrl-C stops)' : ''}`);
    else if (!terminal) print(`retrying in ${Math.round(delay)} ms (attempt ${attempt + 1})`);
  };
}

/** The version in agents/package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
    .version;
}
