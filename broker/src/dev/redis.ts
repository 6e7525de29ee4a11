// Finding a Redis for dev mode: REDIS_URL, else 127.0.0.1:6379 when it answers,
// else a redis-server from PATH started on a free port with its data in the dev
// directory, else a clear message on how to get one.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connectRedis, redactRedisUrl } from '../redis/connection.js';

export interface DevRedis {
  url: string;
  /** How it was found, for the banner. */
  origin: 'REDIS_URL' | 'local' | 'started';
  stop(): Promise<void>;
}

export const INSTALL_REDIS_HINT = `Countersign needs Redis 6.2 or later. Either:
  - point REDIS_URL at one (e.g. REDIS_URL=redis://127.0.0.1:6379 npm start), or
  - install redis-server so dev mode can start it for you:
      Debian/Ubuntu: sudo apt-get install redis-server
      macOS:         brew install redis`;

async function answers(url: string): Promise<boolean> {
  try {
    const redis = await connectRedis(url, { connectTimeoutMs: 1000 });
    redis.disconnect();
    return true;
  } catch {
    return false;
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

function startRedisServer(dataDir: string, port: number): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'redis-server',
      [
        '--bind',
        '127.0.0.1',
        '--port',
        String(port),
        '--dir',
        dataDir,
        '--appendonly',
        'yes',
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
    child.once('error', reject);
    child.once('spawn', () => resolve(child));
  });
}

export async function findDevRedis(options: {
  env: NodeJS.ProcessEnv;
  dir: string;
  log: (line: string) => void;
}): Promise<DevRedis> {
  const fromEnv = options.env.REDIS_URL;
  if (fromEnv) {
    if (!(await answers(fromEnv)))
      throw new Error(`REDIS_URL=${redactRedisUrl(fromEnv)} does not answer.\n${INSTALL_REDIS_HINT}`);
    return { url: fromEnv, origin: 'REDIS_URL', stop: async () => {} };
  }
  const local = 'redis://127.0.0.1:6379';
  if (await answers(local)) return { url: local, origin: 'local', stop: async () => {} };

  const dataDir = join(options.dir, 'redis');
  await mkdir(dataDir, { recursive: true });
  const port = await freePort();
  let child: ChildProcess;
  try {
    child = await startRedisServer(dataDir, port);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new Error(`No Redis answers at 127.0.0.1:6379 and redis-server is not on PATH.\n${INSTALL_REDIS_HINT}`);
    throw e;
  }
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 50 && !(await answers(url)); i++) await new Promise((r) => setTimeout(r, 100));
  if (!(await answers(url))) {
    child.kill();
    throw new Error(`redis-server started on port ${port} but does not answer.\n${INSTALL_REDIS_HINT}`);
  }
  options.log(`started redis-server on 127.0.0.1:${port} (data in ${dataDir})`);
  return {
    url,
    origin: 'started',
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
