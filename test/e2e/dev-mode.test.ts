// `countersign-broker dev` as a person uses it over several sessions: their config.yaml edits
// survive a restart, logs are readable lines (a refused policy reload prints as the multi-line
// message it is, naming the rule), and a dev trail that no longer verifies is pointed out at
// start. Dev mode gets a redis-server of its own, so its keys touch nobody else's.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connectRedis, eventually, startRedisServer, type RedisServer } from '@countersign/broker/testing';

const BROKER_BIN = fileURLToPath(new URL('../../broker/bin/countersign-broker.js', import.meta.url));

interface Dev {
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

// Every dev broker started, so that a failed assertion does not leave one running.
const started = new Set<Dev>();

async function startDev(dir: string, redisUrl: string, extra: string[] = []): Promise<Dev> {
  const child = spawn(
    process.execPath,
    [BROKER_BIN, 'dev', '--dir', dir, '--grpc-port', '0', '--http-port', '0', '--console-port', '0', ...extra],
    {
      env: { ...process.env, REDIS_URL: redisUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const dev: Dev = {
    child,
    output: () => output,
    stop: async () => {
      started.delete(dev);
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      await exited;
    },
  };
  started.add(dev);
  await eventually('the dev banner', () => {
    if (child.exitCode !== null) throw new Error(`dev mode exited ${child.exitCode}:\n${output}`);
    return output.includes('Afterwards, is the audit trail');
  });
  return dev;
}

describe('dev mode across restarts', () => {
  let redis: RedisServer;
  let dir: string;
  let dev: Dev | undefined;

  before(async () => {
    redis = await startRedisServer({ persistence: 'none' });
    dir = await mkdtemp(join(tmpdir(), 'countersign-dev-mode-'));
  });
  after(async () => {
    for (const d of [...started]) await d.stop();
    await redis?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("keeps the user's config.yaml edits and updates only what dev mode owns", async () => {
    dev = await startDev(dir, redis.url);
    assert.match(dev.output(), /config +\S+config\.yaml +\(written once, then yours/);
    await dev.stop();
    const file = join(dir, 'config.yaml');
    const written = await readFile(file, 'utf8');
    // An edit of the user's (a longer max TTL, with a comment), and one of dev mode's (the port, from --grpc-port).
    const edited = written
      .replace('  max_ttl: 1h\n', '  # longer, for our demo\n  max_ttl: 2h\n')
      .replace('  listen: 127.0.0.1:0\n', '  listen: 127.0.0.1:1\n');
    assert.notEqual(edited, written, 'the edits apply to what dev mode wrote');
    await writeFile(file, edited);
    dev = await startDev(dir, redis.url);
    assert.match(
      dev.output(),
      /config +\S+config\.yaml +\(yours, kept: dev mode updates only the listen ports, the console's localhost URL, redis\.url and redis\.prefix\)/,
    );
    const kept = await readFile(file, 'utf8');
    assert.match(kept, / {2}# longer, for our demo\n {2}max_ttl: 2h\n/);
    assert.match(kept, /grpc:\n {2}listen: 127\.0\.0\.1:0\n/, 'the listen address follows --grpc-port');
    await dev.stop();
  });

  it('adds the approver console to a config.yaml written before it, keeping the edits', async () => {
    const file = join(dir, 'config.yaml');
    const written = await readFile(file, 'utf8');
    // A dev directory from before the console: no console section; and an edit of the user's.
    const before = written
      .replace(/^console:\n(?: .*\n)+/m, '')
      .replace('  default_ttl: 5m\n', '  # ours\n  default_ttl: 10m\n');
    assert.doesNotMatch(before, /^console:/m);
    assert.match(before, /# ours/);
    await writeFile(file, before);
    dev = await startDev(dir, redis.url);
    assert.match(dev.output(), /config +\S+config\.yaml +\(yours, kept: .*; added the console section\)/);
    assert.match(dev.output(), /Approver console: http:\/\/localhost:\d+ /);
    assert.match(dev.output(), /sign in as alice +http:\/\/localhost:\d+\/sign-in\/link#t=/);
    const updated = await readFile(file, 'utf8');
    assert.match(updated, / {2}# ours\n {2}default_ttl: 10m\n/, "the user's edit and comment are kept");
    assert.match(updated, /^console:\n {2}# .*\n {2}enabled: true\n {2}listen: 127\.0\.0\.1:0\n/m);
    assert.doesNotMatch(updated, /public_url/, 'with --console-port 0 the console names the port it got');
    await dev.stop();
    // The next start finds the section and adds nothing.
    dev = await startDev(dir, redis.url);
    assert.doesNotMatch(dev.output(), /added the console section/);
    assert.equal(await readFile(file, 'utf8'), updated);
    await dev.stop();
  });

  it('prints readable logs, and a refused policy reload as its multi-line message naming the rule', async () => {
    dev = await startDev(dir, redis.url, ['--log-format', 'pretty']);
    assert.doesNotMatch(dev.output(), /^\{"level"/m, 'no JSON log lines');
    const policyFile = join(dir, 'policy.yaml');
    const policy = await readFile(policyFile, 'utf8');
    await writeFile(policyFile, policy.replace('      required: 1\n', '      required: 1\n      aprovers: [alice]\n'));
    const shown = await eventually(
      'the refused reload',
      () => /policy reload rejected, keeping the previous policy:\n(.*)\n/.exec(dev?.output() ?? '')?.[1],
    );
    assert.match(
      shown,
      /policy\.yaml:\d+:\d+: rule prod-deploys: approval: unknown key "aprovers" \(did you mean "approvers"\?\)/,
    );
    await writeFile(policyFile, policy);
    await dev.stop();
  });

  it('warns at start when its own audit trail does not verify', async () => {
    dev = await startDev(dir, redis.url);
    assert.doesNotMatch(dev.output(), /WARNING/);
    await dev.stop();
    const prefix = /^ {2}prefix: "(.*)"$/m.exec(await readFile(join(dir, 'config.yaml'), 'utf8'))?.[1];
    assert.ok(prefix);
    const r = await connectRedis(redis.url);
    try {
      const record = (await r.lindex(`${prefix}audit:chain`, 0)) as string;
      // One millisecond later than it happened: the record no longer matches its hash.
      await r.lset(
        `${prefix}audit:chain`,
        0,
        record.replace(/"at":(\d+)/, (_, at: string) => `"at":${Number(at) + 1}`),
      );
    } finally {
      r.disconnect();
    }
    dev = await startDev(dir, redis.url);
    assert.match(dev.output(), /WARNING: this dev broker's audit trail does not verify: the chain breaks at seq 1\./);
    assert.match(dev.output(), /Resetting the dev trail/);
    await dev.stop();
  });
});
