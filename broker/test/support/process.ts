// Real processes for fault tests: a broker started as `countersign-broker serve`
// (so it can be SIGKILLed), a redis-server of the test's own (so it can be
// stopped without touching the shared one), and a TCP proxy that can cut
// connections (so a stream can drop).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../src/dev/redis.js';
import { connectRedis } from '../../src/redis/connection.js';

const BROKER_BIN = fileURLToPath(new URL('../../bin/countersign-broker.js', import.meta.url));

// Children must not outlive a test process that ends early (a failed or timed-out test).
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
export function trackChild(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Polls `check` until it returns a value other than undefined/false, or fails after timeoutMs. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 60_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`,
      );
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

export interface BrokerProcess {
  child: ChildProcess;
  pid: number;
  grpcPort: number;
  httpPort: number;
  address: string;
  /** Everything it logged so far (JSON lines). */
  logs(): string;
  /** Sends the signal and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `countersign-broker serve --config FILE --role ROLE` and waits until it listens. */
export async function spawnBroker(
  configFile: string,
  options: { role?: 'all' | 'api' | 'worker'; timeoutMs?: number } = {},
): Promise<BrokerProcess> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SLACK_'))); // Slack only when a test asks
  delete env.REDIS_URL; // the config file says which Redis
  const child = trackChild(
    spawn(process.execPath, [BROKER_BIN, 'serve', '--config', configFile, '--role', options.role ?? 'all'], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  );
  let logs = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const started = new Promise<{ grpcPort: number; httpPort: number }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`broker did not start within ${options.timeoutMs ?? 60_000} ms:\n${logs}`)),
      options.timeoutMs ?? 60_000,
    );
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      logs += chunk;
      for (const line of logs.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const entry = JSON.parse(line) as { msg?: string; grpcPort?: number; httpPort?: number };
          if (entry.msg === 'broker started' || entry.msg === 'worker started') {
            clearTimeout(timer);
            resolve({ grpcPort: entry.grpcPort ?? 0, httpPort: entry.httpPort ?? 0 });
          }
        } catch {
          // a partial line; the rest comes with the next chunk
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code} before it started:\n${logs}`));
    });
  });
  const { grpcPort, httpPort } = await started;
  return {
    child,
    pid: child.pid as number,
    grpcPort,
    httpPort,
    address: `127.0.0.1:${grpcPort}`,
    logs: () => logs,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  /** Stops it (SIGKILL by default: nothing is flushed that was not already written). */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port with the same data directory. */
  restart(): Promise<void>;
  /** Stops it and deletes its data. */
  destroy(): Promise<void>;
}

/**
 * A redis-server of the test's own on a free port, in a temp dir: with AOF and an
 * fsync on every write (the default, for durability tests) or without persistence
 * (for benchmarks).
 */
export async function startRedisServer(
  options: { persistence?: 'aof-always' | 'aof-everysec' | 'none'; replicaOf?: number; cluster?: boolean } = {},
): Promise<RedisServer> {
  const persistence = {
    'aof-always': ['--appendonly', 'yes', '--appendfsync', 'always'],
    'aof-everysec': ['--appendonly', 'yes', '--appendfsync', 'everysec'],
    none: ['--appendonly', 'no'],
  }[options.persistence ?? 'aof-always'];
  const clustered = options.cluster
    ? ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000']
    : [];
  const replication =
    options.replicaOf === undefined
      ? []
      : [
          '--replicaof',
          '127.0.0.1',
          String(options.replicaOf),
          '--repl-diskless-sync',
          'yes',
          '--repl-diskless-sync-delay',
          '0',
        ];
  const dir = await mkdtemp(join(tmpdir(), 'countersign-redis-'));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const launch = async () => {
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      ...persistence,
      ...replication,
      ...clustered,
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
    ];
    child = trackChild(spawn('redis-server', args, { stdio: 'ignore' }));
    await eventually(
      `redis-server on port ${port}`,
      async () => {
        const redis = await connectRedis(url, { connectTimeoutMs: 500 });
        redis.disconnect();
        return true;
      },
      20_000,
    );
  };
  const stop = async (signal: NodeJS.Signals = 'SIGKILL') => {
    const c = child;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((resolve) => c.once('exit', resolve));
    c.kill(signal);
    await exited;
  };
  await launch();
  return {
    port,
    url,
    dir,
    stop,
    restart: launch,
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Forwards TCP to a target; cut() drops every connection and refuses new ones until resume(). */
export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private blocked = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
    const server = createServer();
    const port = await new Promise<number>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
    );
    const proxy = new TcpProxy(server, port);
    server.on('connection', (client) => {
      if (proxy.blocked) {
        client.destroy();
        return;
      }
      const upstream = connect(targetPort, targetHost);
      for (const [a, b] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        proxy.sockets.add(a);
        a.on('error', () => b.destroy());
        a.on('close', () => {
          proxy.sockets.delete(a);
          b.destroy();
        });
        a.pipe(b);
      }
    });
    return proxy;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  cut(): void {
    this.blocked = true;
    for (const s of this.sockets) s.destroy();
  }

  resume(): void {
    this.blocked = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
