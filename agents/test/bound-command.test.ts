// What `countersign run` binds into the request: CMD found as execvp(3) finds
// it, hashed, added to the parameters without touching what the user gave, and
// checked unchanged before it starts.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parametersDigest } from '@countersign/proto';
import {
  bindCommand,
  checkUnchanged,
  CommandError,
  executable,
  resolveCommandPath,
  withCommandParameter,
} from '../src/cli/bound-command.js';
import { CountersignClientError } from '../src/sdk/errors.js';

const binding = { path: '/usr/bin/deploy', sha256: 'ab'.repeat(32), args: ['1.4.2'] };

async function refusal(work: Promise<unknown>): Promise<CommandError> {
  try {
    await work;
  } catch (e) {
    assert.ok(e instanceof CommandError, String(e));
    return e;
  }
  assert.fail('expected a CommandError');
}

describe('countersign run: the bound command', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-bound-'));
    await writeFile(join(dir, 'tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 });
    await writeFile(join(dir, 'plain'), 'not executable\n', { mode: 0o644 });
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('finds a name on PATH, skipping entries where it is not executable, and a path relative to the directory it runs in', async () => {
    const other = await mkdtemp(join(tmpdir(), 'countersign-bound-other-'));
    await writeFile(join(other, 'tool'), 'no exec bit\n', { mode: 0o644 });
    try {
      assert.equal(await resolveCommandPath('tool', { PATH: [other, dir].join(delimiter) }, '/'), join(dir, 'tool'));
      assert.equal(await resolveCommandPath('./tool', {}, dir), join(dir, 'tool'));
      // An empty PATH entry is the current directory, as for execvp.
      assert.equal(await resolveCommandPath('tool', { PATH: `${delimiter}/nonexistent` }, dir), join(dir, 'tool'));
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('refuses with 127 what is nowhere and with 126 what is there but not executable, naming it', async () => {
    const missing = await refusal(resolveCommandPath('no-such-tool', { PATH: dir }, '/'));
    assert.deepEqual([missing.exitCode, missing.message], [127, 'no-such-tool: command not found']);
    const plain = await refusal(resolveCommandPath('plain', { PATH: dir }, '/'));
    assert.deepEqual([plain.exitCode, plain.message], [126, `plain: ${join(dir, 'plain')} is not executable`]);
    const directory = await refusal(resolveCommandPath(dir, {}, '/'));
    assert.equal(directory.exitCode, 126);
  });

  it('hashes the file it found, tells a native executable from a script, and starts the native one through its descriptor', async () => {
    const script = await bindCommand(['./tool', 'a b'], {}, dir);
    const native = await bindCommand([process.execPath, '--version']);
    try {
      assert.deepEqual(script.binding, {
        path: join(dir, 'tool'),
        sha256: createHash('sha256').update('#!/bin/sh\necho tool\n').digest('hex'),
        args: ['a b'],
      });
      assert.equal(script.argv0, './tool');
      assert.equal(script.native, false);
      assert.equal(executable(script), join(dir, 'tool'));
      assert.equal(native.native, true);
      assert.equal(executable(native), `/proc/self/fd/${native.handle.fd}`);
    } finally {
      await script.handle.close();
      await native.handle.close();
    }
  });

  it('notices a file swapped in by rename, edited in place, removed, or no longer executable', async () => {
    const cases: [string, (path: string) => Promise<void>, RegExp][] = [
      [
        'swapped',
        async (p) => (await writeFile(`${p}.new`, '#!/bin/sh\necho evil\n', { mode: 0o755 }), rename(`${p}.new`, p)),
        /the path names another file now/,
      ],
      ['edited', (p) => writeFile(p, '#!/bin/sh\necho edited\n'), /its SHA-256 is no longer the approved one/],
      ['removed', (p) => rm(p), /it is gone: ENOENT/],
      ['unexecutable', (p) => chmod(p, 0o644), /it is no longer executable/],
    ];
    for (const [name, change, why] of cases) {
      const path = join(dir, `${name}.sh`);
      await writeFile(path, '#!/bin/sh\necho approved\n', { mode: 0o755 });
      const bound = await bindCommand([path]);
      try {
        await checkUnchanged(bound);
        await change(path);
        const changed = await refusal(checkUnchanged(bound));
        assert.equal(changed.exitCode, 126, name);
        assert.match(changed.message, why, name);
        assert.match(changed.message, /changed while waiting for approval .*; not run$/, name);
      } finally {
        await bound.handle.close();
      }
    }
  });

  it('adds "command" to the parameters object, or as the last member of JSON text kept as given; both digest the same', () => {
    const asObject = withCommandParameter(
      { operation: 'deploy', resource: 'prod/web', parameters: { version: '1.4.2' } },
      binding,
    );
    assert.deepEqual(asObject.parameters, { version: '1.4.2', command: binding });
    const text = '{ "version" : "1.4.2",\n  "n": 1.0 }\n';
    const asText = withCommandParameter({ operation: 'deploy', resource: 'prod/web', parametersJson: text }, binding);
    assert.equal(asText.parametersJson, `{ "version" : "1.4.2",\n  "n": 1.0 ,"command":${JSON.stringify(binding)}}\n`);
    assert.equal(
      parametersDigest(JSON.parse(asText.parametersJson ?? '')),
      parametersDigest({ version: '1.4.2', n: 1, command: binding }),
    );
    assert.equal(
      withCommandParameter({ operation: 'x', resource: 'y', parametersJson: ' { } ' }, binding).parametersJson,
      `{"command":${JSON.stringify(binding)}}`,
    );
  });

  it('refuses a "command" parameter of the user\'s own rather than replacing it', () => {
    for (const input of [{ parameters: { command: 'rm -rf /' } }, { parametersJson: '{"command":"rm -rf /"}' }]) {
      assert.throws(
        () => withCommandParameter({ operation: 'x', resource: 'y', ...input }, binding),
        (e: unknown) =>
          e instanceof CountersignClientError &&
          e.code === 'ERR_USAGE' &&
          /the parameter "command" is set by countersign run/.test(e.message),
      );
    }
  });
});
