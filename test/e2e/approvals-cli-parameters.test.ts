// What an approver sees of the parameters in the CLI, and how a credential
// reaches `countersign verify`:
// - `approvals list` never cuts parameters without saying so: a long set ends
//   with "…(N more chars, see countersign approvals show ID)", and `approvals
//   show ID` prints them whole, pretty-printed, with invisible and terminal
//   control characters made visible.
// - `verify` takes the credential from COUNTERSIGN_TOKEN, stdin (--token -) or a
//   file (--token-file), so it never has to be in argv (visible in ps, shell
//   history), and the README's example uses one of those.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { CLI, cliIdentities, finishCli, type CliIdentities } from './support/cli.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('countersign CLI: parameters in approvals list|show, and the token for verify', () => {
  let t: TestBroker;
  let ids: CliIdentities;
  const finish = (who: string, args: string[]) => finishCli(ids.env[who] as NodeJS.ProcessEnv, args);

  before(async () => {
    t = await startTestBroker();
    ids = await cliIdentities(t, { deployer: 'ci/deployer', alice: 'human/alice' });
  });
  after(async () => {
    await t?.close();
    await ids?.cleanup();
  });

  it('marks cut parameters in approvals list with the count left and the command that shows them, and shows them whole', async () => {
    const parameters = {
      version: '1.4.2',
      image: 'registry.example.org/team/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
      replicas: 3,
      note: 'rollback \u202Eevil\u202C and \u009B31m red',
    };
    const made = await finish('deployer', [
      'request',
      '--operation',
      'deploy',
      '--resource',
      'prod/web',
      '--parameters-json',
      JSON.stringify(parameters),
    ]);
    assert.equal(made.code, 6, made.stderr);
    const id = made.stdout.trim();

    const list = await finish('alice', ['approvals', 'list']);
    assert.equal(list.code, 0, list.stderr);
    const row = list.stdout.split('\n').find((l) => l.startsWith(id)) as string;
    assert.ok(row, list.stdout);
    const marker = new RegExp(`…\\((\\d+) more chars, see countersign approvals show ${id}\\)`);
    const m = marker.exec(row);
    assert.ok(m, `the cut is marked: ${row}`);
    // Shown part + the count left = the whole canonical parameters, as the broker holds them.
    const shown = row.slice(row.indexOf('{'), m.index);
    const whole = JSON.parse((await finish('alice', ['approvals', 'list', '--output', 'json'])).stdout).find(
      (r: { id: string }) => r.id === id,
    ).parameters;
    const canonical = JSON.stringify(whole);
    assert.ok(shown.length >= 40 && canonical.startsWith(shown), `${shown} begins ${canonical}`);
    assert.equal(Number(m[1]), canonical.length - shown.length, `N is what is left of ${canonical}`);

    const show = await finish('alice', ['approvals', 'show', id]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, new RegExp(`^request +${id}$`, 'm'));
    assert.match(show.stdout, /^operation +deploy$/m);
    assert.match(show.stdout, /^resource +prod\/web$/m);
    assert.match(
      show.stdout,
      /"image": "registry\.example\.org\/team\/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"/,
    );
    assert.match(show.stdout, /"replicas": 3/);
    // Invisible and control characters are shown as what they are, never passed to the terminal.
    assert.ok(
      !/[\u202E\u009B]/.test(show.stdout + list.stdout),
      'no raw bidi override or C1 control reaches the terminal',
    );
    assert.match(show.stdout, /"note": "rollback \\u202eevil\\u202c and \\u009b31m red"/);
    assert.match(show.stdout, /^parameters digest +\S{43}$/m);

    const unknown = await finish('alice', ['approvals', 'show', 'req_doesnotexist']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /req_doesnotexist is not among the pending requests you may decide/);
  });

  it('lists short parameters whole, without a marker', async () => {
    const made = await finish('deployer', [
      'request',
      '--operation',
      'deploy',
      '--resource',
      'prod/api',
      '--param',
      'version=2.0.0',
    ]);
    const id = made.stdout.trim();
    const list = await finish('alice', ['approvals', 'list']);
    const row = list.stdout.split('\n').find((l) => l.startsWith(id)) as string;
    assert.match(row, /\{"version":"2\.0\.0"\}\s/);
    assert.doesNotMatch(row, /more chars/);
  });

  it('verify reads the credential from COUNTERSIGN_TOKEN, stdin or a file, not only from argv', async () => {
    const made = await finish('deployer', [
      'request',
      '--operation',
      'deploy',
      '--resource',
      'staging/web',
      '--param',
      'version=1.4.2',
    ]);
    assert.equal(made.code, 0, made.stderr);
    const token = made.stdout.trim();
    const file = join(ids.dir, 'credential.jwt');
    await writeFile(file, `${token}\n`, { mode: 0o600 });
    const env = { ...process.env, ...ids.env.deployer, COUNTERSIGN_JWKS_URL: t.jwksUrl };
    // Asynchronously: the broker (and its JWKS) runs in this process.
    const verify = (args: string[], extra: { input?: string; env?: NodeJS.ProcessEnv } = {}) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          [
            CLI,
            'verify',
            '--audience',
            'https://deploy.example.org',
            '--operation',
            'deploy',
            '--resource',
            'staging/web',
            '--param',
            'version=1.4.2',
            ...args,
          ],
          {
            env: extra.env ?? env,
          },
        );
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.stdin.end(extra.input ?? '');
        child.once('close', (status) => resolve({ status, stdout, stderr }));
      });
    for (const [how, run] of [
      ['--token-file', await verify(['--token-file', file])],
      ['stdin', await verify(['--token', '-'], { input: token })],
      ['COUNTERSIGN_TOKEN', await verify([], { env: { ...env, COUNTERSIGN_TOKEN: token } })],
    ] as const) {
      assert.equal(run.status, 0, `${how}: ${run.stdout}${run.stderr}`);
      assert.match(run.stdout, /^valid: deploy on staging\/web/m, how);
    }
    const both = await verify(['--token-file', file, '--token', '-'], { input: token });
    assert.equal(both.status, 2, both.stderr);
    assert.match(both.stderr, /--token and --token-file: give the credential one way/);
    const missing = await verify(['--token-file', join(ids.dir, 'nope.jwt')]);
    assert.equal(missing.status, 2, missing.stderr);
    assert.match(missing.stderr, /--token-file: cannot read .*nope\.jwt/);

    // The README's examples never put a credential in argv.
    for (const doc of ['README.md', 'docs/credentials.md']) {
      const text = await readFile(join(ROOT, doc), 'utf8');
      assert.doesNotMatch(text, /countersign verify[^\n]*--token "?\$/, `${doc} passes the credential in argv`);
    }
  });
});
