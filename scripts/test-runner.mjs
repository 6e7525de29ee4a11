// Runs test files with node's test runner in the order given, for scripts/test.mjs.
// `node --test FILE...` (node 20) sorts the files by name whatever order they are given in;
// `run()` keeps it, so the longest files can start first and the lanes end close together.
// Started with the options each file's process needs (`--import tsx`, the test timeouts, the
// source condition): run() passes this process's execArgv on to them.
// Usage: node [options] scripts/test-runner.mjs '<json: { files, concurrency, timeoutMs, outputs }>'
//   files: absolute paths, in the order to start them; timeoutMs: each whole file at most;
//   outputs: [{ reporter: 'spec' | 'tap' | <path of a reporter module>, destination: 'stdout' | <path> }]
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import { run } from 'node:test';
import { spec, tap } from 'node:test/reporters';
import { pathToFileURL } from 'node:url';

const { files, concurrency, timeoutMs, outputs } = JSON.parse(process.argv[2]);

// Reporter modules are loaded before the run starts, so that every copy of the event stream
// is attached before the first event.
const formats = await Promise.all(
  outputs.map(async ({ reporter }) => {
    if (reporter === 'spec') return (events) => events.pipe(new spec());
    if (reporter === 'tap') return (events) => Readable.from(tap(events));
    const custom = (await import(pathToFileURL(reporter).href)).default;
    return (events) => Readable.from(custom(events));
  }),
);

const events = run({ files, concurrency, timeout: timeoutMs });
let failed = false;
events.on('test:fail', () => (failed = true));
const written = outputs.map(async ({ destination }, i) => {
  const copy = new PassThrough({ objectMode: true });
  events.pipe(copy);
  const text = formats[i](copy);
  if (destination === 'stdout') {
    text.pipe(process.stdout, { end: false });
    await once(text, 'end');
  } else {
    const file = createWriteStream(destination);
    text.pipe(file);
    await once(file, 'finish');
  }
});
await Promise.all(written);
process.exitCode = failed ? 1 : 0;
