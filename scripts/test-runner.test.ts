// scripts/test.mjs, what `npm test` runs: it says how to start Redis before anything else,
// and its closing line counts cancelled tests as failed; the files run in the order it gives
// (scripts/test-runner.mjs), files share processes planned by expected time (scripts/test-plan.mjs)
// that cannot lose tests silently (scripts/test-group.mjs), and a hook that hangs fails alone (scripts/test-timeout.mjs).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
// @ts-expect-error: a plain .mjs script without type declarations
import { groupSource } from './test-group.mjs';
// @ts-expect-error: a plain .mjs script without type declarations
import { slowestLines, summaryLines, tapCounts } from './test-summary.mjs';
// @ts-expect-error: a plain .mjs script without type declarations
import { groupTimeoutMs, planGroups, waitingFiles } from './test-plan.mjs';
// @ts-expect-error: a plain .mjs reporter without type declarations
import durations from './test-durations.mjs';

const SCRIPT = fileURLToPath(new URL('./test.mjs', import.meta.url));
const RUNNER = fileURLToPath(new URL('./test-runner.mjs', import.meta.url));
const TIMEOUTS = fileURLToPath(new URL('./test-timeout.mjs', import.meta.url));

/** A port on which nothing listens. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** process.env without the named variables. */
const envWithout = (...names: string[]): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !names.includes(k)));

