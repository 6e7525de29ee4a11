// The README's passkey tour, as a newcomer follows it: `countersign-broker dev`,
// a waiting `countersign request` for a prod migration, the CLI approval refused
// with the console's address, then in a browser the dev banner's sign-in link,
// a passkey registered, the request approved with it; the waiting request prints
// a credential whose evidence names the passkey step-up, and `audit verify`
// proves it offline. Dev mode gets a redis-server of its own.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { eventually, startRedisServer, type RedisServer } from '@countersign/broker/testing';
import { finishCli, pendingRequest, runCli } from './support/cli.js';
import { launchBrowser, PersonBrowser, type Browser } from './support/browser.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BROKER_BIN = join(ROOT, 'broker/bin/countersign-broker.js');

async function sourceEnv(file: string): Promise<NodeJS.ProcessEnv> {
  const vars: NodeJS.ProcessEnv = {};
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    const m = /^export ([A-Z_]+)=(.*)$/.exec(line);
    if (m) vars[m[1] as string] = JSON.parse(m[2] as string) as string;
  }
  return vars;
}

describe('README tour: approving a production migration with a passkey in dev mode', { timeout: 600_000 }, () => {
  let redis: RedisServer;
  let dir: string;
  let dev: ChildProcess;
  let devLog = '';
  let browser: Browser;

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
    await eventually('the dev broker banner with the console', () => {
      if (dev.exitCode !== null) throw new Error(`dev mode exited ${dev.exitCode}:\n${devLog}`);
      return devLog.includes('Afterwards, is the audit trail') && existsSync(join(dir, 'env', 'alice.env'));
    });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    if (dev && dev.exitCode === null) {
      const exited = new Promise((resolve) => dev.once('exit', resolve));
      dev.kill('SIGINT');
      await exited;
    }
    await redis?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('prints sign-in links; alice registers a passkey and approves; the credential and audit verify name the passkey', async () => {
    const consoleUrl = /Approver console: (http:\/\/localhost:\d+)/.exec(devLog)?.[1];
    assert.ok(consoleUrl, devLog);
    const aliceLink = /sign in as alice\s+(\S+)/.exec(devLog)?.[1];
    assert.ok(aliceLink?.startsWith(`${consoleUrl}/sign-in/link#t=`), devLog);
    assert.match(devLog, /sign in as bob\s+http:\/\/localhost:\d+\/sign-in\/link#t=/);

    const deployer = await sourceEnv(join(dir, 'env', 'deployer.env'));
    const alice = await sourceEnv(join(dir, 'env', 'alice.env'));
    // The command the banner shows, as it shows it.
    const command = /npx countersign request --operation db-migrate .*--wait/.exec(devLog)?.[0];
    assert.ok(command, devLog);
    const waiting = runCli(deployer, command.split(' ').slice(2));

    const id = await pendingRequest(
      alice,
      'the pending migration',
      (r) => r.operation === 'db-migrate' && r.stepUp === 'webauthn',
      () => {
        if (waiting.child.exitCode !== null) throw new Error(`ended early:\n${waiting.stdout()}\n${waiting.stderr()}`);
      },
    );
    const refused = await finishCli(alice, ['approvals', 'approve', id, '--reason', 'from the terminal']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /\[ERR_STEP_UP_REQUIRED\]/);
    assert.ok(refused.stderr.includes(`${consoleUrl}/requests/${id}`), refused.stderr);

    const person = await PersonBrowser.open(browser);
    try {
      const { page } = person;
      await page.goto(aliceLink as string);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByText('You have no passkey yet').waitFor();
      await page.getByRole('link', { name: 'register a passkey' }).click();
      await page.getByLabel('Passkey name').fill('my laptop');
      await page.getByRole('button', { name: 'Register a passkey' }).click();
      await page.getByText('Passkey registered.').waitFor();
      await page.getByRole('link', { name: 'Pending requests' }).click();
      await page.getByRole('link', { name: 'db-migrate on prod/orders' }).click();
      await page.getByText('0042_add_index').waitFor();
      await page.getByLabel('Reason').fill('migration reviewed');
      await page.getByRole('button', { name: 'Approve' }).click();
      await page.getByText('Your vote is recorded.').waitFor();
    } finally {
      await person.close();
    }

    assert.equal(await waiting.code, 0, waiting.stderr());
    const token = waiting.stdout().trim();
    const claims = decodeJwt(token) as {
      acr: string;
      amr: string[];
      approval: { approvers: { principal: string; channel: string; step_up: string }[] };
    };
    assert.deepEqual(
      claims.approval.approvers.map((a) => [a.principal, a.channel, a.step_up]),
      [['alice', 'console', 'webauthn']],
    );
    assert.equal(claims.acr, 'urn:countersign:acr:human-approval:phishing-resistant');
    assert.match(waiting.stderr(), /alice approved via console/);

    const audit = runCli({ REDIS_URL: redis.url }, ['audit', 'verify', '--dir', dir], {
      command: [process.execPath, BROKER_BIN],
    });
    assert.equal(await audit.code, 0, audit.stdout() + audit.stderr());
    assert.match(audit.stdout(), /OK {4}1 passkey vote\(s\) verified again from the trail/);
  });
});
