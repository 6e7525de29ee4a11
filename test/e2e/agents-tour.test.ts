// docs/agents.md "Try it in dev mode", run as a newcomer runs it: `countersign-broker
// dev`, then the documented commands in the repository with the dev env files, and
// approvals given with `countersign approvals approve` as alice. Dev mode gets a
// redis-server of its own (REDIS_URL), so its fixed "countersign:dev:" prefix
// touches nobody else's keys.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { eventually, startRedisServer, type RedisServer } from '@countersign/broker/testing';
import { finishCli, pendingRequest, runCli, type Run } from './support/cli.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BROKER_BIN = join(ROOT, 'broker/bin/countersign-broker.js');

/** The variables an env file written by dev mode exports (`export K="v"` lines). */
async function sourceEnv(file: string): Promise<NodeJS.ProcessEnv> {
  const vars: NodeJS.ProcessEnv = {};
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    const m = /^export ([A-Z_]+)=(.*)$/.exec(line);
    if (m) vars[m[1] as string] = JSON.parse(m[2] as string) as string;
  }
  return vars;
}

describe('docs/agents.md in dev mode: a shell command and an MCP tool call gated by an approval', () => {
  let redis: RedisServer;
  let dir: string;
  let dev: ChildProcess;
  let devLog = '';
  let deployer: NodeJS.ProcessEnv;
  let alice: NodeJS.ProcessEnv;

  /** Runs in the repository, as the docs' commands are. */
  const inRepo = (env: NodeJS.ProcessEnv, command: string[]): Run => runCli(env, [], { command, cwd: ROOT });

  /** Approves the one pending request on this resource as alice, with the CLI, and returns its id. */
  const approveAsAlice = async (resource: string, waiting: Run) => {
    const id = await pendingRequest(
      alice,
      `a pending request on ${resource}`,
      (r) => r.resource === resource,
      () => {
        if (waiting.child.exitCode !== null) throw new Error(`ended early:\n${waiting.stdout()}\n${waiting.stderr()}`);
      },
    );
    const approve = await finishCli(alice, ['approvals', 'approve', id, '--reason', 'release window']);
    assert.equal(approve.code, 0, approve.stderr);
    return id;
  };

  before(async () => {
    redis = await startRedisServer({ persistence: 'none' });
    dir = await mkdtemp(join(tmpdir(), 'countersign-dev-'));
    dev = spawn(
      process.execPath,
      [BROKER_BIN, 'dev', '--dir', dir, '--grpc-port', '0', '--http-port', '0', '--console-port', '0'],
      {
        env: { ...process.env, REDIS_URL: redis.url },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    dev.stdout?.on('data', (d: Buffer) => (devLog += d.toString()));
    dev.stderr?.on('data', (d: Buffer) => (devLog += d.toString()));
    await eventually('the dev broker banner', () => {
      if (dev.exitCode !== null) throw new Error(`dev mode exited ${dev.exitCode}:\n${devLog}`);
      return devLog.includes('Countersign dev broker is running') && existsSync(join(dir, 'env', 'alice.env'));
    });
    deployer = await sourceEnv(join(dir, 'env', 'deployer.env'));
    alice = await sourceEnv(join(dir, 'env', 'alice.env'));
  });
  after(async () => {
    if (dev && dev.exitCode === null) {
      const exited = new Promise((resolve) => dev.once('exit', resolve));
      dev.kill('SIGINT');
      await exited;
    }
    await redis?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('README tour: countersign verify --redeem uses a credential once (dev mode lists the sample workload as a redeemer)', async () => {
    const request = await finishCli(deployer, [
      'request',
      '--operation',
      'deploy',
      '--resource',
      'staging/web',
      '--param',
      'version=1.4.2',
    ]);
    assert.equal(request.code, 0, request.stderr);
    const token = request.stdout.trim();
    const verify = ['verify', '--token', token, '--audience', 'https://deploy.example.org', '--redeem'];
    const first = await finishCli(deployer, verify);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const second = await finishCli(deployer, verify);
    assert.equal(second.code, 7, second.stdout + second.stderr);
    assert.match(second.stdout + second.stderr, /already redeemed/);
  });

  it('gates a shell command: countersign run waits for alice, then runs it with the credential', async () => {
    const run = inRepo(deployer, [
      'npx',
      'countersign',
      'run',
      '--operation',
      'deploy',
      '--resource',
      'prod/web',
      '--param',
      'version=1.4.2',
      '--reason',
      'release 1.4.2',
      '--',
      'sh',
      '-c',
      'echo "deploying with a ${#COUNTERSIGN_TOKEN}-character credential for $COUNTERSIGN_REQUEST_ID"',
    ]);
    const id = await approveAsAlice('prod/web', run);
    assert.equal(await run.code, 0, run.stderr());
    assert.match(run.stdout(), new RegExp(`^deploying with a \\d{3,}-character credential for ${id}$`, 'm'));
    assert.match(run.stderr(), /alice approved via cli: release window \(1 of 1 approval\(s\)\)/);
  });

  it("runs the README's countersign run line as printed: the script it names exists, runs once alice approves, and checks its credential", async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const line = /^npx countersign run .*$/m.exec(readme)?.[0];
    assert.ok(line, 'the README shows countersign run');
    assert.doesNotMatch(line, /['"\\$]/, 'this test splits the line at spaces');
    const run = inRepo(deployer, line.split(/\s+/));
    const id = await approveAsAlice('prod/web', run);
    assert.equal(await run.code, 0, run.stderr());
    assert.match(run.stdout(), new RegExp(`^deployed web 1\\.4\\.2 \\(request ${id}, credential checked\\)$`, 'm'));
  });

  it('gates an MCP tool call: the guard proxy holds deploy until alice approves; the server checks the credential', async () => {
    const call = inRepo(deployer, [
      'npx',
      'tsx',
      'agents/examples/mcp/call-tool.ts',
      'deploy',
      '{"service":"web","version":"1.4.2"}',
      '--',
      'npx',
      'countersign',
      'mcp-proxy',
      '--config',
      'agents/examples/mcp/guard.yaml',
      '--upstream',
      'npx',
      'tsx',
      'agents/examples/mcp/deploy-server.ts',
    ]);
    const id = await approveAsAlice('prod/web', call);
    assert.equal(await call.code, 0, call.stderr());
    assert.equal(call.stdout().trim(), `deployed web 1.4.2 (request ${id}, approved by alice)`);
    assert.match(call.stderr(), new RegExp(`deploy: request ${id} \\(deploy on prod/web\\) waits for approval`));
  });

  it('passes an unguarded MCP tool call straight through the guard proxy', async () => {
    const status = inRepo(deployer, [
      'npx',
      'tsx',
      'agents/examples/mcp/call-tool.ts',
      'status',
      '{}',
      '--',
      'npx',
      'countersign',
      'mcp-proxy',
      '--config',
      'agents/examples/mcp/guard.yaml',
      '--upstream',
      'npx',
      'tsx',
      'agents/examples/mcp/deploy-server.ts',
    ]);
    assert.equal(await status.code, 0, status.stderr());
    assert.deepEqual(JSON.parse(status.stdout()), { web: '1.4.1', api: '2.0.0' });
  });

  it('a denied MCP tool call never reaches the server', async () => {
    const call = inRepo(deployer, [
      'npx',
      'tsx',
      'agents/examples/mcp/call-tool.ts',
      'deploy',
      '{"service":"api","version":"9.9.9"}',
      '--',
      'npx',
      'countersign',
      'mcp-proxy',
      '--config',
      'agents/examples/mcp/guard.yaml',
      '--upstream',
      'npx',
      'tsx',
      'agents/examples/mcp/deploy-server.ts',
    ]);
    const id = await pendingRequest(alice, 'the pending deploy of api', (r) => r.resource === 'prod/api');
    const deny = await finishCli(alice, ['approvals', 'deny', id, '--reason', 'not today']);
    assert.equal(deny.code, 0, deny.stderr);
    assert.equal(await call.code, 1);
    assert.match(
      call.stdout(),
      /^Countersign refused this call to deploy: DENIED \(request req_\S+\): denied by alice \(cli\): not today\. The tool was not called\./,
    );
  });
});
