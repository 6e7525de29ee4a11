#!/usr/bin/env node
// Runs every *.test.ts in the workspace with node's test runner (through tsx).
// Arguments narrow the run: `npm test -- broker` runs files whose path contains "broker".
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
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
// The workspace packages from their TypeScript sources, never a stale dist/ (the
// "countersign-source" export condition; .npmrc sets it for npm and npx too), for the
// test files and every node process they start.
const SOURCE = '--conditions=countersign-source';
const nodeOptions = process.env.NODE_OPTIONS ?? '';
const env = {
  ...process.env,
  NODE_OPTIONS: nodeOptions.includes(SOURCE) ? nodeOptions : `${nodeOptions} ${SOURCE}`.trim(),
};
const result = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
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
const counts = tapCounts(tap);
process.stdout.write(`\n${[...slowestLines(durations, root), ...summaryLines(counts)].join('\n')}\n`);
process.exit(result.status === 0 && counts.fail + counts.cancelled === 0 ? 0 : result.status || 1);
