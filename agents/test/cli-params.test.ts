// countersign --parameters-json / --param: the text sent is the text typed
// (members of --param appended), never a re-serialisation.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parametersJsonFromFlags } from '../src/cli/params.js';

describe('parametersJsonFromFlags', () => {
  it('sends --parameters-json exactly as typed', () => {
    for (const text of ['{ "b": 2.50, "a": [1, {"n": 1e3}] }', '{"x":"\\u00e9"}', '\n{}\n']) {
      assert.equal(parametersJsonFromFlags([], text), text);
    }
  });

  it('writes --param members from what was typed, after those of --parameters-json', () => {
    assert.equal(
      parametersJsonFromFlags(['v=1.4.2', 'n:=1.50', 'flags:=["a", "b"]'], undefined),
      '{"v":"1.4.2","n":1.50,"flags":["a", "b"]}',
    );
    assert.equal(parametersJsonFromFlags(['c=3'], '{ "b": 2.50 }\n'), '{ "b": 2.50 ,"c":"3"}\n');
    assert.equal(parametersJsonFromFlags(['c=3'], ' { } '), '{"c":"3"}');
    assert.equal(parametersJsonFromFlags([], undefined), '{}');
  });

  it('refuses instead of changing anything', () => {
    for (const [params, json, code] of [
      [['x:=1e400'], undefined, /number 1e400 is beyond/],
      [['__proto__:={"a":1}'], undefined, /"__proto__" is not accepted/],
      [['x:=1,"y":2'], undefined, /must be JSON/],
      [['x:=nope'], undefined, /must be JSON/],
      [[], '{"a":1,"a":2}', /appears twice/],
      [[], '[1]', /--parameters-json must be a JSON object, got an array/],
      [['a=1'], '{"a":0}', /given more than once/],
    ] as [string[], string | undefined, RegExp][]) {
      assert.throws(
        () => parametersJsonFromFlags(params, json),
        (e: Error & { code?: string }) => e.code === 'ERR_USAGE' && code.test(e.message),
        `${params.join(' ')} ${json ?? ''}`,
      );
    }
  });
});
