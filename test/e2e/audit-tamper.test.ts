// The audit trail against someone who can write to Redis but does not hold the
// signing key (issue 14, finding 3). Each tampering the issue lists makes
// `countersign-broker audit verify`, run as a process, exit non-zero with a
// documented code; `--against FILE` names what Redis lost compared with the file
// sink's copy; and a broker that starts on a Redis that lost its chain records a
// restart linked to the last head it knew of instead of silently starting over.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CountersignClient } from '@countersign/agent';
import { parseConfig, startBroker } from '@countersign/broker';
import {
  copyAudit,
  createLogger,
  readChain,
  rechain,
  setHead,
  startTestBroker,
  testRedis,
  withoutSlackEnv,
  writeBrokerFiles,
  writeChain,
  type TestBroker,
} from '@countersign/broker/testing';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
// The bin: dist/ under npm test (fresh, just built), the sources through tsx on its own run.
const brokerCli = join(root, 'broker/bin/countersign-broker.js');

interface Problem {
  kind: string;
  code: string;
  seq: number | null;
  message: string;
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [brokerCli, ...args], {
      cwd: root,
      env: { ...process.env, REDIS_URL: '' },
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** `audit verify --output json`: the exit code and the problems' codes. */
async function verify(args: string[]): Promise<{ exit: number; codes: string[]; problems: Problem[]; output: string }> {
  const result = await cli(['audit', 'verify', '--output', 'json', ...args]);
  const output = result.stdout + result.stderr;
  let problems: Problem[] = [];
  try {
    problems = (JSON.parse(result.stdout) as { problems: Problem[] }).problems;
  } catch {
    // not JSON: the exit code tells (usage error, crash)
  }
  return { exit: result.code, codes: [...new Set(problems.map((p) => p.code))], problems, output };
}

describe('audit verify against tampering from Redis (exit codes and error codes)', () => {
  let t: TestBroker;
  let client: CountersignClient;
  let n = 0;
  /** The last checkpointed seq of the original chain, and its length. */
  let checkpointSeq: number;
  let headSeq: number;

  before(async () => {
    t = await startTestBroker({
      extraConfig: 'audit:\n  file: audit.jsonl\n  checkpoint:\n    every_events: 1000000\n    interval: 24h\n',
    });
    const deployer = t.svid('ci/deployer');
    client = new CountersignClient({
      address: t.address,
      certChainPem: deployer.chainPem,
      keyPem: deployer.keyPem,
      caPem: t.ca.pem,
    });
    for (let i = 0; i < 3; i++)
      await client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: { i } });
    const cp = await t.broker.checkpointer.checkpointNow();
    assert.equal(cp.stored, true);
    checkpointSeq = cp.stored ? cp.seq : 0;
    for (let i = 3; i < 5; i++)
      await client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: { i } });
    headSeq = Number(await t.broker.redis.hget(`${t.prefix}audit:head`, 'seq'));
    assert.ok(headSeq >= checkpointSeq + 6, `records after the checkpoint: ${headSeq - checkpointSeq}`);
  });
  after(async () => {
    client?.close();
    await t?.close();
  });

  /** A copy of the broker's audit keys under a prefix of its own, and a config file that points verify at it. */
  async function copy(): Promise<{ prefix: string; config: string }> {
    const prefix = `${t.prefix}copy${++n}:`; // under the test's prefix, so cleanup takes it
    await copyAudit(t.broker.redis, t.prefix, prefix);
    const text = (await readFile(t.configFile, 'utf8')).replace(`prefix: "${t.prefix}"`, `prefix: "${prefix}"`);
    const config = join(t.dir, `config-copy${n}.yaml`);
    await writeFile(config, text);
    return { prefix, config };
  }

  it('passes the untouched chain', async () => {
    const { config } = await copy();
    const result = await verify(['--config', config]);
    assert.equal(result.exit, 0, result.output);
  });

  it('dropping the records after the last checkpoint and rewriting the head: exit 7, ERR_AUDIT_HEAD_MISMATCH', async () => {
    const { prefix, config } = await copy();
    const records = await readChain(t.broker.redis, prefix);
    await t.broker.redis.ltrim(`${prefix}audit:chain`, 0, checkpointSeq - 1);
    await setHead(t.broker.redis, prefix, records[checkpointSeq - 1]!);
    const result = await verify(['--config', config]);
    assert.equal(result.exit, 7, result.output);
    assert.ok(result.codes.includes('ERR_AUDIT_HEAD_MISMATCH'), result.output);
  });

  it('... and also removing the head signature: exit 7, ERR_AUDIT_HEAD_UNSIGNED', async () => {
    const { prefix, config } = await copy();
    const records = await readChain(t.broker.redis, prefix);
    await t.broker.redis.ltrim(`${prefix}audit:chain`, 0, checkpointSeq - 1);
    await setHead(t.broker.redis, prefix, records[checkpointSeq - 1]!);
    await t.broker.redis.hdel(`${prefix}audit:head`, 'sig');
    const result = await verify(['--config', config]);
    assert.equal(result.exit, 7, result.output);
    assert.deepEqual(result.codes, ['ERR_AUDIT_HEAD_UNSIGNED'], result.output);
  });

  it('... and also putting the checkpoint in the head signature’s place: exit 7, ERR_AUDIT_HEAD_SIGNATURE', async () => {
    const { prefix, config } = await copy();
    const records = await readChain(t.broker.redis, prefix);
    await t.broker.redis.ltrim(`${prefix}audit:chain`, 0, checkpointSeq - 1);
    await setHead(t.broker.redis, prefix, records[checkpointSeq - 1]!);
    const [checkpoint] = await t.broker.redis.lrange(`${prefix}audit:checkpoints`, -1, -1);
    await t.broker.redis.hset(`${prefix}audit:head`, 'sig', checkpoint!);
    const result = await verify(['--config', config]);
    assert.equal(result.exit, 7, result.output);
    assert.deepEqual(result.codes, ['ERR_AUDIT_HEAD_SIGNATURE'], result.output);
  });

  it('editing a record after the last checkpoint and re-chaining the tail: exit 7, ERR_AUDIT_HEAD_MISMATCH', async () => {
    const { prefix, config } = await copy();
    const edited = checkpointSeq + 2;
    const records = rechain(await readChain(t.broker.redis, prefix), edited, (r) => {
      if (r.seq === edited) r.event.resource = 'prod/web';
    });
    assert.equal(records[edited - 1]?.event.resource, 'prod/web');
    await writeChain(t.broker.redis, prefix, records);
    await setHead(t.broker.redis, prefix, records[records.length - 1]!);
    const result = await verify(['--config', config]);
    assert.equal(result.exit, 7, result.output);
    assert.deepEqual(result.codes, ['ERR_AUDIT_HEAD_MISMATCH'], result.output);
  });

  it('deleting all checkpoints and re-chaining: exit 5, ERR_AUDIT_CHECKPOINT_MISSING (and the head disagrees)', async () => {
    const { prefix, config } = await copy();
    await t.broker.redis.del(`${prefix}audit:checkpoints`);
    await t.broker.redis.hdel(`${prefix}audit:head`, 'checkpoint_seq');
    const records = rechain(await readChain(t.broker.redis, prefix), 3, (r) => {
      if (r.seq === 3) r.event.rewritten = true;
    });
    await writeChain(t.broker.redis, prefix, records);
    await setHead(t.broker.redis, prefix, records[records.length - 1]!);
    const result = await verify(['--config', config]);
    assert.equal(result.exit, 5, result.output);
    assert.deepEqual(result.codes.sort(), ['ERR_AUDIT_CHECKPOINT_MISSING', 'ERR_AUDIT_HEAD_MISMATCH'], result.output);
  });

  it('deleting the checkpoints alone: exit 5, ERR_AUDIT_CHECKPOINT_MISSING', async () => {
    const { prefix, config } = await copy();
    await t.broker.redis.del(`${prefix}audit:checkpoints`);
    await t.broker.redis.hdel(`${prefix}audit:head`, 'checkpoint_seq');
    const result = await verify(['--config', config]);
    assert.equal(result.exit, 5, result.output);
    assert.deepEqual(result.codes, ['ERR_AUDIT_CHECKPOINT_MISSING'], result.output);
  });

  it('deleting the head: exit 7, ERR_AUDIT_HEAD_MISSING', async () => {
    const { prefix, config } = await copy();
    await t.broker.redis.del(`${prefix}audit:head`);
    const result = await verify(['--config', config]);
    assert.equal(result.exit, 7, result.output);
    assert.deepEqual(result.codes, ['ERR_AUDIT_HEAD_MISSING'], result.output);
  });

  it('--against the file sink names the records missing from Redis: exit 9, ERR_AUDIT_MISSING_FROM_REDIS', async () => {
    const { prefix, config } = await copy();
    const sink = join(t.dir, 'audit.jsonl');
    const clean = await verify(['--config', config, '--against', sink]);
    assert.equal(clean.exit, 0, clean.output);

    const records = await readChain(t.broker.redis, prefix);
    await t.broker.redis.ltrim(`${prefix}audit:chain`, 0, checkpointSeq - 1);
    await setHead(t.broker.redis, prefix, records[checkpointSeq - 1]!);
    const result = await verify(['--config', config, '--against', sink]);
    assert.ok(result.codes.includes('ERR_AUDIT_MISSING_FROM_REDIS'), result.output);
    const missing = result.problems.find((p) => p.code === 'ERR_AUDIT_MISSING_FROM_REDIS');
    assert.match(missing?.message ?? '', new RegExp(`seq ${checkpointSeq + 1}-${headSeq}\\b`));
  });
});

