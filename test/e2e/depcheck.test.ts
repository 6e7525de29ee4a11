// Issue 15: the layering rules (.dependency-cruiser.cjs, `npm run depcheck`) fail on a
// violation. A copy of the packages' sources passes, then the same copy with planted
// imports that break each kind of rule fails, naming exactly those imports.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFile, cp, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PACKAGES = {
  proto: '@countersign/proto',
  approvers: '@countersign/approvers',
  broker: '@countersign/broker',
  agents: '@countersign/agent',
};

/** `npm run depcheck` in the copy: its exit code and the violations it reports. */
async function depcheck(dir: string): Promise<{ code: number; violations: string[] }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.toLowerCase().startsWith('npm_')) env[k] = v;
  const r = await run('npm', ['run', 'depcheck'], { cwd: dir, env, maxBuffer: 16 * 1024 * 1024 }).then(
    (ok) => ({ code: 0, stdout: ok.stdout }),
    (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
  );
  const violations = [...r.stdout.matchAll(/^\s*error ([\w-]+): (\S+) → (\S+)$/gm)].map(
    (m) => `${m[1]}: ${m[2]} -> ${m[3]}`,
  );
  // A cycle is reported over several lines: "error no-circular: a →", "b →", ..., "a".
  const cycles = [...r.stdout.matchAll(/^\s*error no-circular: (\S+) →\s*\n((?:\s+\S+ →\s*\n)*\s+\S+)$/gm)].map(
    (m) => `no-circular: ${[m[1], ...(m[2] ?? '').split(/ →\s*\n/).map((l) => l.trim())].join(' -> ')}`,
  );
  return { code: r.code, violations: [...violations, ...cycles].sort() };
}

describe('dependency rules (npm run depcheck)', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-depcheck-'));
    for (const file of ['.dependency-cruiser.cjs', 'tsconfig.json', 'tsconfig.base.json', 'package.json'])
      await cp(join(ROOT, file), join(dir, file));
    for (const pkg of Object.keys(PACKAGES)) {
      await cp(join(ROOT, pkg, 'package.json'), join(dir, pkg, 'package.json'));
      await cp(join(ROOT, pkg, 'src'), join(dir, pkg, 'src'), { recursive: true });
    }
    // The copy's workspace links point at the copy; every other installed package is the repository's.
    await mkdir(join(dir, 'node_modules/@countersign'), { recursive: true });
    for (const entry of await readdir(join(ROOT, 'node_modules'))) {
      if (entry !== '@countersign') await symlink(join(ROOT, 'node_modules', entry), join(dir, 'node_modules', entry));
    }
    for (const [folder, name] of Object.entries(PACKAGES))
      await symlink(join(dir, folder), join(dir, 'node_modules', name));
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('passes on the sources as they are', async () => {
    assert.deepEqual(await depcheck(dir), { code: 0, violations: [] });
  });

  it('fails on an import cycle inside one folder, which no layer rule sees, naming it', async () => {
    await appendFile(
      join(dir, 'broker/src/identity/svid-identity.ts'),
      "\nimport type { SvidCache } from './svid-cache.js';\n",
    );
    const r = await depcheck(dir);
    assert.notEqual(r.code, 0);
    assert.deepEqual(r.violations, [
      'no-circular: broker/src/identity/svid-cache.ts -> broker/src/identity/svid-identity.ts -> broker/src/identity/svid-cache.ts',
    ]);
  });

  it('fails on planted violations of each kind, naming each one', async () => {
    await appendFile(join(dir, 'agents/src/index.ts'), "\nimport '@countersign/broker';\n");
    await appendFile(join(dir, 'approvers/src/port.ts'), "\nimport '@countersign/agent';\n");
    await appendFile(join(dir, 'broker/src/audit/audit-log.ts'), "\nimport '../requests/store.js';\n");
    await appendFile(join(dir, 'broker/src/policy/compile.ts'), "\nimport '../credentials/keys.js';\n");
    await appendFile(join(dir, 'broker/src/requests/runtime.ts'), "\nimport '@countersign/approvers/slack';\n");
    await mkdir(join(dir, 'broker/src/gadgets'));
    await writeFile(join(dir, 'broker/src/gadgets/gadget.ts'), "import '../clock.js';\n");
    const r = await depcheck(dir);
    assert.notEqual(r.code, 0);
    // Imports against the layers close cycles too (many, through the packages' entry points): not listed here.
    assert.deepEqual(
      r.violations.filter((v) => !v.startsWith('no-circular:')),
      [
        'agents-not-broker: agents/src/index.ts -> broker/src/index.ts',
        'approvers-not-broker: approvers/src/port.ts -> agents/src/index.ts',
        'broker-core-not-slack: broker/src/requests/runtime.ts -> approvers/src/slack/index.ts',
        'broker-layers: broker/src/audit/audit-log.ts -> broker/src/requests/store.ts',
        'broker-layers: broker/src/policy/compile.ts -> broker/src/credentials/keys.ts',
        'broker-unplaced: broker/src/gadgets/gadget.ts -> broker/src/clock.ts',
      ],
    );
  });
});
