#!/usr/bin/env node
// The checks `npm test` runs beside the tests (scripts/test.mjs --checks), two at a time
// (CHECK_CONCURRENCY), longest first:
// they are CPU-bound and independent, so on two cores this halves their wall time. Each one's
// output is printed when it ends; the exit status is 1 when any failed. Arguments name the npm
// scripts to run instead of all of them (`node scripts/check.mjs lint typecheck`).
import { spawn } from 'node:child_process';
import { setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// Longest first (CPU seconds on a clean clone: lint 54, typecheck 26, format:check 17, depcheck 4,
// proto:check 3), so the two lanes end close together.
const ALL = ['lint', 'typecheck', 'format:check', 'depcheck', 'proto:check', 'metadata'];
const names = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ALL;
const concurrency = Math.max(1, Number(process.env.CHECK_CONCURRENCY ?? 2));
// CHECK_NICE lowers this process's priority (and so the checks' own, which inherit it): `npm test`
// runs the checks alongside the tests this way, so they use what CPU the tests leave idle.
if (process.env.CHECK_NICE) {
  try {
    setPriority(Number(process.env.CHECK_NICE));
  } catch {
    // Not allowed here: the checks run at the usual priority, only slower beside the tests.
  }
}

function runScript(name) {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn('npm', ['run', '--silent', name], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.once('error', (e) => resolve({ name, code: 1, output: `${output}${e.message}\n`, started }));
    child.once('close', (code) => resolve({ name, code: code ?? 1, output, started }));
  });
}

const queue = [...names];
const failed = [];
async function lane() {
  for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
    const r = await runScript(name);
    const seconds = ((performance.now() - r.started) / 1000).toFixed(1);
    const verdict = r.code === 0 ? 'ok' : `FAILED (exit ${r.code})`;
    process.stdout.write(`\n> npm run ${name}: ${verdict} in ${seconds} s\n${r.output}`);
    if (r.code !== 0) failed.push(name);
  }
}
await Promise.all(Array.from({ length: Math.min(concurrency, names.length) }, lane));
if (failed.length > 0) {
  process.stderr.write(`\nchecks failed: ${failed.join(', ')}\n`);
  process.exit(1);
}
