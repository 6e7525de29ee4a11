// A reporter for node's test runner (`--test-reporter=./scripts/test-durations.mjs`): writes one
// JSON object, { "<test file>": milliseconds }, the sum of the durations of each file's top-level
// tests (a file's tests run one after another, so this is the time the file took). test.mjs
// prints the slowest files from it. In the processes scripts/test.mjs starts, each file's tests
// are one top-level suite named after the file (scripts/test-group.mjs): the file is its name.
import { basename } from 'node:path';
import { GROUP_FILE_PREFIX } from './test-group.mjs';

export default async function* durations(source) {
  const byFile = {};
  for await (const event of source) {
    if ((event.type === 'test:pass' || event.type === 'test:fail') && event.data.nesting === 0 && event.data.file) {
      const file = basename(event.data.file).startsWith(GROUP_FILE_PREFIX) ? event.data.name : event.data.file;
      byFile[file] = (byFile[file] ?? 0) + (event.data.details?.duration_ms ?? 0);
    }
  }
  yield `${JSON.stringify(byFile)}\n`;
}
