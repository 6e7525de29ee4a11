// The guard proxy's reader: lines bounded in length, nesting measured without
// recursion (a message 20,000 levels deep is what broke it: issue 14.12).
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { nestedDeeperThan, readLines } from '../src/mcp/json-lines.js';

async function read(chunks: (string | Buffer)[], maxBytes: number) {
  const input = new PassThrough();
  const seen: string[] = [];
  const ended = new Promise<void>((resolve) =>
    readLines(input, maxBytes, {
      line: (l) => seen.push(`line:${l}`),
      tooLong: (n) => seen.push(`too long:${n}`),
      end: resolve,
    }),
  );
  for (const chunk of chunks) input.write(chunk);
  input.end();
  await ended;
  return seen;
}

describe('mcp-proxy: bounded JSON lines', () => {
  it('splits lines across chunks, takes \\r\\n and a last line without a newline', async () => {
    assert.deepEqual(await read(['{"a"', ':1}\n{"b":2}\r\n', '{"c"', ':3}'], 100), [
      'line:{"a":1}',
      'line:{"b":2}',
      'line:{"c":3}',
    ]);
  });

  it('keeps multi-byte characters split between chunks', async () => {
    const text = Buffer.from('"é€😀"\n');
    assert.deepEqual(await read([text.subarray(0, 2), text.subarray(2, 5), text.subarray(5)], 100), ['line:"é€😀"']);
  });

  it('drops a line longer than the limit, however it arrives, and reads the next one as usual', async () => {
    assert.deepEqual(await read(['x'.repeat(11), '\nok\n'], 10), ['too long:11', 'line:ok']);
    assert.deepEqual(await read(['xxxxxx', 'xxxxxx', 'xxx\nok\n'], 10), ['too long:15', 'line:ok']);
    assert.deepEqual(await read(['x'.repeat(25)], 10), ['too long:25']);
    assert.deepEqual(await read(['x'.repeat(10), '\n'], 10), [`line:${'x'.repeat(10)}`]);
  });

  it('measures nesting without recursion, objects and arrays alike', () => {
    const deep = JSON.parse(`${'['.repeat(20_000)}${']'.repeat(20_000)}`) as unknown;
    assert.equal(nestedDeeperThan(deep, 64), true);
    assert.equal(nestedDeeperThan({ a: [{ b: 1 }] }, 3), false);
    assert.equal(nestedDeeperThan({ a: [{ b: {} }] }, 3), true);
    assert.equal(nestedDeeperThan('text', 0), false);
    assert.equal(nestedDeeperThan([], 0), true);
  });
});
