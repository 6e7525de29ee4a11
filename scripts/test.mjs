#!/usr/bin/env node
// Builds, then runs every *.test.ts in the workspace with node's test runner (through tsx),
// each test at most 60 s (scripts/test-timeout.mjs), the files sharing a few processes (scripts/test-plan.mjs).
// Arguments narrow the run: `npm test -- broker` runs files whose path contains "broker".
// With --checks (as `npm test` runs it), the checks (scripts/check.mjs: lint, typecheck, format,
// dependency rules) run beside the tests at a lower priority, and their output comes at the end.
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GROUP_FILE_PREFIX, groupSource } from './test-group.mjs';
import { groupTimeoutMs, planGroups, waitingFiles } from './test-plan.mjs';
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

const withChecks = process.argv.includes('--checks');
const filters = process.argv.slice(2).filter((a) => a !== '--checks');
const selected = find(root)
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (selected.length === 0) {
  process.stderr.write(`no test files match ${filters.join(' ')}\n`);
  process.exit(1);
}
// The files share a few processes (scripts/test-plan.mjs says why), each a generated file that
// imports its files one after another (scripts/test-group.mjs); the runner still reports (and
// times, for the plan of the next run) each test by the file it is in. TEST_GROUPS sets how many
// processes (default: three per lane); TEST_ISOLATE=1 runs every file in its own process (to rule
// out one file's tests affecting another's).
const cacheDir = join(root, 'node_modules', '.cache', 'countersign');
// Each file's time in the previous run (kept under node_modules/.cache), else a guess: the
// whole-system tests (test/) take longer than the packages' own.
const timesFile = join(cacheDir, 'test-durations.json');
let previousTimes = {};
try {
  previousTimes = JSON.parse(readFileSync(timesFile, 'utf8'));
} catch {
  // First run here: no times yet.
}
const expected = (f) => previousTimes[f] ?? (f.startsWith('test/') ? 20_000 : 2_000);
/** A whole number >= 1 from the environment variable `name`, else `fallback`; anything else stops the run. */
function count(name, fallback) {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  if (!/^[1-9]\d*$/.test(value)) {
    process.stderr.write(`${name}: expected a whole number of at least 1, got ${JSON.stringify(value)}\n`);
    process.exit(1);
  }
  return Number(value);
}
// And each file's CPU time in it (milliseconds, its process's and its children's).
const cpuFile = join(cacheDir, 'test-cpu.json');
let previousCpu = {};
try {
  previousCpu = JSON.parse(readFileSync(cpuFile, 'utf8'));
} catch {
  // First run here, or before this was kept.
}
const concurrency = count('TEST_CONCURRENCY', 2);
const isolate = process.env.TEST_ISOLATE === '1';
// The files that mostly wait run in a process of their own, in a lane of their own beside the
// others (they would leave a core idle in theirs); the others then get one process per lane, so
// that no more than `concurrency` busy processes ever run at once.
const waiting = isolate
  ? []
  : waitingFiles(
      selected,
      (f) => previousTimes[f],
      (f) => previousCpu[f],
    );
const busy = selected.filter((f) => !waiting.includes(f));
const groupCount = isolate ? selected.length : count('TEST_GROUPS', waiting.length > 0 ? concurrency : 3 * concurrency);
// Longest first, so the processes that start last are short ones and the lanes end close together.
const groups = [
  ...(waiting.length > 0 ? planGroups(waiting, expected, 1) : []),
  ...planGroups(busy, expected, groupCount),
];
const lanes = concurrency + (waiting.length > 0 ? 1 : 0);

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

