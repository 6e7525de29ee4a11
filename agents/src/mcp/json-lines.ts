// Newline-delimited JSON-RPC as the guard proxy reads it, with limits: a line
// longer than the limit is dropped (reported once, the next line is read as
// usual) rather than buffered without end, and nesting is measured without
// recursion, so no message can exhaust the stack of whatever serializes it.
import type { Readable } from 'node:stream';

/** Longest message the proxy takes from the MCP client. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Deepest message it takes: the JSON-RPC envelope is 3 levels, so tool arguments get 61. */
export const MAX_MESSAGE_DEPTH = 64;

export interface LineHandlers {
  line(text: string): void;
  /** A line of more than maxBytes: its bytes were dropped. */
  tooLong(bytes: number): void;
  end(): void;
}

/** Calls handlers.line for each line of `input` (without its \n or \r\n). */
export function readLines(input: Readable, maxBytes: number, handlers: LineHandlers): void {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let dropping = false;
  let dropped = 0;
  const finishLine = (last: Buffer) => {
    if (dropping) {
      handlers.tooLong(dropped + last.length);
      dropping = false;
      dropped = 0;
      return;
    }
    const whole = pending.length === 0 ? last : Buffer.concat([...pending, last]);
    pending = [];
    pendingBytes = 0;
    const end = whole.length > 0 && whole[whole.length - 1] === 0x0d ? whole.length - 1 : whole.length;
    handlers.line(whole.toString('utf8', 0, end));
  };
  input.on('data', (chunk: Buffer | string) => {
    let data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    for (let newline = data.indexOf(0x0a); newline !== -1; newline = data.indexOf(0x0a)) {
      const part = data.subarray(0, newline);
      if (!dropping && pendingBytes + part.length > maxBytes) {
        dropping = true;
        dropped = pendingBytes;
        pending = [];
        pendingBytes = 0;
      }
      finishLine(part);
      data = data.subarray(newline + 1);
    }
    if (data.length === 0) return;
    if (dropping) {
      dropped += data.length;
    } else if (pendingBytes + data.length > maxBytes) {
      dropping = true;
      dropped = pendingBytes + data.length;
      pending = [];
      pendingBytes = 0;
    } else {
      pending.push(Buffer.from(data));
      pendingBytes += data.length;
    }
  });
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    if (dropping) handlers.tooLong(dropped);
    else if (pendingBytes > 0) finishLine(Buffer.alloc(0));
    handlers.end();
  };
  input.on('end', end);
  input.on('close', end);
  input.on('error', end);
}

/** Whether a parsed JSON value nests deeper than `max` levels (an object or array is one level), found without recursion. */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop() as [unknown, number];
    if (current === null || typeof current !== 'object') continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(current) ? current : Object.values(current)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
  return false;
}
