// Issue 15: the error codes are one closed list in @countersign/proto, and docs/api.md
// describes each. Every ERR_* code written in the packages' sources (TypeScript, Lua, the
// console's script) must be in the list; every code in the list must be in docs/api.md; every
// code the docs name must exist; the trailer's name is written in one place.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { ERROR_CODE_TRAILER, ERROR_CODES, isErrorCode } from '@countersign/proto';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LIST = 'proto/src/errors.ts';
// A code, not a family written as ERR_SVID_* (the lookahead), nor node's own codes (none used yet).
const CODE = /\bERR_[A-Z0-9_]+\b(?!\*)/g;

function files(dir: string, extensions: string[]): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist') continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...files(path, extensions));
    else if (extensions.some((e) => name.endsWith(e))) out.push(path);
  }
  return out;
}

const sources = ['proto/src', 'broker/src', 'approvers/src', 'agents/src'].flatMap((d) =>
  files(join(ROOT, d), ['.ts', '.lua', '.js']),
);
const codesIn = (text: string): Set<string> => new Set(text.match(CODE) ?? []);

describe('error codes: one closed list, all documented', () => {
  it('the list is sorted, without duplicates, each a well-formed code', () => {
    assert.deepEqual([...ERROR_CODES], [...new Set(ERROR_CODES)].sort(), `${LIST}: keep ERROR_CODES sorted and unique`);
    for (const code of ERROR_CODES) assert.match(code, /^ERR_[A-Z0-9]+(_[A-Z0-9]+)*$/);
    assert.ok(isErrorCode('ERR_INVALID_FIELD'));
    assert.ok(!isErrorCode('ERR_NOT_A_CODE'));
  });

  it('every code the sources use is in the list', () => {
    const missing: string[] = [];
    for (const file of sources) {
      if (relative(ROOT, file) === LIST) continue;
      for (const code of codesIn(readFileSync(file, 'utf8'))) {
        if (!isErrorCode(code)) missing.push(`${relative(ROOT, file)}: ${code}`);
      }
    }
    assert.deepEqual(missing, [], `codes not in ${LIST} (add them there, sorted, and describe them in docs/api.md)`);
  });

  it('every code in the list is used somewhere (no stale entries)', () => {
    const used = new Set<string>();
    for (const file of sources)
      if (relative(ROOT, file) !== LIST) for (const code of codesIn(readFileSync(file, 'utf8'))) used.add(code);
    assert.deepEqual(
      ERROR_CODES.filter((c) => !used.has(c)),
      [],
      `codes in ${LIST} that no source uses`,
    );
  });

  it('docs/api.md describes every code in the list', () => {
    const documented = codesIn(readFileSync(join(ROOT, 'docs/api.md'), 'utf8'));
    assert.deepEqual(
      ERROR_CODES.filter((c) => !documented.has(c)),
      [],
      'codes docs/api.md does not describe (see its "Every code" section)',
    );
  });

  it('the docs name no code that does not exist', () => {
    const unknown: string[] = [];
    for (const file of [join(ROOT, 'README.md'), ...files(join(ROOT, 'docs'), ['.md'])]) {
      for (const code of codesIn(readFileSync(file, 'utf8')))
        if (!isErrorCode(code)) unknown.push(`${relative(ROOT, file)}: ${code}`);
    }
    assert.deepEqual(unknown, []);
  });

  it(`the trailer's name (${ERROR_CODE_TRAILER}) is written once, in the list's module`, () => {
    const writers = sources
      .filter((f) => readFileSync(f, 'utf8').includes(`'${ERROR_CODE_TRAILER}'`))
      .map((f) => relative(ROOT, f));
    assert.deepEqual(writers, [LIST]);
  });
});
