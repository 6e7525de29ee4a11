// A real SPIRE for tests: spire-server and spire-agent started in a temp dir,
// talking over loopback TCP and unix sockets, with a join-token node and the
// unix workload attestor. Binaries come from PATH or $(go env GOPATH)/bin;
// scripts/spire/install.sh builds them (CI's .ci/run runs it).
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SPIRE_INSTALL_HINT = 'build them with scripts/spire/install.sh (CI runs it from .ci/run)';

function goBin(): string {
  if (process.env.GOPATH) return join(process.env.GOPATH.split(delimiter)[0] as string, 'bin');
  try {
    return join(
      execFileSync('go', ['env', 'GOPATH'], { encoding: 'utf8' }).trim().split(delimiter)[0] as string,
      'bin',
    );
  } catch {
    return join(homedir(), 'go', 'bin');
  }
}

/** Where a SPIRE binary is: PATH first, then Go's bin directory. Throws with how to get it. */
export function findSpireBinary(name: 'spire-server' | 'spire-agent'): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), goBin()];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  throw new Error(`${name} not found on PATH or in ${goBin()}: ${SPIRE_INSTALL_HINT}`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

async function poll(what: string, check: () => Promise<boolean>, timeoutMs: number, logs: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`SPIRE: timed out after ${timeoutMs} ms waiting for ${what}\n${logs()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface SpireEntry {
  spiffeId: string;
  selectors: string[];
  /** X.509-SVID lifetime in seconds. */
  x509SvidTtlSeconds: number;
}

export class Spire {
  private readonly processes: ChildProcess[] = [];

  private constructor(
    readonly dir: string,
    readonly trustDomain: string,
    private readonly serverBin: string,
    private readonly agentBin: string,
  ) {}

  get serverSocket(): string {
    return join(this.dir, 'server.sock');
  }

  get agentSocket(): string {
    return join(this.dir, 'agent.sock');
  }

  /** The Workload API endpoint, as SPIFFE_ENDPOINT_SOCKET holds it. */
  get workloadApiAddress(): string {
    return `unix://${this.agentSocket}`;
  }

  get agentId(): string {
    return `spiffe://${this.trustDomain}/agent/test`;
  }

  /** The last lines each process logged, for failure messages. */
  logs(): string {
    return ['server', 'agent']
      .map((name) => {
        try {
          return `--- spire-${name} log (tail) ---\n${readFileSync(join(this.dir, `${name}.log`), 'utf8')
            .split('\n')
            .slice(-25)
            .join('\n')}`;
        } catch {
          return '';
        }
      })
      .join('\n');
  }

  /** Starts a server and an agent attested with a join token; resolves when the agent is healthy. */
  static async start(options: { trustDomain?: string; timeoutMs?: number } = {}): Promise<Spire> {
    const serverBin = findSpireBinary('spire-server');
    const agentBin = findSpireBinary('spire-agent');
    // Short path: unix socket paths are limited to about 100 bytes.
    const dir = await mkdtemp(join(tmpdir(), 'cs-spire-'));
    const spire = new Spire(dir, options.trustDomain ?? 'example.org', serverBin, agentBin);
    try {
      await spire.boot(options.timeoutMs ?? 90_000);
    } catch (e) {
      await spire.stop();
      throw e;
    }
    return spire;
  }

  private async boot(timeoutMs: number): Promise<void> {
    const port = await freePort();
    const { dir, trustDomain } = this;
    await mkdir(join(dir, 'server-data'), { recursive: true });
    await mkdir(join(dir, 'agent-data'), { recursive: true });
    await writeFile(
      join(dir, 'server.conf'),
      `server {
  bind_address = "127.0.0.1"
  bind_port = "${port}"
  socket_path = "${this.serverSocket}"
  trust_domain = "${trustDomain}"
  data_dir = "${join(dir, 'server-data')}"
  log_level = "INFO"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "${join(dir, 'server-data', 'datastore.sqlite3')}"
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`,
    );
    this.spawn(this.serverBin, ['run', '-config', join(dir, 'server.conf')], 'server');
    await poll(
      'spire-server to be healthy',
      async () => (await this.server(['healthcheck']), true),
      timeoutMs,
      () => this.logs(),
    );

    const bundle = await this.server(['bundle', 'show']);
    await writeFile(join(dir, 'bundle.pem'), bundle);
    const token = /Token:\s*(\S+)/.exec(await this.server(['token', 'generate', '-spiffeID', this.agentId]))?.[1];
    if (token === undefined) throw new Error('SPIRE: no join token in the output of spire-server token generate');
    await writeFile(
      join(dir, 'agent.conf'),
      `agent {
  data_dir = "${join(dir, 'agent-data')}"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "${port}"
  socket_path = "${this.agentSocket}"
  trust_bundle_path = "${join(dir, 'bundle.pem')}"
  trust_domain = "${trustDomain}"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {
      discover_workload_path = true
    }
  }
}
`,
    );
    this.spawn(this.agentBin, ['run', '-config', join(dir, 'agent.conf'), '-joinToken', token], 'agent');
    await poll(
      'spire-agent to be healthy',
      async () => (
        await run(this.agentBin, ['healthcheck', '-socketPath', this.agentSocket], { timeout: 20_000 }),
        true
      ),
      timeoutMs,
      () => this.logs(),
    );
  }

  private spawn(bin: string, args: string[], name: string): void {
    const log = createWriteStream(join(this.dir, `${name}.log`));
    const child = spawn(bin, args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    this.processes.push(child);
  }

  /** Runs a spire-server CLI command against this server; returns its stdout. */
  async server(args: string[]): Promise<string> {
    const [command, ...rest] = args;
    const { stdout } = await run(this.serverBin, [command as string, ...rest, '-socketPath', this.serverSocket], {
      timeout: 30_000,
    });
    return stdout;
  }

  /** Registers a workload under the agent. */
  async register(entry: SpireEntry): Promise<void> {
    await this.server([
      'entry',
      'create',
      '-parentID',
      this.agentId,
      '-spiffeID',
      entry.spiffeId,
      ...entry.selectors.flatMap((s) => ['-selector', s]),
      '-x509SVIDTTL',
      String(entry.x509SvidTtlSeconds),
    ]);
  }

  /** Stops both processes (by their own pids) and removes the directory. */
  async stop(): Promise<void> {
    await Promise.all(
      this.processes.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    await rm(this.dir, { recursive: true, force: true });
  }
}
