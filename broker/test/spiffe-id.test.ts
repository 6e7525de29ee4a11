import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseSpiffeId } from '../src/identity/spiffe-id.js';
import { CountersignError } from '../src/errors.js';

const vectors = JSON.parse(readFileSync(new URL('./fixtures/spiffe-id-vectors.json', import.meta.url), 'utf8')) as {
  valid: string[];
  invalid: { id: string; why: string }[];
};

describe('SPIFFE ID parsing (spec section 2, shared vectors)', () => {
  for (const id of vectors.valid) {
    it(`accepts ${id}`, () => {
      const parsed = parseSpiffeId(id);
      assert.equal(parsed.id, id);
      assert.equal(`spiffe://${parsed.trustDomain}${parsed.path}`, id);
    });
  }
  for (const { id, why } of vectors.invalid) {
    it(`refuses ${JSON.stringify(id)} (${why})`, () => {
      assert.throws(
        () => parseSpiffeId(id),
        (e: unknown) =>
          e instanceof CountersignError && e.code.startsWith('ERR_SPIFFE_ID_') && e.kind === 'invalid_argument',
      );
    });
  }
  it('names the rule broken', () => {
    const code = (id: string) => {
      try {
        parseSpiffeId(id);
        return 'ok';
      } catch (e) {
        return (e as CountersignError).code;
      }
    };
    assert.equal(code('spiffe://Example.org/w'), 'ERR_SPIFFE_ID_TRUST_DOMAIN_CHAR');
    assert.equal(code('spiffe://td/a/../b'), 'ERR_SPIFFE_ID_PATH_DOT_SEGMENT');
    assert.equal(code('spiffe://td/a//b'), 'ERR_SPIFFE_ID_PATH_EMPTY_SEGMENT');
    assert.equal(code('spiffe://td/a/'), 'ERR_SPIFFE_ID_TRAILING_SLASH');
    assert.equal(code('https://td/a'), 'ERR_SPIFFE_ID_SCHEME');
    assert.equal(code(`spiffe://${'a'.repeat(256)}/w`), 'ERR_SPIFFE_ID_TRUST_DOMAIN_TOO_LONG');
    assert.equal(code(`spiffe://td/${'a'.repeat(2048)}`), 'ERR_SPIFFE_ID_TOO_LONG');
  });
});
