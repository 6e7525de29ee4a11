// A Redis Sentinel deployment of the test's own, on free loopback ports: a primary,
// replicas and three sentinels (quorum 2), so a test can SIGKILL the primary and
// watch Sentinel promote a replica. Every process is killed by destroy(), and by
// the process-exit hook of process.ts if the test dies first.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/dev/redis.js';
import { connectRedis, type Redis } from '../../src/redis/connection.js';
import { eventually, startRedisServer, trackChild, type RedisServer } from './process.js';

export const SENTINEL_MASTER = 'countersign';

export interface SentinelSet {
  /** The servers, the first one the primary at the start. */
  servers: RedisServer[];
  sentinelPorts: number[];
  /** host:port of each sentinel, as redis.sentinel.sentinels wants them. */
  sentinelAddresses: string[];
  /** The port of the primary Sentinel names now. */
  primaryPort(): Promise<number>;
  /** What each sentinel says (tilt, the master's address and flags), for a failing test's message. */
  describe(): Promise<string>;
  /** A connection to the current primary, through the sentinels. */
  connectPrimary(): Promise<Redis>;
  destroy(): Promise<void>;
}

async function redisAt(port: number): Promise<Redis> {
  return connectRedis(`redis://127.0.0.1:${port}`, { connectTimeoutMs: 500 });
}

async function ask<T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = await redisAt(port);
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/** A primary with `replicas` replicas (AOF everysec), and three sentinels that notice a dead primary after downAfterMs. */
export async function startSentinelSet(
  options: { replicas?: number; downAfterMs?: number } = {},
): Promise<SentinelSet> {
  const servers: RedisServer[] = [];
  const sentinels: ChildProcess[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'countersign-sentinel-'));
  const destroy = async () => {
    await Promise.all(
      sentinels.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise((resolve) => c.once('exit', resolve));
        c.kill('SIGKILL');
        await exited;
      }),
    );
    await Promise.all(servers.map((s) => s.destroy()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const primary = await startRedisServer({ persistence: 'aof-everysec' });
    servers.push(primary);
    for (let i = 0; i < (options.replicas ?? 2); i++)
      servers.push(await startRedisServer({ persistence: 'aof-everysec', replicaOf: primary.port }));
    const replicas = servers.length - 1;
    // Sentinels learn the replicas from the primary's INFO: let them be there first.
    await eventually(
      'the replicas to be in sync',
      () =>
        ask(
          primary.port,
          async (r) =>
            (await r.info('replication')).split('\n').filter((l) => /^slave\d+:.*state=online/.test(l)).length ===
            replicas,
        ),
      20_000,
      50,
    );
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const [i, port] of ports.entries()) {
      const file = join(dir, `sentinel-${i}.conf`);
      await writeFile(
        file,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${SENTINEL_MASTER} ${options.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${SENTINEL_MASTER} 10000`,
          `sentinel parallel-syncs ${SENTINEL_MASTER} ${replicas}`,
          '',
        ].join('\n'),
      );
      sentinels.push(trackChild(spawn('redis-server', [file, '--sentinel'], { stdio: 'ignore' })));
    }
    // Failover needs the sentinels to know each other (hello messages, every 2 s) and the replicas.
    await eventually(
      'the sentinels to see each other and the replicas',
      async () => {
        for (const port of ports) {
          const ok = await ask(port, async (r) => {
            const quorum = String(await r.call('SENTINEL', 'CKQUORUM', SENTINEL_MASTER));
            const known = (await r.call('SENTINEL', 'REPLICAS', SENTINEL_MASTER)) as unknown[];
            return /3 usable Sentinels/.test(quorum) && known.length === replicas;
          });
          if (!ok) return false;
        }
        return true;
      },
      30_000,
      100,
    );
    const primaryPort = async () =>
      ask(ports[0] as number, async (r) =>
        Number(((await r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER)) as string[])[1]),
      );
    const describe = async () =>
      (
        await Promise.all(
          ports.map((port) =>
            ask(port, async (r) => {
              const info = await r.info('sentinel');
              return `sentinel :${port}: ${info
                .split(/\r?\n/)
                .filter((l) => /^(sentinel_tilt|master0)/.test(l))
                .join('; ')}`;
            }).catch((e: unknown) => `sentinel :${port}: ${(e as Error).message}`),
          ),
        )
      ).join('\n');
    return {
      servers,
      describe,
      sentinelPorts: ports,
      sentinelAddresses: ports.map((p) => `127.0.0.1:${p}`),
      primaryPort,
      connectPrimary: () =>
        connectRedis('redis://127.0.0.1', {
          connectionName: 'countersign-test',
          sentinel: { masterName: SENTINEL_MASTER, sentinels: ports.map((port) => ({ host: '127.0.0.1', port })) },
        }),
      destroy,
    };
  } catch (e) {
    await destroy();
    throw e;
  }
}
