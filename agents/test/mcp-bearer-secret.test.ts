// The bearer secret of `countersign mcp --http` (issue 14.11): made private when
// it is made, refused when others could read or change it, compared in
// constant time.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bearerMatches, defaultSecretFile, loadBearerSecret } from '../src/mcp/bearer-secret.js';
import { CountersignClientError } from '../src/sdk/errors.js';

const SECRET = 's3cret-s3cret-s3cret-s3cret-s3cret-42';

async function refusal(file: string): Promise<string> {
  try {
    await loadBearerSecret(file);
  } catch (e) {
    assert.ok(e instanceof CountersignClientError, String(e));
    assert.equal(e.code, 'ERR_MCP_TOKEN_FILE');
    return e.message;
  }
  assert.fail(`expected ${file} to be refused`);
}

describe('countersign mcp --http: the bearer secret file', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-secret-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lives under XDG_CONFIG_HOME, or ~/.config', () => {
    assert.equal(defaultSecretFile({ XDG_CONFIG_HOME: '/x/config' }), '/x/config/countersign/mcp-http.token');
    assert.match(defaultSecretFile({}), /\/\.config\/countersign\/mcp-http\.token$/);
  });

  it('is made when missing: random, 0600 in a 0700 directory; then read back unchanged', async () => {
    const file = join(dir, 'made', 'countersign', 'mcp-http.token');
    const made = await loadBearerSecret(file);
    assert.equal(made.created, true);
    assert.match(made.secret, /^[A-Za-z0-9_-]{43}$/);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'made', 'countersign'))).mode & 0o777, 0o700);
    assert.deepEqual(await loadBearerSecret(file), { secret: made.secret, created: false });
    assert.notEqual((await loadBearerSecret(join(dir, 'other', 'mcp-http.token'))).secret, made.secret);
  });

  it('takes a secret written by hand, without its newline', async () => {
    const file = join(dir, 'hand.token');
    await writeFile(file, `${SECRET}\n`, { mode: 0o600 });
    assert.deepEqual(await loadBearerSecret(file), { secret: SECRET, created: false });
  });

  it('refuses a file others can read or write, a loose directory, a symlink, and a short or spaced secret', async () => {
    const readable = join(dir, 'readable.token');
    await writeFile(readable, SECRET, { mode: 0o640 });
    assert.match(await refusal(readable), /readable\.token is readable by other users \(mode 0640\); chmod 600 it$/);
    const writable = join(dir, 'writable.token');
    await writeFile(writable, SECRET);
    await chmod(writable, 0o620);
    assert.match(await refusal(writable), /writable\.token is writable by other users \(mode 0620\); chmod 600 it$/);

    const looseDir = join(dir, 'loose');
    await mkdir(looseDir);
    await chmod(looseDir, 0o777);
    assert.match(
      await refusal(join(looseDir, 'mcp-http.token')),
      /loose is writable by other users \(mode 0777\); chmod 700 it$/,
    );

    const link = join(dir, 'link.token');
    await symlink(join(dir, 'hand.token'), link);
    assert.match(await refusal(link), /link\.token is a symbolic link; give the file itself$/);

    const short = join(dir, 'short.token');
    await writeFile(short, 'hunter2', { mode: 0o600 });
    assert.match(await refusal(short), /is 7 characters long; use at least 32/);
    const spaced = join(dir, 'spaced.token');
    await writeFile(spaced, `${SECRET} ${SECRET}`, { mode: 0o600 });
    assert.match(await refusal(spaced), /printable ASCII without spaces/);
    assert.equal(await readFile(spaced, 'utf8'), `${SECRET} ${SECRET}`, 'a refused file is left as it was');
  });

  it('matches only "Bearer <the secret>"', () => {
    assert.equal(bearerMatches(`Bearer ${SECRET}`, SECRET), true);
    assert.equal(bearerMatches(`bearer  ${SECRET}`, SECRET), true);
    for (const header of [
      undefined,
      '',
      SECRET,
      `Bearer ${SECRET}x`,
      `Bearer ${SECRET.slice(1)}`,
      `Basic ${SECRET}`,
      `Bearer ${SECRET} extra`,
    ]) {
      assert.equal(bearerMatches(header, SECRET), false, String(header));
    }
  });
});
