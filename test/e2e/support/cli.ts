// The `countersign` CLI as a user runs it: a spawned process with its identity in
// COUNTERSIGN_* variables pointing at SVID files minted by the test broker's CA.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import type { Request } from '@countersign/proto';
import { eventually, type TestBroker } from '@countersign/broker/testing';

export const CLI = fileURLToPath(new URL('../../../agents/bin/countersign.js', import.meta.url));

// Children must not outlive a test process that ends early (a failed or timed-out test).
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export interface Run {
  child: ChildProcess;
  code: Promise<number | null>;
  /** The signal that ended it, once it ended (null when it exited by itself). */
  signal(): NodeJS.Signals | null;
  stdout(): string;
  stderr(): string;
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node CLI args...` (or another command line with `command`) with env added to the test's own. */
export function runCli(
  env: NodeJS.ProcessEnv,
  args: string[],
  options: { command?: string[]; removeEnv?: string[]; cwd?: string } = {},
): Run {
  const merged: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const name of options.removeEnv ?? []) delete merged[name];
  const [file, ...rest] = options.command ?? [process.execPath, CLI];
  const child = spawn(file as string, [...rest, ...args], {
    env: merged,
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  let signal: NodeJS.Signals | null = null;
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = new Promise<number | null>((resolve) =>
    child.once('close', (exitCode, exitSignal) => {
      children.delete(child);
      signal = exitSignal;
      resolve(exitCode);
    }),
  );
  return { child, code, signal: () => signal, stdout: () => stdout, stderr: () => stderr };
}

export async function finishCli(env: NodeJS.ProcessEnv, args: string[]): Promise<Finished> {
  const r = runCli(env, args);
  const code = await r.code;
  return { code, stdout: r.stdout(), stderr: r.stderr() };
}

export interface CliIdentities {
  dir: string;
  /** COUNTERSIGN_ADDR/_CA/_CERT/_KEY for each name. */
  env: Record<string, NodeJS.ProcessEnv>;
  /** The PEM chain each name authenticates with. */
  certs: Record<string, string>;
  cleanup(): Promise<void>;
}

/** SVID files for each name -> path (e.g. deployer -> ci/deployer) in a temp dir, and the environment that uses them. */
export async function cliIdentities(t: TestBroker, who: Record<string, string>): Promise<CliIdentities> {
  const dir = await mkdtemp(join(tmpdir(), 'countersign-cli-'));
  await writeFile(join(dir, 'ca.pem'), t.ca.pem);
  const env: Record<string, NodeJS.ProcessEnv> = {};
  const certs: Record<string, string> = {};
  for (const [name, path] of Object.entries(who)) {
    const svid = t.svid(path);
    await writeFile(join(dir, `${name}.pem`), svid.chainPem);
    await writeFile(join(dir, `${name}-key.pem`), svid.keyPem);
    certs[name] = svid.chainPem;
    env[name] = {
      COUNTERSIGN_ADDR: t.address,
      COUNTERSIGN_CA: join(dir, 'ca.pem'),
      COUNTERSIGN_CERT: join(dir, `${name}.pem`),
      COUNTERSIGN_KEY: join(dir, `${name}-key.pem`),
    };
  }
  return { dir, env, certs, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** The first request id ("req_...") in a text. */
export const requestIdIn = (text: string): string | undefined => /request (req_[A-Za-z0-9_-]+)/.exec(text)?.[1];

/**
 * Waits for a pending request that the approver with identity `env` sees and `match` picks, and
 * returns its id. It asks the broker from this process (ListPending every 100 ms, the call
 * `approvals list` makes) rather than starting `countersign approvals list` per poll, about 0.6 s
 * of CPU each; then runs `countersign approvals list --output json` once and requires the request
 * there too, so the CLI's listing is still what the test relies on. `check` runs before each poll
 * (e.g. to fail at once when the waiting requester has ended).
 */
export async function pendingRequest(
  env: NodeJS.ProcessEnv,
  what: string,
  match: (r: Request) => boolean,
  check: () => void = () => {},
): Promise<string> {
  // Imported here: most files that run the CLI never need the SDK in their own process.
  const { ApprovalsClient } = await import('@countersign/agent');
  const approver = ApprovalsClient.fromEnv({}, { ...process.env, ...env });
  try {
    const id = await eventually(what, async () => {
      check();
      return (await approver.listPending()).find(match)?.id;
    });
    const list = await finishCli(env, ['approvals', 'list', '--output', 'json']);
    assert.equal(list.code, 0, list.stderr);
    assert.ok(
      (JSON.parse(list.stdout) as { id: string }[]).some((r) => r.id === id),
      `approvals list shows ${id}:\n${list.stdout}`,
    );
    return id;
  } finally {
    approver.close();
  }
}
