// A Redis Cluster of the test's own: three primaries on free loopback ports, joined
// with `redis-cli --cluster create`, and the moves an operator makes while resharding
// (one slot migrated key by key, with MOVED/ASK answers meanwhile).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connectRedis, type Redis } from '../../src/redis/connection.js';
import { eventually, startRedisServer, type RedisServer } from './process.js';

const run = promisify(execFile);

export interface RedisCluster {
  servers: RedisServer[];
  /** host:port of each node, as redis.cluster.nodes wants them. */
  nodes: string[];
  /** The port of the node serving a key's slot now. */
  ownerOf(key: string): Promise<{ port: number; slot: number }>;
  /** Moves the slot of `key` to another primary, MIGRATE by MIGRATE, as `redis-cli --cluster reshard` does; returns where it went. */
  migrateSlotOf(
    key: string,
    options?: { batch?: number; pauseMs?: number },
  ): Promise<{ slot: number; from: number; to: number; keys: number }>;
  /** Adds a replica of the primary on `port` (CLUSTER MEET, CLUSTER REPLICATE) and waits until it is in sync. */
  addReplica(port: number): Promise<RedisServer>;
  /** A cluster client (ioredis Cluster, typed as Redis) for checks. */
  connect(): Promise<Redis>;
  destroy(): Promise<void>;
}

async function at<T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = await connectRedis(`redis://127.0.0.1:${port}`, { connectTimeoutMs: 1000 });
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

export async function startRedisCluster(): Promise<RedisCluster> {
  const servers: RedisServer[] = [];
  const destroy = async () => {
    await Promise.all(servers.map((s) => s.destroy()));
  };
  try {
    for (let i = 0; i < 3; i++) servers.push(await startRedisServer({ persistence: 'none', cluster: true }));
    const nodes = servers.map((s) => `127.0.0.1:${s.port}`);
    await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: 30_000,
    });
    await eventually(
      'the cluster to be ok on every node',
      async () => {
        for (const s of servers) {
          const ok = await at(
            s.port,
            async (r) =>
              /cluster_state:ok/.test(String(await r.call('CLUSTER', 'INFO'))) &&
              /cluster_known_nodes:3/.test(String(await r.call('CLUSTER', 'INFO'))),
          );
          if (!ok) return false;
        }
        return true;
      },
      30_000,
      100,
    );
    const ports = servers.map((s) => s.port);
    const ownerOf = async (key: string) => {
      const slot = Number(await at(ports[0] as number, (r) => r.call('CLUSTER', 'KEYSLOT', key)));
      const ranges = (await at(ports[0] as number, (r) => r.call('CLUSTER', 'SLOTS'))) as [
        number,
        number,
        [string, number, string],
      ][];
      const range = ranges.find(([from, to]) => slot >= from && slot <= to);
      if (range === undefined) throw new Error(`no node serves slot ${slot}`);
      return { port: Number(range[2][1]), slot };
    };
    return {
      servers,
      nodes,
      ownerOf,
      async migrateSlotOf(key, options = {}) {
        const { port: from, slot } = await ownerOf(key);
        const to = ports.find((p) => p !== from) as number;
        const fromId = String(await at(from, (r) => r.call('CLUSTER', 'MYID')));
        const toId = String(await at(to, (r) => r.call('CLUSTER', 'MYID')));
        await at(to, (r) => r.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId));
        await at(from, (r) => r.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId));
        let moved = 0;
        for (;;) {
          const keys = (await at(from, (r) =>
            r.call('CLUSTER', 'GETKEYSINSLOT', slot, options.batch ?? 10),
          )) as string[];
          if (keys.length === 0) break;
          await at(from, (r) => r.call('MIGRATE', '127.0.0.1', to, '', 0, 5000, 'REPLACE', 'KEYS', ...keys));
          moved += keys.length;
          // Traffic meets a slot that is half here, half there (ASK, TRYAGAIN) for a while.
          if (options.pauseMs) await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
        }
        for (const p of [to, from, ...ports.filter((x) => x !== to && x !== from)])
          await at(p, (r) => r.call('CLUSTER', 'SETSLOT', slot, 'NODE', toId));
        return { slot, from, to, keys: moved };
      },
      async addReplica(port) {
        const replica = await startRedisServer({ persistence: 'none', cluster: true });
        servers.push(replica);
        const primaryId = String(await at(port, (r) => r.call('CLUSTER', 'MYID')));
        await at(replica.port, (r) => r.call('CLUSTER', 'MEET', '127.0.0.1', port));
        await eventually(
          'the new node to know the primary',
          () => at(replica.port, async (r) => String(await r.call('CLUSTER', 'NODES')).includes(primaryId)),
          20_000,
          100,
        );
        await at(replica.port, (r) => r.call('CLUSTER', 'REPLICATE', primaryId));
        await eventually(
          'the replica to be in sync',
          () => at(port, async (r) => /^slave0:.*state=online/m.test(await r.info('replication'))),
          20_000,
          100,
        );
        return replica;
      },
      connect: () =>
        connectRedis('redis://127.0.0.1', {
          connectionName: 'countersign-test',
          cluster: { nodes: ports.map((port) => ({ host: '127.0.0.1', port })) },
        }),
      destroy,
    };
  } catch (e) {
    await destroy();
    throw e;
  }
}
