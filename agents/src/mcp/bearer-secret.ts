// The bearer secret of `countersign mcp --http`: whoever can reach the port
// acts as the workload, so a caller must show a secret kept as privately as the
// SVID key (a 0600 file of this user's). MCP clients that speak streamable HTTP
// can send it as a header (Authorization: Bearer ...); few can reach a Unix
// socket, which is why the port is TCP and the secret is required.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CountersignClientError } from '../sdk/errors.js';

/** Shortest secret accepted from a file someone wrote by hand. */
export const MIN_SECRET_LENGTH = 32;

/** $XDG_CONFIG_HOME/countersign/mcp-http.token (default ~/.config/...). */
export function defaultSecretFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'countersign', 'mcp-http.token');
}

const fail = (message: string) => new CountersignClientError('ERR_MCP_TOKEN_FILE', message);
const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, '0')}`;

/** Refuses a file or directory others may read or change; owner must be this user (or root). */
function checkPrivate(path: string, mode: number, uid: number, kind: 'file' | 'directory'): void {
  const me = process.getuid?.();
  if (me === undefined) return; // not POSIX: file modes mean nothing here
  if (uid !== me && uid !== 0)
    throw fail(`${path} belongs to uid ${uid}, not to this user (uid ${me}); the secret must be yours alone`);
  if (kind === 'file' && mode & 0o044)
    throw fail(`${path} is readable by other users (mode ${octal(mode)}); chmod 600 it`);
  if (mode & 0o022)
    throw fail(`${path} is writable by other users (mode ${octal(mode)}); chmod ${kind === 'file' ? '600' : '700'} it`);
}

/**
 * The secret in `file`, created there (random, 0600, in a 0700 directory) when
 * the file does not exist. Refuses a file others can read or write.
 */
export async function loadBearerSecret(file: string): Promise<{ secret: string; created: boolean }> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const d = await stat(dir);
  checkPrivate(dir, d.mode, d.uid, 'directory');
  let created = false;
  let handle;
  try {
    handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw fail(`${file} is a symbolic link; give the file itself`);
    if (code !== 'ENOENT') throw fail(`cannot read ${file}: ${(e as Error).message}`);
    try {
      const fresh = await open(
        file,
        fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW,
        0o600,
      );
      await fresh.writeFile(`${randomBytes(32).toString('base64url')}\n`);
      await fresh.close();
    } catch (createError) {
      throw fail(`cannot create ${file}: ${(createError as Error).message}`);
    }
    created = true;
    handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  }
  try {
    const f = await handle.stat();
    if (!f.isFile()) throw fail(`${file} is not a regular file`);
    checkPrivate(file, f.mode, f.uid, 'file');
    const secret = (await handle.readFile('utf8')).trim();
    if (!/^[\x21-\x7e]+$/.test(secret))
      throw fail(`${file} must hold the secret alone: printable ASCII without spaces (it goes into an HTTP header)`);
    if (secret.length < MIN_SECRET_LENGTH)
      throw fail(
        `the secret in ${file} is ${secret.length} characters long; use at least ${MIN_SECRET_LENGTH} (or delete the file: a random one is made)`,
      );
    return { secret, created };
  } finally {
    await handle.close();
  }
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Checks `Authorization: Bearer <secret>` in constant time. */
export function bearerMatches(header: string | undefined, secret: string): boolean {
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(digest(m[1] as string), digest(secret));
}