/** Runs a command to its end; its exit code and what it printed. */
function runProcess(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeout?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('npm test (scripts/test.mjs)', () => {
  it('without Redis, stops at once and says how to start one', async () => {
    const port = await closedPort();
    const { code, stderr } = await runProcess(process.execPath, [SCRIPT, 'scripts/test-runner'], {
      env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${port}` },
    });
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`No Redis answers at redis://127\\.0\\.0\\.1:${port} \\(REDIS_URL\\)`));
    assert.match(stderr, /redis-server --daemonize yes/);
  });

  it('with --checks, runs the checks beside the tests and fails when a check fails, the tests passing', async () => {
    const { code, stdout } = await runProcess(
      process.execPath,
      [SCRIPT, '--checks', 'approvers/test/slack/signature.test.ts'],
      // (a check that is no npm script fails as a failed check does)
      { env: { ...envWithout('NODE_TEST_CONTEXT'), TEST_CHECKS: 'metadata no-such-check' } },
    );
    assert.match(stdout, /^tests: [1-9]\d* passed, 0 failed$/m);
    assert.match(stdout, /> npm run metadata: ok in/);
    assert.match(stdout, /> npm run no-such-check: FAILED/);
    assert.match(stdout, /^checks: FAILED \(exit 1\)$/m);
    assert.equal(code, 1);
  });

  it('refuses a TEST_GROUPS or TEST_CONCURRENCY that is not a whole number of at least 1', async () => {
    for (const [name, value] of [
      ['TEST_GROUPS', 'x'],
      ['TEST_CONCURRENCY', '0'],
    ] as const) {
      const { code, stderr } = await runProcess(process.execPath, [SCRIPT, 'approvers/test/slack/signature.test.ts'], {
        env: { ...process.env, [name]: value },
      });
      assert.equal(code, 1);
      assert.equal(stderr, `${name}: expected a whole number of at least 1, got "${value}"\n`);
    }
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
    // (a failed suite or test process is not in TAP's counts: the run's status says it failed)
    const suiteFailed = summaryLines(tapCounts('# pass 2\n# fail 0\n# cancelled 0\n'), true);
    assert.equal(suiteFailed[0], 'tests: 2 passed, 0 failed');
    assert.match(suiteFailed[1], /^the run FAILED outside any test/);
    assert.equal(summaryLines(tapCounts('# pass 2\n# fail 0\n'), false).length, 1);
  });

  it('prints the slowest test files, each the sum of its top-level tests', async () => {
    const events = [
      { type: 'test:pass', data: { nesting: 0, file: '/r/a.test.ts', details: { duration_ms: 1500 } } },
      { type: 'test:pass', data: { nesting: 1, file: '/r/a.test.ts', details: { duration_ms: 900 } } },
      { type: 'test:fail', data: { nesting: 0, file: '/r/a.test.ts', details: { duration_ms: 500 } } },
      { type: 'test:pass', data: { nesting: 0, file: '/r/b.test.ts', details: { duration_ms: 4000 } } },
      // (a file's suite in a group process: named after the file, its location the group file)
      {
        type: 'test:pass',
        data: {
          nesting: 0,
          name: 'c.test.ts',
          file: '/tmp/x/countersign-group-1.test.mjs',
          details: { duration_ms: 700 },
        },
      },
      { type: 'test:diagnostic', data: { nesting: 0, message: 'tests 3' } },
    ];
    async function* source() {
      yield* events;
    }
    let json = '';
    for await (const chunk of durations(source())) json += chunk;
    const byFile = JSON.parse(json) as Record<string, number>;
    assert.deepEqual(byFile, { '/r/a.test.ts': 2000, '/r/b.test.ts': 4000, 'c.test.ts': 700 });
    assert.deepEqual(slowestLines(byFile, '/r', 1), ['slowest 1 test files:', '     4.0 s  b.test.ts']);
    assert.deepEqual(slowestLines({}, '/r'), []);
  });
});

describe('the test runner (scripts/test-runner.mjs, test-group.mjs, test-timeout.mjs)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cs-test-runner-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A test file in the scratch directory; returns its path. */
  const plant = async (name: string, body: string) => {
    const path = join(dir, name);
    await writeFile(
      path,
      `import assert from 'node:assert/strict';\nimport { after, before, describe, test } from 'node:test';\n${body}\n`,
    );
    return path;
  };

  /** Runs files through test-runner.mjs (one at a time), with test-timeout.mjs preloaded; the TAP report. */
  const runFiles = async (files: string[], env: Record<string, string> = {}) => {
    const options = { files, concurrency: 1, timeoutMs: 30_000, outputs: [{ reporter: 'tap', destination: 'stdout' }] };
    const { code, stdout: tap } = await runProcess(
      process.execPath,
      ['--import', TIMEOUTS, RUNNER, JSON.stringify(options)],
      // (without this runner's own NODE_TEST_CONTEXT, which would make the child report to it instead)
      { env: { ...envWithout('NODE_TEST_CONTEXT'), ...env } },
    );
    // (every level: a subtest's line comes before its suite's)
    const results = [...tap.matchAll(/^ *(ok|not ok) \d+ - (.*)$/gm)].map((m) => `${m[1]} ${m[2]}`);
    return { code, tap, results, counts: tapCounts(tap) as { pass: number; fail: number; cancelled: number } };
  };

  /** The group file scripts/test.mjs would write for these files, named `name`; its path. */
  const writeGroup = async (name: string, files: string[]) => {
    const group = join(dir, name);
    await writeFile(
      group,
      groupSource(files.map((f) => ({ name: basename(f), url: pathToFileURL(f).href }))) as string,
    );
    return group;
  };

  /** Runs files in one process, as scripts/test.mjs does, through a group file named `name`. */
  const runGroup = async (name: string, files: string[], env: Record<string, string> = {}) => {
    const group = await writeGroup(name, files);
    return { group, ...(await runFiles([group], env)) };
  };

  it('runs the files in the order given, not sorted by name as `node --test` would', async () => {
    const files = [];
    for (const name of ['zz', 'aa', 'mm']) files.push(await plant(`${name}.test.mjs`, `test('${name}', () => {});`));
    const { code, results } = await runFiles(files);
    assert.equal(code, 0);
    assert.deepEqual(results, ['ok zz', 'ok aa', 'ok mm']);
  });

  it('a shared process: each file is a suite; one that fails to load or fails is reported, and the files after it still run', async () => {
    const files = [
      await plant('g1.test.mjs', `test('first', () => {});`),
      await plant('g2.test.mjs', `throw new Error('planted load error');`),
      await plant('g3.test.mjs', `test('fails', () => assert.fail('planted failure'));`),
      await plant('g4.test.mjs', `describe('suite', () => { test('last', () => {}); });`),
    ];
    const { code, results, counts } = await runGroup('group-a.test.mjs', files);
    assert.equal(code, 1);
    assert.deepEqual(results, [
      'ok first',
      'ok g1.test.mjs',
      'not ok loads',
      'not ok g2.test.mjs',
      'not ok fails',
      'not ok g3.test.mjs',
      'ok last',
      'ok suite',
      'ok g4.test.mjs',
    ]);
    assert.equal(counts.fail, 2);
  });

  it('a shared process imports a file only when the one before has ended, so its module-level code runs just before its tests', async () => {
    const files = [
      await plant(
        'i1.test.mjs',
        `globalThis.firstEnded = false;
describe('first', () => {
  test('slow', async () => {
    await new Promise((resolve) => setTimeout(resolve, 200));
  });
  after(() => (globalThis.firstEnded = true));
});
test('skipped', { skip: true }, () => {});`,
      ),
      await plant(
        'i2.test.mjs',
        `const firstEndedAtImport = globalThis.firstEnded;
test('imported after the first file ended', () => assert.equal(firstEndedAtImport, true));`,
      ),
    ];
    const { code, results } = await runGroup('group-c.test.mjs', files);
    assert.deepEqual(results.slice(-2), ['ok imported after the first file ended', 'ok i2.test.mjs']);
    assert.equal(code, 0);
  });

  it("with TEST_CPU_FILE, writes each file's CPU time: its own process's and that of the processes it waited for", async () => {
    const files = [
      await plant(
        'j1.test.mjs',
        `test('spins', () => { const start = process.cpuUsage(); while (process.cpuUsage(start).user < 300_000); });`,
      ),
      await plant(
        'j2.test.mjs',
        `import { execFileSync } from 'node:child_process';
test('starts a process that spins', () => {
  execFileSync(process.execPath, ['-e', 'const start = process.cpuUsage(); while (process.cpuUsage(start).user < 300_000);']);
});`,
      ),
    ];
    const cpuFile = join(dir, 'cpu.jsonl');
    const { code } = await runGroup('group-d.test.mjs', files, { TEST_CPU_FILE: cpuFile });
    assert.equal(code, 0);
    const rows = (await readFile(cpuFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { name: string; own: number; children: number });
    assert.deepEqual(
      rows.map((r) => r.name),
      ['j1.test.mjs', 'j2.test.mjs'],
    );
    // (ticks of 10 ms; each spins until it has used 300 ms of CPU, however busy the machine)
    assert.ok((rows[0]?.own ?? 0) >= 20, JSON.stringify(rows));
    assert.ok((rows[1]?.children ?? 0) >= 20, JSON.stringify(rows));
  });

  it('a shared process: a test that ends it early with process.exit(0) fails the run', async () => {
    const files = [
      await plant('h1.test.mjs', `test('first', () => {});`),
      await plant('h2.test.mjs', `test('exits', () => process.exit(0));`),
      await plant('h3.test.mjs', `test('fails but would never be reported', () => assert.fail('planted'));`),
    ];
    const { group, code, results, counts } = await runGroup('group-b.test.mjs', files);
    assert.equal(code, 1);
    assert.equal(results[0], 'ok first');
    assert.ok(counts.fail + counts.cancelled >= 1, `the run must fail: ${results.join('; ')}`);
    assert.ok(
      results.some((r) => r === `not ok ${group}`),
      `the group file itself fails: ${results.join('; ')}`,
    );
  });

  it('a shared process: a test awaiting a promise that never settles fails the process, naming its file', async () => {
    const files = [
      await plant('k1.test.mjs', `test('waits forever', () => new Promise(() => {}));`),
      await plant('k2.test.mjs', `test('never reached', () => {});`),
    ];
    const group = await writeGroup('group-e.test.mjs', files);
    const { code, stderr } = await runProcess(process.execPath, ['--import', TIMEOUTS, group], {
      env: envWithout('NODE_TEST_CONTEXT'),
    });
    assert.notEqual(code, 0);
    assert.match(stderr, /event loop emptied while k1\.test\.mjs was running/);
  });

  it('no test file awaits test(), it() or describe() at its top level (in its group they would not have run yet)', async () => {
    const root = fileURLToPath(new URL('../', import.meta.url));
    const offenders: string[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const entry of await readdir(d, { withFileTypes: true })) {
        if (['node_modules', '.git', 'dist', '.countersign'].includes(entry.name)) continue;
        const path = join(d, entry.name);
        if (entry.isDirectory()) await walk(path);
        else if (
          entry.name.endsWith('.test.ts') &&
          /^await (test|it|describe|suite)\b/m.test(await readFile(path, 'utf8'))
        )
          offenders.push(path);
      }
    };
    await walk(root);
    assert.deepEqual(offenders, []);
  });

  it('a hook that hangs fails after TEST_HOOK_TIMEOUT_MS, and the tests after it still run', async () => {
    const file = await plant(
      'hook.test.mjs',
      `const alive = setInterval(() => {}, 1000);
describe('hangs', () => {
  before(() => new Promise(() => {}));
  after(() => clearInterval(alive));
  test('never runs', () => {});
});
test('runs after it', () => {});`,
    );
    const started = Date.now();
    const { code, results } = await runFiles([file], { TEST_HOOK_TIMEOUT_MS: '500' });
    // (the file's own limit here is 30 s: the hook's, not the file's, ended it)
    assert.ok(Date.now() - started < 25_000, `took ${Date.now() - started} ms`);
    assert.equal(code, 1);
    assert.deepEqual(results.slice(-2), ['not ok hangs', 'ok runs after it']);
  });
});

describe('the plan of processes (scripts/test-plan.mjs)', () => {
  const times: Record<string, number> = { a: 50, b: 40, c: 30, d: 20, e: 10, f: 10 };
  const expected = (f: string) => times[f] as number;
  type Group = { files: string[]; expectedMs: number };

  it('splits the files into groups of about the same expected time, longest first', () => {
    const groups = planGroups(Object.keys(times), expected, 2) as Group[];
    assert.deepEqual(groups, [
      { files: ['a', 'd', 'e'], expectedMs: 80 },
      { files: ['b', 'c', 'f'], expectedMs: 80 },
    ]);
  });

  it('never makes more groups than files, nor fewer than one', () => {
    const one = planGroups(['a', 'b'], expected, 5) as Group[];
    assert.deepEqual(
      one.map((g) => g.files),
      [['a'], ['b']],
    );
    assert.deepEqual(
      (planGroups(['a', 'b'], expected, 0) as Group[]).map((g) => g.files),
      [['a', 'b']],
    );
  });

  it('picks the files that mostly waited in the last run: 10 s or more, under 35% of it on CPU', () => {
    const wall: Record<string, number> = { failover: 28_000, tour: 28_000, short: 4_000, fresh: 30_000 };
    const cpu: Record<string, number> = { failover: 9_000, tour: 25_000, short: 100 };
    assert.deepEqual(
      waitingFiles(
        Object.keys(wall),
        (f: string) => wall[f],
        (f: string) => cpu[f],
      ),
      ['failover'],
    );
  });

  it("bounds a group's process at three times its expected time, and at least 5 minutes", () => {
    assert.equal(groupTimeoutMs(10_000), 300_000);
    assert.equal(groupTimeoutMs(200_000), 600_000);
  });
});

describe("npm test's npx (scripts/test-bin/npx)", () => {
  const SHIM_DIR = fileURLToPath(new URL('./test-bin/', import.meta.url));
  const ROOT = fileURLToPath(new URL('../', import.meta.url));
  const npx = (args: string[], cwd: string) =>
    runProcess(join(SHIM_DIR, 'npx'), args, {
      cwd,
      env: { ...envWithout('npm_command'), PATH: `${SHIM_DIR}:${process.env.PATH ?? ''}`, npm_config_offline: 'true' },
    });

  it('runs a bin from node_modules/.bin of the directory or one above it, with its arguments', async () => {
    // (npm exec, the real npx, would set npm_command=exec for the command it runs)
    const r = await npx(
      ['tsx', '-e', 'console.log(JSON.stringify([process.env.npm_command, ...process.argv.slice(1)]))', 'a b', '--c'],
      join(ROOT, 'docs'),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [null, 'a b', '--c']);
  });

  it('leaves everything else to the real npx, next on PATH', async () => {
    const version = await npx(['--version'], ROOT);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout.trim(), /^\d+\.\d+\.\d+$/);
    // (no such bin here: the real npx looks it up and, offline, fails as npx does)
    const missing = await npx(['--no-install', 'countersign-no-such-bin'], dir);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /npm (error|ERR!)/);
  });

  it('finds the real npx past other copies of itself on PATH', async () => {
    const copies = [join(dir, 'a'), join(dir, 'b')];
    for (const copy of copies) {
      await mkdir(copy);
      await writeFile(join(copy, 'npx'), await readFile(join(SHIM_DIR, 'npx')), { mode: 0o755 });
    }
    const { code, stdout } = await runProcess(join(copies[0] as string, 'npx'), ['--version'], {
      env: { ...process.env, PATH: `${copies.join(':')}:${SHIM_DIR}:${process.env.PATH ?? ''}` },
      timeout: 20_000,
    });
    assert.equal(code, 0);
    assert.match(stdout.trim(), /^\d+\.\d+\.\d+$/);
  });

  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cs-npx-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
});
