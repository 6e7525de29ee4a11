// scripts/package-metadata.mjs (`npm run metadata`, part of `npm test`): the root package.json
// is the one place for the packages' license, repository and engines; every copy (the four
// package.json files, their LICENSE files, the Helm chart's home and sources) must agree, and
// `--write` makes them. Run on a copy of the repository's files.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SCRIPT = join(ROOT, 'scripts/package-metadata.mjs');
const PACKAGES = ['proto', 'approvers', 'broker', 'agents'];
const CHART = 'deploy/helm/countersign/Chart.yaml';

async function metadata(dir: string, ...args: string[]): Promise<{ code: number; stderr: string }> {
  return run(process.execPath, [SCRIPT, '--root', dir, ...args]).then(
    (ok) => ({ code: 0, stderr: ok.stderr }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );
}

const json = async (path: string) => JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;

describe('package metadata in one place (npm run metadata)', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-metadata-'));
    for (const file of [
      'package.json',
      'LICENSE',
      CHART,
      ...PACKAGES.flatMap((p) => [`${p}/package.json`, `${p}/LICENSE`]),
    ])
      await cp(join(ROOT, file), join(dir, file), { recursive: true });
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('passes on the repository as it is: Apache-2.0, the LICENSE text, one repository everywhere', async () => {
    assert.deepEqual(await metadata(dir), { code: 0, stderr: '' });
    const root = await json(join(dir, 'package.json'));
    assert.equal(root.license, 'Apache-2.0');
    assert.match(await readFile(join(dir, 'LICENSE'), 'utf8'), /^Apache License\s+Version 2\.0/);
  });

  it('names every copy that drifted, and --write sets them from the root package.json', async () => {
    const root = await json(join(dir, 'package.json'));
    root.repository = { type: 'git', url: 'git+https://example.org/owner/countersign.git' };
    await writeFile(join(dir, 'package.json'), `${JSON.stringify(root, null, 2)}\n`);
    const broker = await json(join(dir, 'broker/package.json'));
    broker.license = 'MIT';
    await writeFile(join(dir, 'broker/package.json'), `${JSON.stringify(broker, null, 2)}\n`);
    await unlink(join(dir, 'agents/LICENSE'));

    const drifted = await metadata(dir);
    assert.equal(drifted.code, 1);
    for (const pkg of PACKAGES) assert.match(drifted.stderr, new RegExp(`${pkg}/package.json: repository is`));
    assert.match(drifted.stderr, /broker\/package.json: license is "MIT", package.json says "Apache-2.0"/);
    assert.match(drifted.stderr, /agents\/LICENSE is not the root LICENSE/);
    assert.match(
      drifted.stderr,
      /Chart.yaml: home: https:\/\/github.com\/countersign\/countersign, .* home: https:\/\/example.org\/owner\/countersign/,
    );

    assert.equal((await metadata(dir, '--write')).code, 0);
    assert.deepEqual(await metadata(dir), { code: 0, stderr: '' });
    for (const pkg of PACKAGES) {
      const manifest = await json(join(dir, pkg, 'package.json'));
      assert.deepEqual(manifest.repository, root.repository);
      assert.equal(manifest.license, 'Apache-2.0');
    }
    assert.equal(await readFile(join(dir, 'agents/LICENSE'), 'utf8'), await readFile(join(dir, 'LICENSE'), 'utf8'));
    assert.match(await readFile(join(dir, CHART), 'utf8'), /^home: https:\/\/example.org\/owner\/countersign$/m);
    assert.match(await readFile(join(dir, CHART), 'utf8'), /^sources: \[https:\/\/example.org\/owner\/countersign\]$/m);
  });

  it('refuses a license the LICENSE file is not', async () => {
    const root = await json(join(dir, 'package.json'));
    root.license = 'MIT';
    await writeFile(join(dir, 'package.json'), `${JSON.stringify(root, null, 2)}\n`);
    const r = await metadata(dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /license MIT is not one this script knows/);
  });
});
