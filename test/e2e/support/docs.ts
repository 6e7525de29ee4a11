// Running the documentation's shell examples as printed: the fenced `sh` blocks of a section,
// typed into bash in a directory laid out like the repository after `npm start` (its files
// linked in, dev mode's own in .countersign/dev).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, startRedisServer, type RedisServer } from '@countersign/broker/testing';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BROKER_BIN = join(ROOT, 'broker/bin/countersign-broker.js');

/** The `sh` code blocks under a "## " (or deeper) heading, up to the next heading of that level. */
export async function shellBlocks(file: string, heading: string): Promise<string[]> {
  const text = await readFile(join(ROOT, file), 'utf8');
  const level = /^#+/.exec(heading)?.[0] ?? '##';
  const start = text.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`${file} has no section "${heading}"`);
  const rest = text.slice(start + heading.length + 2);
  const end = rest.search(new RegExp(`^${level} `, 'm'));
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1] as string);
}

export interface ShellResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Where the examples run: a fresh directory with dev mode running in it, on a Redis of its own. */
export class DocsWorkspace {
  readonly dir: string;
  private dev: ChildProcess | undefined;
  private devOutput = '';

  private constructor(
    dir: string,
    readonly redis: RedisServer,
  ) {
    this.dir = dir;
  }

  static async create(): Promise<DocsWorkspace> {
    const redis = await startRedisServer({ persistence: 'none' });
    const dir = await mkdtemp(join(tmpdir(), 'countersign-docs-'));
    // The repository as a reader has it (scripts, examples, node_modules for npx), with a
    // .countersign of its own for dev mode.
    for (const entry of await readdir(ROOT)) {
      if (entry === '.git' || entry === '.countersign') continue;
      await symlink(join(ROOT, entry), join(dir, entry));
    }
    await mkdir(join(dir, '.countersign'));
    return new DocsWorkspace(dir, redis);
  }

  /** The environment a reader's shell has: this Redis for dev mode, the Go tools on PATH. */
  env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, REDIS_URL: this.redis.url, ...extra };
    for (const name of Object.keys(env)) if (name.startsWith('COUNTERSIGN_')) delete env[name];
    return env;
  }

  /** `npm start`, as countersign-broker dev with free ports (other brokers may hold 7443/7080). */
  async startDev(): Promise<string> {
    this.devOutput = '';
    const dev = spawn(
      process.execPath,
      [BROKER_BIN, 'dev', '--grpc-port', '0', '--http-port', '0', '--console-port', '0'],
      { cwd: this.dir, env: this.env(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.dev = dev;
    dev.stdout?.on('data', (d: Buffer) => (this.devOutput += d.toString()));
    dev.stderr?.on('data', (d: Buffer) => (this.devOutput += d.toString()));
    await eventually('the dev broker banner', () => {
      if (dev.exitCode !== null) throw new Error(`dev mode exited ${dev.exitCode}:\n${this.devOutput}`);
      return this.devOutput.includes('Afterwards, is the audit trail');
    });
    return this.devOutput;
  }

  get devLog(): string {
    return this.devOutput;
  }

  async stopDev(): Promise<void> {
    const dev = this.dev;
    if (dev === undefined || dev.exitCode !== null) return;
    const exited = new Promise((resolve) => dev.once('exit', resolve));
    dev.kill('SIGINT');
    await exited;
  }

  /** Runs a script with bash in the workspace (-e: stops at the first failing command). */
  bash(script: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<ShellResult> {
    return new Promise((resolve) => {
      const child = spawn('bash', ['-e', '-c', script], {
        cwd: this.dir,
        env: this.env(extraEnv),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  async close(): Promise<void> {
    await this.stopDev();
    await this.redis.destroy();
    await rm(this.dir, { recursive: true, force: true });
  }
}