describe('a broker that starts on a Redis that lost its audit chain', () => {
  it('records a chain restart linked to the file sink’s last record, logs an error, and verify names it', async () => {
    const r = await testRedis('restart');
    const files = await writeBrokerFiles({
      redisUrl: r.url,
      prefix: r.prefix,
      extraConfig: 'audit:\n  file: audit.jsonl\n',
    });
    const config = parseConfig(files.configText, files.configFile);
    const quiet = createLogger({ level: 'fatal' });
    const overrides = { redis: r.redis, auditStdout: null, env: withoutSlackEnv(process.env) };
    const deployer = files.ca.issueSvid(`spiffe://${files.trustDomain}/ci/deployer`);
    const request = async (port: number) => {
      const c = new CountersignClient({
        address: `127.0.0.1:${port}`,
        certChainPem: deployer.chainPem,
        keyPem: deployer.keyPem,
        caPem: files.ca.pem,
      });
      try {
        return await c.requestOperation({ operation: 'deploy', resource: 'staging/web' });
      } finally {
        c.close();
      }
    };
    try {
      const first = await startBroker(config, { ...overrides, logger: quiet });
      await request(first.grpcPort);
      await request(first.grpcPort);
      await first.close();
      const sinkFile = join(files.dir, 'audit.jsonl');
      const before = (await readFile(sinkFile, 'utf8'))
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('{"checkpoint"'));
      const last = JSON.parse(before[before.length - 1] as string) as { seq: number; hash: string };

      await r.redis.del(`${r.prefix}audit:chain`, `${r.prefix}audit:head`, `${r.prefix}audit:checkpoints`);

      const logged: Record<string, unknown>[] = [];
      const logger = createLogger({
        level: 'info',
        destination: new Writable({
          write(chunk: Buffer, _enc, done) {
            for (const line of chunk.toString().split('\n'))
              if (line.trim()) logged.push(JSON.parse(line) as Record<string, unknown>);
            done();
          },
        }),
      });
      const second = await startBroker(config, { ...overrides, logger });
      try {
        const chain = await readChain(r.redis, r.prefix);
        assert.equal(chain[0]?.event.type, 'chain_restart', JSON.stringify(chain[0]));
        assert.equal(chain[0]?.seq, last.seq + 1);
        assert.equal(chain[0]?.prev, last.hash);
        assert.equal(chain[0]?.event.last_known_seq, last.seq);
        assert.equal(chain[0]?.event.last_known_hash, last.hash);
        assert.equal(chain[0]?.event.source, 'file');
        assert.equal(chain[0]?.event.found_seq, 0);
        assert.ok(
          logged.some((l) => l.level === 50 && /restart/i.test(String(l.msg))),
          JSON.stringify(logged.map((l) => [l.level, l.msg])),
        );
        // It keeps working, on the restarted chain.
        assert.equal((await request(second.grpcPort)).state, 'APPROVED');
      } finally {
        await second.close();
      }

      const fromRedis = await verify(['--config', files.configFile]);
      assert.equal(fromRedis.exit, 8, fromRedis.output);
      assert.deepEqual(fromRedis.codes, ['ERR_AUDIT_CHAIN_RESTARTED'], fromRedis.output);

      // The file sink's copy holds the whole story, continuous across the restart.
      const fromFile = await verify(['--file', sinkFile, '--config', files.configFile]);
      assert.equal(fromFile.exit, 0, fromFile.output);

      const against = await verify(['--config', files.configFile, '--against', sinkFile]);
      assert.ok(against.codes.includes('ERR_AUDIT_MISSING_FROM_REDIS'), against.output);
      assert.match(
        against.problems.find((p) => p.code === 'ERR_AUDIT_MISSING_FROM_REDIS')?.message ?? '',
        new RegExp(`seq 1-${last.seq}\\b`),
      );
    } finally {
      await r.cleanup();
      await rm(files.dir, { recursive: true, force: true });
    }
  });
});
