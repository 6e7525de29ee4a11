#!/usr/bin/env node
// Builds, then runs every *.test.ts in the workspace with node's test runner (through tsx),
// each test at most 60 s (scripts/test-timeout.mjs), each file at most 5 minutes.
// Arguments narrow the run: `npm test -- broker` runs files whose path contains "broker".
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { redisAnswers, slowestLines, summaryLines, tapCounts } from './test-summary.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const skip = new Set(['node_modules', '.git', '.countersign', 'dist']);

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    if (skip.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...find(path));
    else if (name.endsWith('.test.ts')) out.push(relative(root, path));
  }
  return out;
}

const filters = process.argv.slice(2);
const files = find(root)
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  process.stderr.write(`no test files match ${filters.join(' ')}\n`);
  process.exit(1);
}
// Longest first, so the files that start last are short ones and the lanes end close together:
// by each file's time in the previous run (kept under node_modules/.cache), else the
// whole-system tests (test/) before the packages' own.
const timesFile = join(root, 'node_modules', '.cache', 'countersign', 'test-durations.json');
let previousTimes = {};
try {
  previousTimes = JSON.parse(readFileSync(timesFile, 'utf8'));
} catch {
  // First run here: no times yet.
}
const expected = (f) => previousTimes[f] ?? (f.startsWith('test/') ? 20_000 : 2_000);
files.sort((a, b) => expected(b) - expected(a) || a.localeCompare(b));

// Most tests need a real Redis; without one they end "cancelled" after long timeouts.
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
if (!(await redisAnswers(redisUrl))) {
  process.stderr.write(
    [
      `No Redis answers at ${redisUrl}${process.env.REDIS_URL ? ' (REDIS_URL)' : ''}: the tests need a real one.`,
      'Start one, for example:',
      "  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
      '(on Debian or Ubuntu: apt-get install redis-server), or point REDIS_URL at yours.',
      '.ci/run installs and starts everything the tests need, then runs npm test.',
      '',
    ].join('\n'),
  );
  process.exit(1);
}

const concurrency = process.env.TEST_CONCURRENCY ?? '2';
// The usual report on stdout, and TAP in a file for the closing line.
const scratch = mkdtempSync(join(tmpdir(), 'countersign-test-'));
const tapFile = join(scratch, 'report.tap');
const durationsFile = join(scratch, 'durations.json');
// Build first (incremental: about a second when dist/ is current), so the processes the tests
// start can run the compiled JavaScript: a CLI or broker from dist/ starts several times faster
// than through tsx, and the e2e tests start hundreds of them.
const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) {
  process.stderr.write('npm run build failed: the tests run the processes they start from dist/\n');
  process.exit(build.status || 1);
}
// The test files themselves import the workspace packages from their TypeScript sources (the
// "countersign-source" export condition, passed to the runner and so to each test file's
// process), and every node process they start inherits NODE_OPTIONS without it, so the bins'
// `#cli` and the packages' exports resolve to the dist/ just built. npm_config_node_options
// keeps .npmrc from putting the condition back for `npx countersign` and `npm start` run by
// the docs tests. A test file run on its own (`npx tsx --test FILE`) gets the condition from
// .npmrc for itself and its children alike: all from source, never a stale dist/.
const SOURCE = '--conditions=countersign-source';
const nodeOptions = (process.env.NODE_OPTIONS ?? '')
  .split(/\s+/)
  .filter((o) => o !== '' && o !== SOURCE)
  .join(' ');
// (npm ignores an empty npm_config_node_options; a blank one counts.)
const env = { ...process.env, NODE_OPTIONS: nodeOptions, npm_config_node_options: nodeOptions || ' ' };
const result = spawnSync(
  process.execPath,
  [
    SOURCE,
    '--import',
    'tsx',
    // Each test() / it() at most 60 s (see the file); --test-timeout below bounds each whole file.
    '--import',
    join(root, 'scripts', 'test-timeout.mjs'),
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-timeout=300000',
    `--test-reporter=${process.stdout.isTTY ? 'spec' : 'tap'}`,
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tapFile}`,
    `--test-reporter=${join(root, 'scripts', 'test-durations.mjs')}`,
    `--test-reporter-destination=${durationsFile}`,
    ...files,
  ],
  { cwd: root, env, stdio: 'inherit' },
);
let tap = '';
let durations = {};
try {
  tap = readFileSync(tapFile, 'utf8');
  durations = JSON.parse(readFileSync(durationsFile, 'utf8'));
} catch {
  // The runner did not start (or ended before its reporters did); its exit status says why.
}
rmSync(scratch, { recursive: true, force: true });
try {
  const times = { ...previousTimes };
  for (const [file, ms] of Object.entries(durations)) times[relative(root, file)] = Math.round(ms);
  mkdirSync(dirname(timesFile), { recursive: true });
  writeFileSync(timesFile, `${JSON.stringify(times, null, 1)}\n`);
} catch {
  // Only the order of the next run depends on it.
}
const counts = tapCounts(tap);
process.stdout.write(`\n${[...slowestLines(durations, root), ...summaryLines(counts)].join('\n')}\n`);
process.exit(result.status === 0 && counts.fail + counts.cancelled === 0 ? 0 : result.status || 1);
