// Benchmark: what durable acknowledgements (redis.durability.replicas: 1, a WAIT
// after each audit append) cost on the allow path. The same broker setup against
// the same Redis primary with one replica, WAIT off (the baseline) and on, in the
// same run; the callers run in a separate process (load-client.ts).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startRedisServer, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { fmt, table, type LoadResult } from './harness.js';
import type { LoadClientConfig } from './load-client.js';

const run = promisify(execFile);
const loadClient = fileURLToPath(new URL('./load-client.ts', import.meta.url));

async function load(config: LoadClientConfig): Promise<LoadResult> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', loadClient, JSON.stringify(config)], {
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout.trim().split('\n').pop() as string) as LoadResult;
}

export async function benchDurability(options: { durationMs: number; concurrencies: number[] }): Promise<void> {
  // A primary and a replica of the bench's own (AOF everysec, as docs/operations.md recommends).
  const primary = await startRedisServer({ persistence: 'aof-everysec' });
  const replica = await startRedisServer({ persistence: 'aof-everysec', replicaOf: primary.port });
  const limits = 'requests:\n  limits: { requests_per_second: 100000, burst: 100000 }\n';
  const brokers: TestBroker[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'countersign-bench-'));
  try {
    const off = await startTestBroker({ redisUrl: primary.url, extraConfig: limits });
    brokers.push(off);
    const on = await startTestBroker({
      redisUrl: primary.url,
      extraConfig: limits,
      ca: off.ca,
      redisExtra: '  durability: { replicas: 1, timeout: 1s }\n',
    });
    brokers.push(on);
    const deployer = off.svid('ci/deployer');
    const files = { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem'), caFile: join(dir, 'ca.pem') };
    await Promise.all([
      writeFile(files.certFile, deployer.chainPem),
      writeFile(files.keyFile, deployer.keyPem),
      writeFile(files.caFile, off.ca.pem),
    ]);
    const rows: Record<string, string>[] = [];
    for (const concurrency of options.concurrencies) {
      const common = { ...files, concurrency, durationMs: options.durationMs, channels: 1, target: 'broker' as const };
      // off, on, on, off: neither side always gets the warmer process or the quieter machine.
      const b1 = await load({ ...common, address: off.address });
      const w1 = await load({ ...common, address: on.address });
      const w2 = await load({ ...common, address: on.address });
      const b2 = await load({ ...common, address: off.address });
      const mean = (x: LoadResult, y: LoadResult): LoadResult => ({
        ...x,
        throughput: (x.throughput + y.throughput) / 2,
        p50Ms: (x.p50Ms + y.p50Ms) / 2,
        p99Ms: (x.p99Ms + y.p99Ms) / 2,
        errors: x.errors + y.errors,
      });
      const base = mean(b1, b2);
      const waited = mean(w1, w2);
      rows.push({
        concurrency: String(concurrency),
        'no WAIT calls/s': fmt(base.throughput, 0),
        'WAIT 1 replica calls/s': fmt(waited.throughput, 0),
        'ratio WAIT/no WAIT': fmt(waited.throughput / base.throughput, 2),
        'no WAIT p50/p99 ms': `${fmt(base.p50Ms, 2)}/${fmt(base.p99Ms, 2)}`,
        'WAIT p50/p99 ms': `${fmt(waited.p50Ms, 2)}/${fmt(waited.p99Ms, 2)}`,
        errors: String(base.errors + waited.errors),
      });
    }
    process.stdout.write(
      '\nDurable acknowledgements on the allow path: redis.durability.replicas 1 (WAIT after each audit append) vs none,\n',
    );
    process.stdout.write(
      'same primary (with one replica on loopback), same run; the cost is the replica round trip per group commit\n',
    );
    process.stdout.write(`${table(rows)}\n`);
  } finally {
    for (const b of brokers) await b.close();
    await replica.destroy();
    await primary.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}
