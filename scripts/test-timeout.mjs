// Preloaded into every test file's process by scripts/test.mjs (`--import`): each test() / it()
// gets a timeout of at most 60 s (TEST_TIMEOUT_MS), each hook (before, after, beforeEach,
// afterEach) at most 120 s (TEST_HOOK_TIMEOUT_MS: a hook may start a whole system, SPIRE or a
// Redis failover group, for the file's tests), suites (describe) none of their own. A hook that
// hangs so fails alone, instead of ending its whole process at the file limit, which in the
// packages' shared process (scripts/test.mjs) would take every later file's tests with it.
// Node 20's --test-timeout cannot do this: under `node --test` it bounds each whole file (the
// file counts as one test), and the processes that run the files ignore it. The named exports
// (`import { it } from 'node:test'`, as every test file does) are patched; the default export
// cannot be.
import { createRequire, syncBuiltinESMExports } from 'node:module';

const require = createRequire(import.meta.url);
const nodeTest = require('node:test');
const limit = Number(process.env.TEST_TIMEOUT_MS ?? 60_000);

/** test(name?, options?, fn?) with options.timeout set to at most `limit`. */
function bounded(original) {
  const wrapped = function (...args) {
    const name = typeof args[0] === 'string' ? args.shift() : undefined;
    const given = args[0] !== null && typeof args[0] === 'object' ? args.shift() : {};
    const options = { ...given, timeout: Math.min(given.timeout ?? limit, limit) };
    return name === undefined ? original.call(this, options, ...args) : original.call(this, name, options, ...args);
  };
  for (const key of ['only', 'skip', 'todo']) if (typeof original[key] === 'function') wrapped[key] = original[key];
  return wrapped;
}

const hookLimit = Number(process.env.TEST_HOOK_TIMEOUT_MS ?? 120_000);

/** before(fn?, options?) and the like, with options.timeout set to at most `hookLimit`. */
function boundedHook(original) {
  return function (fn, given = {}) {
    return original.call(this, fn, { ...given, timeout: Math.min(given.timeout ?? hookLimit, hookLimit) });
  };
}

if (Number.isFinite(hookLimit) && hookLimit > 0) {
  for (const key of ['before', 'after', 'beforeEach', 'afterEach']) nodeTest[key] = boundedHook(nodeTest[key]);
  syncBuiltinESMExports();
}

if (Number.isFinite(limit) && limit > 0) {
  const test = bounded(nodeTest.test);
  const it = bounded(nodeTest.it);
  for (const key of Object.keys(nodeTest)) if (!(key in test)) test[key] = nodeTest[key];
  test.test = test;
  test.it = it;
  nodeTest.test = test;
  nodeTest.it = it;
  syncBuiltinESMExports();
}
