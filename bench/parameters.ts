// Benchmark: reading parameters_json under the strict rules (proto/src/parameters.ts:
// no duplicate names, numbers judged by value, well-formed Unicode, ...) as a
// ratio to JSON.parse of the same text, measured in the same run. The strict
// reader runs once per RequestOperation (and once more in every requester tool),
// so its cost beside JSON.parse is the price of the rules.
import { parseParametersJson } from '../proto/src/parameters.js';
import { fmt, table } from './harness.js';

function documents(): { name: string; text: string }[] {
  const small = JSON.stringify({
    version: '1.4.2',
    replicas: 3,
    canary: true,
    regions: ['eu-west-1', 'us-east-1'],
    notes: 'release ünïcode 😀',
  });
  const wide = JSON.stringify(
    Object.fromEntries(
      Array.from({ length: 1000 }, (_, i) => [
        `key_${i}`,
        i % 3 === 0 ? `value ${i}` : i % 3 === 1 ? i * 1.5 : [i, null, false],
      ]),
    ),
  );
  const escaped = JSON.stringify({ blob: 'line\n"quoted"\t\\ é 😀 '.repeat(2000).slice(0, 60_000) });
  return [
    { name: `small (${small.length} B)`, text: small },
    { name: `1000 members (${wide.length} B)`, text: wide },
    { name: `one escaped string (${escaped.length} B)`, text: escaped },
  ];
}

/** Calls per second of f over durationMs (after a short warm-up). */
function rate(f: () => unknown, durationMs: number): number {
  const warm = performance.now() + 200;
  while (performance.now() < warm) f();
  let calls = 0;
  const start = performance.now();
  const end = start + durationMs;
  while (performance.now() < end) {
    for (let i = 0; i < 32; i++) f();
    calls += 32;
  }
  return calls / ((performance.now() - start) / 1000);
}

export async function benchParameters(options: { durationMs: number }): Promise<void> {
  const rows = documents().map(({ name, text }) => {
    const baseline = rate(() => JSON.parse(text), options.durationMs / 2);
    const strict = rate(() => parseParametersJson(text), options.durationMs / 2);
    return {
      document: name,
      'JSON.parse us': fmt(1e6 / baseline, 2),
      'strict us': fmt(1e6 / strict, 2),
      'strict / JSON.parse': fmt(baseline / strict, 2),
    };
  });
  process.stdout.write(
    `\nparameters_json: the strict reader beside JSON.parse (same text, same run)\n${table(rows)}\n`,
  );
}
