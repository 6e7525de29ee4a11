// `countersign run -- CMD` as a user runs it: a spawned process against a real
// broker and Redis; approvers act with `countersign approvals` in other processes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { JSONWebKeySet } from 'jose';
import { CountersignClient, verifyCredential } from '@countersign/agent';
import { eventually, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { CLI, cliIdentities, finishCli, requestIdIn, runCli, type CliIdentities } from './support/cli.js';

const POLICY = `version: 1
rules:
  - name: staging-deploys
    match: { workload: "spiffe://example.org/ci/*", operation: deploy, resource: "staging/*" }
    decision: allow
  - name: prod-deploys
    match: { workload: "spiffe://example.org/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
  - name: qa-deploys-expire-fast
    match: { workload: "spiffe://example.org/ci/*", operation: deploy, resource: "qa/*" }
    decision: approve
    approval: { approvers: [alice], required: 1, timeout: 2s }
`;

/** A CMD that records what it saw (its environment's COUNTERSIGN_* and its arguments) in a file, then exits with a given code. */
const RECORDER = `
const [file, code, ...args] = process.argv.slice(1);
const env = process.env;
require('node:fs').writeFileSync(file, JSON.stringify({
  token: env.COUNTERSIGN_TOKEN, requestId: env.COUNTERSIGN_REQUEST_ID, parametersJson: env.COUNTERSIGN_PARAMETERS_JSON,
  key: env.COUNTERSIGN_KEY, cert: env.COUNTERSIGN_CERT, args,
}));
process.exit(Number(code));
`;

const sha256 = async (file: string) =>
  createHash('sha256')
    .update(await readFile(file))
    .digest('hex');

describe('countersign run', () => {
  let t: TestBroker;
  let ids: CliIdentities;
  let jwks: JSONWebKeySet;
  let deployer: CountersignClient;
  const env = (who: string) => ids.env[who] as NodeJS.ProcessEnv;
  const marker = (name: string) => join(ids.dir, name);
  const recorder = (file: string, code: number, ...args: string[]) => [
    process.execPath,
    '-e',
    RECORDER,
    file,
    String(code),
    ...args,
  ];

  before(async () => {
    t = await startTestBroker({ policy: POLICY });
    ids = await cliIdentities(t, { deployer: 'ci/deployer', alice: 'human/alice', bob: 'human/bob' });
    jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
    deployer = CountersignClient.fromEnv({}, env('deployer'));
  });
  after(async () => {
    deployer?.close();
    await t?.close();
    await ids?.cleanup();
  });

  /** Waits for the run's request to be pending (from its stderr) and returns its id. */
  const pendingId = (run: { stderr(): string }) =>
    eventually('the pending request on stderr', () => requestIdIn(run.stderr()));

  it('runs CMD with a credential for exactly this operation once alice approves, and passes its exit code on', async () => {
    const seen = marker('approved.json');
    const run = runCli(env('deployer'), [
      'run',
      '--operation',
      'deploy',
      '--resource',
      'prod/web',
      '--param',
      'version=1.4.2',
      '--reason',
      'release',
      '--',
      ...recorder(seen, 7, '--flag', 'value with spaces'),
    ]);
    const id = await pendingId(run);
    assert.equal(existsSync(seen), false, 'CMD must not run before the approval');
    const approve = await finishCli(env('alice'), ['approvals', 'approve', id, '--reason', 'release window']);
    assert.equal(approve.code, 0, approve.stderr);

    assert.equal(await run.code, 7, run.stderr());
    const child = JSON.parse(await readFile(seen, 'utf8')) as {
      token: string;
      requestId: string;
      parametersJson: string;
      args: string[];
    };
    assert.equal(child.requestId, id);
    assert.deepEqual(child.args, ['--flag', 'value with spaces']);
    const { claims } = await verifyCredential(child.token, {
      jwks,
      audience: 'https://deploy.example.org',
      operation: 'deploy',
      resource: 'prod/web',
      parameters: {
        version: '1.4.2',
        command: {
          path: process.execPath,
          sha256: await sha256(process.execPath),
          args: ['-e', RECORDER, seen, '7', '--flag', 'value with spaces'],
        },
      },
      clientCertificate: ids.certs.deployer,
    });
    assert.equal(claims.approval?.request_id, id);
    assert.equal(claims.approval?.approvers[0]?.principal, 'alice');

    // Not a terminal: plain lines, no redrawn progress line; CMD's stdout is its own.
    const stderr = run.stderr();
    assert.doesNotMatch(stderr, /\r|\x1b\[/);
    assert.match(
      stderr,
      new RegExp(
        `^pending approval: request ${id} \\(rule prod-deploys\\); 0 of 1 approval\\(s\\) from alice, bob$`,
        'm',
      ),
    );
    assert.match(stderr, /^alice approved via cli: release window \(1 of 1 approval\(s\)\)$/m);
    assert.match(stderr, new RegExp(`^countersign: approved \\(request ${id}, rule prod-deploys\\); running `, 'm'));
    assert.equal(run.stdout(), '');
  });

  it('does not run CMD when an approver denies, exits 3 and says why', async () => {
    const seen = marker('denied.json');
    const run = runCli(env('deployer'), [
      'run',
      '--operation',
      'deploy',
      '--resource',
      'prod/api',
      '--',
      ...recorder(seen, 0),
    ]);
    const id = await pendingId(run);
    const deny = await finishCli(env('bob'), ['approvals', 'deny', id, '--reason', 'change freeze']);
    assert.equal(deny.code, 0, deny.stderr);
    assert.equal(await run.code, 3);
    assert.match(
      run.stderr(),
      /countersign: denied: denied by bob \(cli\): change freeze \(rule prod-deploys\); .* was not run/,
    );
    assert.equal(existsSync(seen), false);
  });

  it('exits 3 at once, without running CMD, when policy denies', async () => {
    const seen = marker('policy-denied.json');
    const r = await finishCli(env('deployer'), [
      'run',
      '--operation',
      'drop-table',
      '--resource',
      'prod/orders',
      '--',
      ...recorder(seen, 0),
    ]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /countersign: denied: .*drop-table.*; .* was not run/);
    assert.equal(existsSync(seen), false);
  });

  it('exits 4 when nobody approves before the deadline', async () => {
    const seen = marker('expired.json');
    const r = await finishCli(env('deployer'), [
      'run',
      '--operation',
      'deploy',
      '--resource',
      'qa/web',
      '--',
      ...recorder(seen, 0),
    ]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /countersign: expired: .* was not run/);
    assert.equal(existsSync(seen), false);
  });

  it('cancels the pending request in the broker on Ctrl-C (SIGINT) and exits 130', async () => {
    const seen = marker('interrupted.json');
    const run = runCli(env('deployer'), [
      'run',
      '--operation',
      'deploy',
      '--resource',
      'prod/db',
      '--',
      ...recorder(seen, 0),
    ]);
    const id = await pendingId(run);
    await eventually('the waiting line', () => run.stderr().includes('runs once approved'));
    run.child.kill('SIGINT');
    assert.equal(await run.code, 130, run.stderr());
    assert.match(run.stderr(), new RegExp(`countersign: interrupted: cancelled request ${id}; .* was not run`));
    const state = await deployer.get(id);
    assert.equal(state.state, 'CANCELLED');
    assert.match(state.message, /interrupted while waiting/);
    assert.equal(existsSync(seen), false);
    // Nothing left for approvers.
    const list = await finishCli(env('alice'), ['approvals', 'list', '--output', 'json']);
    assert.ok(!(JSON.parse(list.stdout) as { id: string }[]).some((r) => r.id === id));
  });

  it('forwards SIGTERM to CMD and exits with its exit code', async () => {
    const ready = marker('term-ready');
    const got = marker('term-got');
    const script = `
      const fs = require('node:fs');
      process.on('SIGTERM', () => { fs.writeFileSync(${JSON.stringify(got)}, 'SIGTERM'); process.exit(42); });
      fs.writeFileSync(${JSON.stringify(ready)}, String(process.pid));
      setInterval(() => {}, 1000);`;
    const run = runCli(env('deployer'), [
      'run',
      '--operation',
      'deploy',
      '--resource',
      'staging/web',
      '--',
      process.execPath,
      '-e',
      script,
    ]);
    await eventually('CMD running', () => existsSync(ready));
    run.child.kill('SIGTERM');
    assert.equal(await run.code, 42, run.stderr());
    assert.equal(await readFile(got, 'utf8'), 'SIGTERM');
  });

  it('ends by the same signal as CMD when a signal ends it', async () => {
    const run = runCli(env('deployer'), [
      'run',
      '--operation',
      'deploy',
      '--resource',
      'staging/web',
      '--',
      process.execPath,
      '-e',
      'process.kill(process.pid, "SIGTERM")',
    ]);
    assert.equal(await run.code, null);
    assert.equal(run.signal(), 'SIGTERM');
  });

  it('exits 127 when CMD does not exist', async () => {
    const r = await finishCli(env('deployer'), [
      'run',
      '--operation',
      'deploy',
      '--resource',
      'staging/web',
      '--',
      'countersign-no-such-command',
    ]);
    assert.equal(r.code, 127);
    assert.match(r.stderr, /countersign: countersign-no-such-command: command not found/);
  });

  // Issue 14.13: what runs is bound into the request, and only the approved file runs.
  describe('binds what runs to the approval', () => {
    /** A directory put first on PATH holding a `deploy-tool` script that records that it ran. */
    const toolOnPath = async (name: string, says: string) => {
      const bin = marker(`bin-${name}`);
      await mkdir(bin, { recursive: true });
      const tool = join(bin, 'deploy-tool');
      await writeFile(
        tool,
        `#!/bin/sh\nprintf '%s %s' ${JSON.stringify(says)} "$1" > ${JSON.stringify(marker(`${name}.ran`))}\n`,
        { mode: 0o755 },
      );
      return {
        bin,
        tool,
        ran: marker(`${name}.ran`),
        env: { ...env('deployer'), PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` },
      };
    };

    it('shows approvers the command resolved to an absolute path with its SHA-256, and the credential covers it', async () => {
      const { tool, ran, env: withTool } = await toolOnPath('bound', 'original');
      const run = runCli(withTool, [
        'run',
        '--operation',
        'deploy',
        '--resource',
        'prod/bound',
        '--param',
        'version=1.4.2',
        '--',
        'deploy-tool',
        '1.4.2',
      ]);
      const id = await pendingId(run);
      const asked = await deployer.get(id);
      const command = { path: tool, sha256: await sha256(tool), args: ['1.4.2'] };
      assert.deepEqual(JSON.parse(asked.request?.parametersJson ?? '{}'), { version: '1.4.2', command });
      assert.match(
        run.stderr(),
        new RegExp(`${tool.replaceAll('/', '\\/')} 1\\.4\\.2 \\(sha256 ${command.sha256}\\) runs once approved`),
      );
      assert.equal((await finishCli(env('alice'), ['approvals', 'approve', id])).code, 0);
      assert.equal(await run.code, 0, run.stderr());
      assert.equal(await readFile(ran, 'utf8'), 'original 1.4.2');
    });

    it('does not run a command swapped on PATH while it waited (exit 126)', async () => {
      const { bin, tool, ran, env: withTool } = await toolOnPath('swapped', 'original');
      const run = runCli(withTool, [
        'run',
        '--operation',
        'deploy',
        '--resource',
        'prod/swapped',
        '--param',
        'version=1.4.2',
        '--',
        'deploy-tool',
        '1.4.2',
      ]);
      const id = await pendingId(run);
      // Another file renamed over the approved one, as an attacker with write access to the directory would.
      await writeFile(join(bin, 'evil'), `#!/bin/sh\nprintf 'swapped %s' "$1" > ${JSON.stringify(ran)}\n`, {
        mode: 0o755,
      });
      await rename(join(bin, 'evil'), tool);
      assert.equal((await finishCli(env('alice'), ['approvals', 'approve', id])).code, 0);
      assert.equal(await run.code, 126, run.stderr());
      assert.match(
        run.stderr(),
        new RegExp(`countersign: ${tool.replaceAll('/', '\\/')} changed while waiting for approval .*; not run`),
      );
      assert.equal(existsSync(ran), false, 'the swapped command must not run');
    });

    it('does not run a command changed in place while it waited (exit 126)', async () => {
      const { tool, ran, env: withTool } = await toolOnPath('edited', 'original');
      const run = runCli(withTool, [
        'run',
        '--operation',
        'deploy',
        '--resource',
        'prod/edited',
        '--',
        'deploy-tool',
        '1.4.2',
      ]);
      const id = await pendingId(run);
      const handle = await open(tool, 'r+');
      await handle.write(`#!/bin/sh\nprintf 'edited' > ${JSON.stringify(ran)}\n#`, 0);
      await handle.close();
      assert.equal((await finishCli(env('alice'), ['approvals', 'approve', id])).code, 0);
      assert.equal(await run.code, 126, run.stderr());
      assert.match(
        run.stderr(),
        /changed while waiting for approval \(its SHA-256 is no longer the approved one\); not run/,
      );
      assert.equal(existsSync(ran), false);
    });

    it('refuses at once, before asking anyone, a command that is not found (127) or not executable (126)', async () => {
      // qa/* expires after 2 s: a CLI that asked first would end with 4 (expired) instead.
      const missing = await finishCli(env('deployer'), [
        'run',
        '--operation',
        'deploy',
        '--resource',
        'qa/web',
        '--',
        './no-such-deploy.sh',
        '1.4.2',
      ]);
      assert.equal(missing.code, 127, missing.stderr);
      assert.match(missing.stderr, /^countersign: \.\/no-such-deploy\.sh: command not found; nothing was asked$/m);
      assert.doesNotMatch(missing.stderr, /pending approval/);

      const notExecutable = marker('not-executable.sh');
      await writeFile(notExecutable, '#!/bin/sh\nexit 0\n');
      await chmod(notExecutable, 0o644);
      const refused = await finishCli(env('deployer'), [
        'run',
        '--operation',
        'deploy',
        '--resource',
        'qa/web',
        '--',
        notExecutable,
      ]);
      assert.equal(refused.code, 126, refused.stderr);
      assert.match(refused.stderr, /not executable; nothing was asked/);
      assert.doesNotMatch(refused.stderr, /pending approval/);
    });

    it('gives CMD neither COUNTERSIGN_KEY nor COUNTERSIGN_CERT unless --pass-identity asks for them', async () => {
      const seen = marker('identity-env.json');
      const r = await finishCli(env('deployer'), [
        'run',
        '--operation',
        'deploy',
        '--resource',
        'staging/web',
        '--',
        ...recorder(seen, 0),
      ]);
      assert.equal(r.code, 0, r.stderr);
      const child = JSON.parse(await readFile(seen, 'utf8')) as { token?: string; key?: string; cert?: string };
      assert.match(child.token ?? '', /^ey/);
      assert.deepEqual([child.key, child.cert], [undefined, undefined]);

      const passed = await finishCli(env('deployer'), [
        'run',
        '--operation',
        'deploy',
        '--resource',
        'staging/web',
        '--pass-identity',
        '--',
        ...recorder(seen, 0),
      ]);
      assert.equal(passed.code, 0, passed.stderr);
      const again = JSON.parse(await readFile(seen, 'utf8')) as { key?: string; cert?: string };
      assert.deepEqual([again.key, again.cert], [env('deployer').COUNTERSIGN_KEY, env('deployer').COUNTERSIGN_CERT]);
    });

    for (const [signal, code] of [
      ['SIGQUIT', 131],
      ['SIGUSR2', 140],
    ] as const) {
      it(`withdraws the pending request when ${signal} ends it (exit ${code})`, async () => {
        const seen = marker(`${signal}.json`);
        const run = runCli(env('deployer'), [
          'run',
          '--operation',
          'deploy',
          '--resource',
          `prod/${signal.toLowerCase()}`,
          '--',
          ...recorder(seen, 0),
        ]);
        const id = await pendingId(run);
        await eventually('the waiting line', () => run.stderr().includes('runs once approved'));
        run.child.kill(signal);
        assert.equal(await run.code, code, run.stderr());
        const state = await deployer.get(id);
        assert.equal(state.state, 'CANCELLED');
        assert.equal(existsSync(seen), false);
      });
    }
  });

  it('is a usage error (exit 2) without a command', async () => {
    const r = await finishCli(env('deployer'), ['run', '--operation', 'deploy', '--resource', 'staging/web']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing required argument 'command'/);
  });

  it('shows a live progress line on a terminal, outside CI', async () => {
    // script(1) gives the CLI a pseudo-terminal; its output is what the terminal would show.
    const seen = marker('tty.json');
    const command = [CLI, 'run', '--operation', 'deploy', '--resource', 'prod/tty', '--', ...recorder(seen, 0)].map(
      (a) => `'${a.replaceAll("'", `'\\''`)}'`,
    );
    const run = runCli(env('deployer'), ['-q', '-e', '-c', `${process.execPath} ${command.join(' ')}`, '/dev/null'], {
      command: ['script'],
      removeEnv: ['CI'],
    });
    const id = await eventually('the pending request on the terminal', () => requestIdIn(run.stdout()));
    await eventually('the live line', () =>
      /\r\x1b\[2Kwaiting for approval of req_\S+: 0 of 1 approval\(s\) from alice, bob; \d+m\d\ds left \(Ctrl-C to stop\)/.test(
        run.stdout(),
      ),
    );
    const approve = await finishCli(env('alice'), ['approvals', 'approve', id]);
    assert.equal(approve.code, 0, approve.stderr);
    assert.equal(await run.code, 0, run.stdout());
    assert.ok(existsSync(seen));
  });
});

describe('countersign request and watch: --output token|json|env', () => {
  let t: TestBroker;
  let ids: CliIdentities;
  const env = (who: string) => ids.env[who] as NodeJS.ProcessEnv;

  before(async () => {
    t = await startTestBroker({ policy: POLICY });
    ids = await cliIdentities(t, { deployer: 'ci/deployer', alice: 'human/alice' });
  });
  after(async () => {
    await t?.close();
    await ids?.cleanup();
  });

  /** What `eval "$(countersign ... --output env)"` would set, read back by a shell. */
  const evalInShell = async (text: string) => {
    const r = runCli(
      {},
      ['-c', `${text}\nprintf '%s\\n' "$COUNTERSIGN_REQUEST_ID" "$COUNTERSIGN_STATE" "$COUNTERSIGN_TOKEN"`],
      { command: ['sh'] },
    );
    await r.code;
    return r.stdout().split('\n');
  };

  it('prints shell assignments with --output env, for request and watch alike', async () => {
    const allowed = await finishCli(env('deployer'), [
      'request',
      '--operation',
      'deploy',
      '--resource',
      'staging/web',
      '--output',
      'env',
    ]);
    assert.equal(allowed.code, 0, allowed.stderr);
    const [id, state, token] = await evalInShell(allowed.stdout);
    assert.match(id as string, /^req_/);
    assert.equal(state, 'APPROVED');
    assert.match(token as string, /^ey[\w-]+\.[\w-]+\.[\w-]+$/);

    const pending = await finishCli(env('deployer'), [
      'request',
      '--operation',
      'deploy',
      '--resource',
      'prod/web',
      '--output',
      'env',
    ]);
    assert.equal(pending.code, 6);
    const [pendingId, pendingState, noToken] = await evalInShell(pending.stdout);
    assert.equal(pendingState, 'PENDING_APPROVAL');
    assert.equal(noToken, '');

    const watch = runCli(env('deployer'), ['watch', pendingId as string, '--output', 'env']);
    await eventually('watch waiting', () => watch.stderr().includes('waiting for approval'));
    assert.equal((await finishCli(env('alice'), ['approvals', 'approve', pendingId as string])).code, 0);
    assert.equal(await watch.code, 0, watch.stderr());
    const [watchedId, watchedState, watchedToken] = await evalInShell(watch.stdout());
    assert.deepEqual([watchedId, watchedState], [pendingId, 'APPROVED']);
    assert.match(watchedToken as string, /^ey/);

    const json = await finishCli(env('deployer'), ['watch', pendingId as string, '--output', 'json']);
    assert.equal(json.code, 0);
    assert.equal((JSON.parse(json.stdout) as { token: string }).token, watchedToken);
  });

  it('refuses an unknown output mode as a usage error', async () => {
    const r = await finishCli(env('deployer'), [
      'request',
      '--operation',
      'deploy',
      '--resource',
      'staging/web',
      '--output',
      'yaml',
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /argument 'yaml' is invalid. Allowed choices are token, json, env/);
  });
});
