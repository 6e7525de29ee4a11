// The README's Slack flow as a user runs it, with the Slack fake standing in for
// a workspace: `countersign-broker dev` with SLACK_* set (Socket Mode, so no
// public URL), `countersign request --wait` for prod/web, the card in alice's
// DM, a click on Approve, and the waiting request prints its credential.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { connectRedis, eventually, FakeSlack, TEST_REDIS_URL } from '@countersign/broker/testing';

const BROKER = fileURLToPath(new URL('../../broker/bin/countersign-broker.js', import.meta.url));
const CLI = fileURLToPath(new URL('../../agents/bin/countersign.js', import.meta.url));

/** The environment of the person running it, minus anything Slack or Countersign of their own. */
const baseEnv = () =>
  Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('SLACK_') && !k.startsWith('COUNTERSIGN_')),
  );

function envFile(text: string): Record<string, string> {
  return Object.fromEntries(
    [...text.matchAll(/^export (\w+)=(".*")$/gm)].map((m) => [m[1] as string, JSON.parse(m[2] as string) as string]),
  );
}

describe('npm start with Slack (dev mode, Socket Mode, fake Slack)', () => {
  let fake: FakeSlack;
  let dir: string;
  let dev: ChildProcess;
  let devOut = '';
  let prefix: string | undefined;

  before(async () => {
    fake = await FakeSlack.start({
      users: [
        { id: 'U0ALICE', name: 'alice' },
        { id: 'U0BOB', name: 'bob' },
      ],
    });
    dir = await mkdtemp(join(tmpdir(), 'countersign-slack-dev-'));
    dev = spawn(
      process.execPath,
      [BROKER, 'dev', '--dir', dir, '--grpc-port', '0', '--http-port', '0', '--console-port', '0'],
      {
        env: {
          ...baseEnv(),
          REDIS_URL: TEST_REDIS_URL,
          SLACK_BOT_TOKEN: fake.botToken,
          SLACK_APP_TOKEN: fake.appToken,
          SLACK_API_URL: fake.apiUrl,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    dev.stdout?.on('data', (d: Buffer) => (devOut += d.toString()));
    dev.stderr?.on('data', (d: Buffer) => (devOut += d.toString()));
    await eventually('dev mode to start', () => devOut.includes('Next, in another terminal'), 90_000);
    prefix = /prefix (\S+)\)/.exec(devOut)?.[1];
  });
  after(async () => {
    if (dev && dev.exitCode === null) {
      const exited = new Promise((resolve) => dev.once('exit', resolve));
      dev.kill('SIGTERM');
      await exited;
    }
    if (prefix !== undefined) {
      const redis = await connectRedis(TEST_REDIS_URL);
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.unlink(...keys);
      } while (cursor !== '0');
      redis.disconnect();
    }
    await fake?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('posts the card for prod/web to the sample approvers, and a click approves it', async () => {
    assert.match(devOut, /Slack\s+on, Socket Mode/);
    assert.equal(fake.sockets.length, 1, 'dev mode connected over Socket Mode');
    const deployer = envFile(await readFile(join(dir, 'env', 'deployer.env'), 'utf8'));
    const waiting = spawn(
      process.execPath,
      [CLI, 'request', '--operation', 'deploy', '--resource', 'prod/web', '--param', 'version=1.4.2', '--wait'],
      {
        env: { ...baseEnv(), ...deployer },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    waiting.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    waiting.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = new Promise<number | null>((resolve) => waiting.once('exit', resolve));

    const id = await eventually('the request id', () => /request (req_[A-Za-z0-9_-]+)/.exec(stderr)?.[1]);
    // The dev policy names no channel: the card goes to alice's and bob's DMs (U0ALICE, U0BOB in the dev principals file).
    const card = await fake.waitFor(
      "the card in alice's DM",
      () => fake.posts('D0ALICE').find((m) => m.text.includes(id)),
      60_000,
    );
    await fake.waitFor("the card in bob's DM", () => fake.posts('D0BOB').find((m) => m.text.includes(id)), 60_000);
    await fake.sendOverSocket(fake.clickPayload(card, 'countersign_approve', 'U0ALICE'));

    assert.equal(await code, 0, stderr);
    const token = stdout.trim();
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the credential, a compact JWS');
    const claims = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as {
      approval: { approvers: { principal: string; channel: string }[] };
    };
    assert.deepEqual(
      claims.approval.approvers.map((a) => `${a.principal}/${a.channel}`),
      ['alice/slack'],
    );
    await fake.waitFor('the approved card', () => /Approved\* by alice/.test(JSON.stringify(card.blocks)), 60_000);
  });
});
