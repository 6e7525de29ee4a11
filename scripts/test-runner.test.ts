// scripts/test.mjs, what `npm test` runs: it says how to start Redis before anything else,
// and its closing line counts cancelled tests as failed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
// @ts-expect-error: a plain .mjs script without type declarations
import { slowestLines, summaryLines, tapCounts } from './test-summary.mjs';
// @ts-expect-error: a plain .mjs reporter without type declarations
import durations from './test-durations.mjs';

const SCRIPT = fileURLToPath(new URL('./test.mjs', import.meta.url));

/** A port on which nothing listens. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('npm test (scripts/test.mjs)', () => {
  it('without Redis, stops at once and says how to start one', async () => {
    const port = await closedPort();
    const child = spawn(process.execPath, [SCRIPT, 'scripts/test-runner'], {
      env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${port}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`No Redis answers at redis://127\\.0\\.0\\.1:${port} \\(REDIS_URL\\)`));
    assert.match(stderr, /redis-server --daemonize yes/);
  });

  it('counts cancelled tests as failed in the closing line', () => {
    const tap = [
      'TAP version 13',
      'not ok 1 - suite',
      '# tests 19',
      '# suites 1',
      '# pass 0',
      '# fail 0',
      '# cancelled 19',
      '# skipped 0',
      '# todo 0',
    ].join('\n');
    const counts = tapCounts(tap);
    assert.deepEqual(
      { pass: counts.pass, fail: counts.fail, cancelled: counts.cancelled },
      { pass: 0, fail: 0, cancelled: 19 },
    );
    const [line] = summaryLines(counts);
    assert.match(line, /^tests: 0 passed, 19 failed \(0 failed, 19 cancelled/);
    assert.equal(summaryLines(tapCounts('# pass 7\n# fail 1\n# cancelled 0\n'))[0], 'tests: 7 passed, 1 failed');
  });

  it('prints the slowest test files, each the sum of its top-level tests', async () => {
    const events = [
      { type: 'test:pass', data: { nesting: 0, file: '/r/a.test.ts', details: { duration_ms: 1500 } } },
      { type: 'test:pass', data: { nesting: 1, file: '/r/a.test.ts', details: { duration_ms: 900 } } },
      { type: 'test:fail', data: { nesting: 0, file: '/r/a.test.ts', details: { duration_ms: 500 } } },
      { type: 'test:pass', data: { nesting: 0, file: '/r/b.test.ts', details: { duration_ms: 4000 } } },
      { type: 'test:diagnostic', data: { nesting: 0, message: 'tests 3' } },
    ];
    async function* source() {
      yield* events;
    }
    let json = '';
    for await (const chunk of durations(source())) json += chunk;
    const byFile = JSON.parse(json) as Record<string, number>;
    assert.deepEqual(byFile, { '/r/a.test.ts': 2000, '/r/b.test.ts': 4000 });
    assert.deepEqual(slowestLines(byFile, '/r', 1), ['slowest 1 test files:', '     4.0 s  b.test.ts']);
    assert.deepEqual(slowestLines({}, '/r'), []);
  });
});
