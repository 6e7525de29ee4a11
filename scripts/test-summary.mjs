// The closing line of `npm test`: node's runner reports cancelled tests (a failed before()
// hook, a lost connection) apart from failed ones and can end "fail 0, cancelled 19" with
// exit 1. Here every test that did not pass counts as failed.
import { connect } from 'node:net';

/** Counts from the `# pass N` ... lines that close node's TAP output. */
export function tapCounts(tap) {
  const count = (name) => {
    const all = [...tap.matchAll(new RegExp(`^# ${name} (\\d+)$`, 'gm'))];
    return all.length === 0 ? 0 : Number(all[all.length - 1][1]);
  };
  return {
    tests: count('tests'),
    pass: count('pass'),
    fail: count('fail'),
    cancelled: count('cancelled'),
    skipped: count('skipped'),
    todo: count('todo'),
  };
}

/**
 * "N passed, N failed" (the cancelled counted as failed), and what the failed were; with
 * `runFailed` (the runner's exit status was not 0) and no test counted as failed, a second line
 * says the run failed all the same: TAP's counts leave out failed suites and test processes.
 */
export function summaryLines(counts, runFailed = false) {
  const failed = counts.fail + counts.cancelled;
  const detail =
    counts.cancelled > 0
      ? ` (${counts.fail} failed, ${counts.cancelled} cancelled: a hook or the test's process failed)`
      : '';
  const lines = [`tests: ${counts.pass} passed, ${failed} failed${detail}`];
  if (runFailed && failed === 0) {
    lines.push(
      "the run FAILED outside any test: a suite's hook, or a test process that ended early or did not end (see the 'not ok' lines above)",
    );
  }
  return lines;
}

/** Whether something answers PING at a redis:// URL (a server asking for a password counts). */
export function redisAnswers(url, timeoutMs = 2000) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname.replace(/^\[|\]$/g, '') || '127.0.0.1', port: Number(port || 6379) });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(/^(\+PONG|-NOAUTH|-ERR)/.test(d.toString())));
  });
}

/** "slowest test files:" and up to `n` lines "  12.3 s  path", slowest first, from { file: ms }. */
export function slowestLines(durations, root, n = 10) {
  const rows = Object.entries(durations)
    .sort((a, b) => b[1] - a[1])
    .slice(0, n);
  if (rows.length === 0) return [];
  const rel = (file) => (file.startsWith(root) ? file.slice(root.length).replace(/^\//, '') : file);
  return [
    `slowest ${rows.length} test files:`,
    ...rows.map(([file, ms]) => `  ${(ms / 1000).toFixed(1).padStart(6)} s  ${rel(file)}`),
  ];
}
