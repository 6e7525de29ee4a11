// How scripts/test.mjs splits the test files among processes. Each process costs CPU before its
// first test (tsx, the runner, and the modules the files import: 0.4 s for a file that imports
// only node:test, 2-3 s for one that loads the broker, its console or a browser driver), and the
// 113 files' start-up alone came to about 2 CPU-minutes when each had a process of its own. So
// the files share a few processes ("groups", scripts/test-group.mjs), more groups than lanes so
// that the lanes still even out when the times of the last run are off. Files that mostly wait
// (a Redis failover, SPIRE starting) leave their lane's core idle: they get a process and a lane
// of their own beside the others (waitingFiles).

/**
 * Splits `files` into at most `count` groups of about the same expected time, each file going to
 * the group that expects least so far, longest files first. Returns the non-empty groups,
 * longest first, each `{ files, expectedMs }` (files in the order they were placed).
 * @param {string[]} files
 * @param {(file: string) => number} expectedMs
 * @param {number} count
 * @returns {{ files: string[], expectedMs: number }[]}
 */
export function planGroups(files, expectedMs, count) {
  const groups = Array.from({ length: Math.max(1, Math.floor(count)) }, () => ({ files: [], expectedMs: 0 }));
  const longestFirst = [...files].sort((a, b) => expectedMs(b) - expectedMs(a) || a.localeCompare(b));
  for (const file of longestFirst) {
    let least = groups[0];
    for (const group of groups) if (group.expectedMs < least.expectedMs) least = group;
    least.files.push(file);
    least.expectedMs += expectedMs(file);
  }
  return groups.filter((g) => g.files.length > 0).sort((a, b) => b.expectedMs - a.expectedMs);
}

/**
 * How long a group's process may take in all before the runner ends it, for the longest group's
 * expected time (node's run() takes one limit for all its files): each test and hook has its own
 * limit (scripts/test-timeout.mjs); this catches a process that does not end when its tests are
 * done (a server or timer left running), at three times that, and never less than 5 minutes.
 * @param {number} expectedMs
 */
export function groupTimeoutMs(expectedMs) {
  return Math.max(300_000, Math.round(3 * expectedMs));
}

/**
 * The files that mostly wait, by the last run's figures: at least `minMs` long, and their CPU
 * time (their process's and that of the processes they started) under `ratio` of it. Files
 * without figures are not among them.
 * @param {string[]} files
 * @param {(file: string) => number | undefined} wallMs
 * @param {(file: string) => number | undefined} cpuMs
 */
export function waitingFiles(files, wallMs, cpuMs, ratio = 0.35, minMs = 10_000) {
  return files.filter((f) => {
    const wall = wallMs(f);
    const cpu = cpuMs(f);
    return wall !== undefined && cpu !== undefined && wall >= minMs && cpu < ratio * wall;
  });
}
