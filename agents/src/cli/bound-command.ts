// The command `countersign run` runs, bound to the approval: resolved on PATH
// before anything is asked (a command that cannot run wastes nobody's
// approval), hashed through a descriptor kept open while people decide, sent
// with the request as its `command` parameter, and checked unchanged just
// before it starts. A native executable is started through that descriptor
// (/proc/self/fd/N), so what the kernel runs is the file that was hashed;
// scripts start by path, so "$0" stays usable (see docs/agents.md for what that
// leaves open).
import { createHash } from 'node:crypto';
import { constants as fsConstants, existsSync } from 'node:fs';
import { access, open, stat, type FileHandle } from 'node:fs/promises';
import { delimiter, resolve } from 'node:path';
import type { JsonObject } from '@countersign/proto';
import type { OperationInput } from '../sdk/client.js';
import { CountersignClientError } from '../sdk/errors.js';

/** The parameter `countersign run` adds: what runs, as approvers see it and policy can match it. */
export const COMMAND_PARAMETER = 'command';

/** Exit codes of a command that cannot (or may no longer) run, as a shell reports them. */
export const COMMAND_EXIT = { notExecutable: 126, notFound: 127 } as const;

/** Why CMD did not run: exit 127 (not found) or 126 (not executable, unreadable, changed). */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** The `command` parameter: the absolute path, the file's SHA-256 (hex, as sha256sum prints it), the arguments. */
export interface CommandBinding extends JsonObject {
  path: string;
  sha256: string;
  args: string[];
}

export interface BoundCommand {
  binding: CommandBinding;
  /** argv[0] as typed, which the command sees as its own name. */
  argv0: string;
  /** An ELF executable: started through the open descriptor. */
  native: boolean;
  /** The file, opened when it was hashed. */
  handle: FileHandle;
  device: number;
  inode: number;
}

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

interface Candidate {
  path: string;
  problem?: 'not-found' | 'not-executable';
}

async function candidate(path: string): Promise<Candidate> {
  try {
    const s = await stat(path);
    if (!s.isFile()) return { path, problem: 'not-executable' };
    await access(path, fsConstants.X_OK);
    return { path };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { path, problem: code === 'EACCES' || code === 'EPERM' ? 'not-executable' : 'not-found' };
  }
}

/** Finds the file the way execvp(3) would: a name with a slash is a path; otherwise the first executable regular file on PATH. */
export async function resolveCommandPath(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
): Promise<string> {
  if (name === '') throw new CommandError(COMMAND_EXIT.notFound, 'an empty command name: command not found');
  let seenNotExecutable: string | undefined;
  const places = name.includes('/')
    ? [resolve(cwd, name)]
    : (env.PATH ?? DEFAULT_PATH).split(delimiter).map((dir) => resolve(cwd, dir === '' ? '.' : dir, name));
  for (const path of places) {
    const found = await candidate(path);
    if (found.problem === undefined) return found.path;
    if (found.problem === 'not-executable') seenNotExecutable ??= found.path;
  }
  if (seenNotExecutable !== undefined)
    throw new CommandError(COMMAND_EXIT.notExecutable, `${name}: ${seenNotExecutable} is not executable`);
  throw new CommandError(COMMAND_EXIT.notFound, `${name}: command not found`);
}

async function sha256Of(handle: FileHandle): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(1 << 20);
  for (let position = 0; ;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  return hash.digest('hex');
}

/** Resolves, opens and hashes CMD; refuses (CommandError) what cannot run, before anyone is asked. */
export async function bindCommand(
  command: string[],
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
): Promise<BoundCommand> {
  const [name, ...args] = command as [string, ...string[]];
  const path = await resolveCommandPath(name, env, cwd);
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    throw new CommandError(
      COMMAND_EXIT.notExecutable,
      `${name}: cannot read ${path} to hash it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); countersign run binds the approval to the file's content, so it must be readable`,
    );
  }
  try {
    const opened = await handle.stat();
    if (!opened.isFile()) throw new CommandError(COMMAND_EXIT.notExecutable, `${name}: ${path} is not a regular file`);
    const head = Buffer.alloc(4);
    await handle.read(head, 0, 4, 0);
    return {
      binding: { path, sha256: await sha256Of(handle), args },
      argv0: name,
      native: head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])),
      handle,
      device: opened.dev,
      inode: opened.ino,
    };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/**
 * Just before CMD starts: the path still names the file that was hashed, its
 * content still has the approved hash, and it is still executable.
 */
export async function checkUnchanged(bound: BoundCommand): Promise<void> {
  const { path } = bound.binding;
  const changed = (why: string) =>
    new CommandError(COMMAND_EXIT.notExecutable, `${path} changed while waiting for approval (${why}); not run`);
  let now;
  try {
    now = await stat(path);
  } catch (e) {
    throw changed(`it is gone: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (now.dev !== bound.device || now.ino !== bound.inode) throw changed('the path names another file now');
  if ((await sha256Of(bound.handle)) !== bound.binding.sha256)
    throw changed('its SHA-256 is no longer the approved one');
  try {
    await access(path, fsConstants.X_OK);
  } catch {
    throw changed('it is no longer executable');
  }
}

/** What to pass to spawn(): the descriptor for a native executable where /proc has it (Linux), the path otherwise. */
export function executable(bound: BoundCommand): string {
  const viaDescriptor = `/proc/self/fd/${bound.handle.fd}`;
  return bound.native && existsSync(viaDescriptor) ? viaDescriptor : bound.binding.path;
}

/**
 * The request with the command added to its parameters: to the object, or as
 * the last member of the JSON text (the rest of the text is kept as given).
 */
export function withCommandParameter(input: OperationInput, binding: CommandBinding): OperationInput {
  const reserved = () =>
    new CountersignClientError(
      'ERR_USAGE',
      `the parameter "${COMMAND_PARAMETER}" is set by countersign run (the command it runs, bound into the approval); give yours another name`,
    );
  if (input.parametersJson !== undefined) {
    const given: unknown = JSON.parse(input.parametersJson);
    if (given === null || typeof given !== 'object' || Array.isArray(given))
      throw new CountersignClientError('ERR_USAGE', 'the parameters must be a JSON object');
    if (Object.hasOwn(given, COMMAND_PARAMETER)) throw reserved();
    const member = `${JSON.stringify(COMMAND_PARAMETER)}:${JSON.stringify(binding)}`;
    const close = input.parametersJson.lastIndexOf('}');
    const parametersJson =
      Object.keys(given).length === 0
        ? `{${member}}`
        : `${input.parametersJson.slice(0, close)},${member}${input.parametersJson.slice(close)}`;
    return { ...input, parametersJson };
  }
  const parameters = input.parameters ?? {};
  if (Object.hasOwn(parameters, COMMAND_PARAMETER)) throw reserved();
  return { ...input, parameters: { ...parameters, [COMMAND_PARAMETER]: binding } };
}

/** The exact parameters JSON the request carried, for CMD (COUNTERSIGN_PARAMETERS_JSON). */
export function parametersJsonOf(input: OperationInput): string {
  return input.parametersJson ?? JSON.stringify(input.parameters ?? {});
}
