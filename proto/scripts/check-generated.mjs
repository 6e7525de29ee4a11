#!/usr/bin/env node
// Fails when `buf lint` complains or when the committed generated code or descriptor set
// differs from what `npm run proto` produces now (someone edited a .proto without running it).
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { generate, root } from './generate.mjs';

function files(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...files(path));
    else out.push(path);
  }
  return out;
}

const scratch = mkdtempSync(join(tmpdir(), 'countersign-proto-'));
try {
  generate(scratch);
  const committedDir = join(root, 'src/gen');
  const freshDir = join(scratch, 'src/gen');
  const committed = new Set(files(committedDir).map((f) => relative(committedDir, f)));
  const fresh = new Set(files(freshDir).map((f) => relative(freshDir, f)));
  const problems = [];
  for (const f of fresh) {
    if (!committed.has(f)) problems.push(`missing from proto/src/gen: ${f}`);
    else if (!readFileSync(join(committedDir, f)).equals(readFileSync(join(freshDir, f)))) {
      problems.push(`differs from a fresh buf generate: proto/src/gen/${f}`);
    }
  }
  for (const f of committed) if (!fresh.has(f)) problems.push(`no longer generated: proto/src/gen/${f}`);
  if (problems.length > 0) {
    process.stderr.write(`${problems.join('\n')}\nRun \`npm run proto\` and commit the result.\n`);
    process.exit(1);
  }
  process.stdout.write('proto: buf lint clean, generated code and descriptor set up to date\n');
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
