// A reporter for node's test runner (`--test-reporter=./scripts/test-durations.mjs`): writes one
// JSON object, { "<test file>": milliseconds }, the sum of the durations of each file's top-level
// tests (a file's tests run one after another, so this is the time the file took). test.mjs
// prints the slowest files from it.
export default async function* durations(source) {
  const byFile = {};
  for await (const event of source) {
    if ((event.type === 'test:pass' || event.type === 'test:fail') && event.data.nesting === 0 && event.data.file) {
      byFile[event.data.file] = (byFile[event.data.file] ?? 0) + (event.data.details?.duration_ms ?? 0);
    }
  }
  yield `${JSON.stringify(byFile)}\n`;
}