// The usual report on stdout, and TAP in a file for the closing line.
const scratch = mkdtempSync(join(tmpdir(), 'countersign-test-'));
const tapFile = join(scratch, 'report.tap');
const durationsFile = join(scratch, 'durations.json');
// The group files live in this run's own directory, so two runs in one checkout (`npm test --
// FILTER` meanwhile) cannot change what the other runs. A group of one file is a group file too:
// its reports then name the file the same way (each file's tests are a suite named after it).
const files = groups.map((group, i) => {
  const groupFile = join(scratch, `${GROUP_FILE_PREFIX}${i + 1}.test.mjs`);
  writeFileSync(groupFile, groupSource(group.files.map((f) => ({ name: f, url: pathToFileURL(join(root, f)).href }))));
  return groupFile;
});
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
// scripts/test-bin/npx runs the docs' `npx <bin>` commands without npm's start-up (see the file).
const env = {
  ...process.env,
  PATH: [join(root, 'scripts', 'test-bin'), process.env.PATH].filter(Boolean).join(delimiter),
  NODE_OPTIONS: nodeOptions,
  TEST_CPU_FILE: join(scratch, 'cpu.jsonl'),
  npm_config_node_options: nodeOptions || ' ',
};
// The checks beside the tests: both are bound by CPU, and the tests leave some of it idle (a
// lane waiting for a broker to start, a browser, Redis failing over). At nice 10 the checks
// take mostly what the tests leave, so the tests run at about their usual pace and the checks
// finish in the gaps or after; before, `npm test` ran them first (about 100 CPU-seconds on a
// clean clone, 40-70 s of wall time) and only then the tests.
let checks;
if (withChecks) {
  const log = openSync(join(scratch, 'checks.log'), 'w');
  // TEST_CHECKS names the checks to run (npm scripts, as `node scripts/check.mjs NAME...` takes them).
  const names = (process.env.TEST_CHECKS ?? '').split(/\s+/).filter(Boolean);
  const child = spawn(process.execPath, [join(root, 'scripts', 'check.mjs'), ...names], {
    cwd: root,
    env: { ...process.env, CHECK_NICE: process.env.CHECK_NICE ?? '10' },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  checks = new Promise((resolve) => {
    child.once('error', (error) => {
      process.stderr.write(`checks: could not start scripts/check.mjs: ${error.message}\n`);
      resolve(1);
    });
    child.once('exit', (code) => resolve(code));
  });
  process.stdout.write(
    'checks (lint, typecheck, format, dependency rules) run beside the tests: their output comes at the end\n',
  );
}
// scripts/test-runner.mjs runs the files in the order above (`node --test` would sort them by
// name); the options before it are what each test file's process gets.
const result = spawnSync(
  process.execPath,
  [
    SOURCE,
    '--import',
    'tsx',
    // Each test() / it() at most 60 s, each hook 120 s (see the file); timeoutMs bounds each process.
    '--import',
    join(root, 'scripts', 'test-timeout.mjs'),
    join(root, 'scripts', 'test-runner.mjs'),
    JSON.stringify({
      files,
      concurrency: lanes,
      timeoutMs: groupTimeoutMs(Math.max(...groups.map((g) => g.expectedMs))),
      outputs: [
        { reporter: process.stdout.isTTY ? 'spec' : 'tap', destination: 'stdout' },
        { reporter: 'tap', destination: tapFile },
        { reporter: join(root, 'scripts', 'test-durations.mjs'), destination: durationsFile },
      ],
    }),
  ],
  { cwd: root, env, stdio: 'inherit' },
);
let checksFailed = false;
if (checks !== undefined) {
  const code = await checks;
  checksFailed = code !== 0;
  let output = '';
  try {
    output = readFileSync(join(scratch, 'checks.log'), 'utf8');
  } catch {
    // (nothing written)
  }
  process.stdout.write(`\n${output}\nchecks: ${checksFailed ? `FAILED (exit ${code})` : 'ok'}\n`);
}
let tap = '';
let durations = {};
try {
  tap = readFileSync(tapFile, 'utf8');
  durations = JSON.parse(readFileSync(durationsFile, 'utf8'));
} catch {
  // The runner did not start (or ended before its reporters did); its exit status says why.
}
// Each file's CPU time (scripts/test-group.mjs measures it), kept for the next run's plan;
// with TEST_CPU=1, the files that took the most are printed.
let cpuRows = [];
try {
  cpuRows = readFileSync(join(scratch, 'cpu.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
} catch {
  // No group process wrote any.
}
let cpuLines = [];
if (process.env.TEST_CPU === '1' && cpuRows.length > 0) {
  const rows = [...cpuRows].sort((a, b) => b.own + b.children - (a.own + a.children));
  const total = rows.reduce((sum, r) => sum + r.own + r.children, 0);
  cpuLines = [
    `CPU of the test files (own process + processes they started), ${(total / 100).toFixed(0)} s in all:`,
    ...rows
      .slice(0, 25)
      .map(
        (r) =>
          `  ${((r.own + r.children) / 100).toFixed(1).padStart(6)} s  (${(r.own / 100).toFixed(1)} + ${(r.children / 100).toFixed(1)})  ${r.name}`,
      ),
  ];
}
rmSync(scratch, { recursive: true, force: true });
try {
  const times = { ...previousTimes };
  for (const [file, ms] of Object.entries(durations)) {
    // (not a group file's own entry, when its process failed: its name changes every run)
    const name = isAbsolute(file) ? relative(root, file) : file;
    if (selected.includes(name)) times[name] = Math.round(ms);
  }
  mkdirSync(dirname(timesFile), { recursive: true });
  writeFileSync(timesFile, `${JSON.stringify(times, null, 1)}\n`);
  const cpu = { ...previousCpu };
  // (in ticks of 10 ms: USER_HZ is 100 on Linux)
  for (const r of cpuRows) if (selected.includes(r.name)) cpu[r.name] = (r.own + r.children) * 10;
  writeFileSync(cpuFile, `${JSON.stringify(cpu, null, 1)}\n`);
} catch {
  // Only the order of the next run depends on it.
}
const counts = tapCounts(tap);
process.stdout.write(
  `\n${[...cpuLines, ...slowestLines(durations, root), ...summaryLines(counts, result.status !== 0)].join('\n')}\n`,
);
process.exit(result.status === 0 && counts.fail + counts.cancelled === 0 && !checksFailed ? 0 : result.status || 1);
