// Issue 15: the packages as a user installs them. `npm pack` the workspace packages, install
// the tarballs into a fresh project outside the repository (no workspace links, no
// "countersign-source" condition, no tsx), then (a) a plain .mjs verifies a real credential
// with @countersign/agent/verify, (b) a .ts consumer type-checks against the published
// declarations, (c) `npx countersign --help` runs the compiled CLI.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { CountersignClient } from '@countersign/agent';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PACKAGES = ['proto', 'approvers', 'broker', 'agents'] as const;
const AUD = 'https://deploy.example.org';

interface Packed {
  name: string;
  version: string;
  filename: string;
  files: { path: string }[];
}

/** A consumer's environment: none of the repository's npm settings, NODE_OPTIONS or workspace. */
function consumerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k === 'INIT_CWD' || k.toLowerCase().startsWith('npm_')) continue;
    env[k] = v;
  }
  return env;
}

/** Every path an export or bin can resolve to without the repository-only condition. */
function publishedTargets(manifest: Record<string, unknown>): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') out.push(v);
    else if (v !== null && typeof v === 'object') {
      for (const [condition, target] of Object.entries(v)) if (condition !== 'countersign-source') walk(target);
    }
  };
  walk(manifest.exports);
  walk(manifest.imports);
  walk(manifest.bin);
  return out.map((p) => p.replace(/^\.\//, ''));
}

describe('packed packages installed in a fresh project', () => {
  let scratch: string;
  let project: string;
  let packed: Packed[];
  let t: TestBroker;

  before(async () => {
    // npm test builds first; a focused run builds here (a no-op when dist/ is current).
    await run('npm', ['run', 'build'], { cwd: ROOT, env: consumerEnv() });
    scratch = await mkdtemp(join(tmpdir(), 'countersign-pack-'));
    const { stdout } = await run(
      'npm',
      ['pack', '--json', '--pack-destination', scratch, ...PACKAGES.flatMap((p) => ['--workspace', p])],
      {
        cwd: ROOT,
        env: consumerEnv(),
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    packed = JSON.parse(stdout) as Packed[];
    project = join(scratch, 'consumer');
    await run('mkdir', [project]);
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    const tarball = (name: string) => join(scratch, (packed.find((p) => p.name === name) as Packed).filename);
    // The CLI and verify library need proto and agent only; @types/node for the .ts consumer.
    await run(
      'npm',
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        tarball('@countersign/proto'),
        tarball('@countersign/agent'),
        '@types/node@^20',
      ],
      {
        cwd: project,
        env: consumerEnv(),
        timeout: 240_000,
      },
    );
    t = await startTestBroker();
  });
  after(async () => {
    await t?.close();
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it('packs four packages in step, each with its compiled code, declarations and licence, without sources or tests', async () => {
    assert.deepEqual(packed.map((p) => p.name).sort(), [
      '@countersign/agent',
      '@countersign/approvers',
      '@countersign/broker',
      '@countersign/proto',
    ]);
    assert.equal(
      new Set(packed.map((p) => p.version)).size,
      1,
      `versions differ: ${packed.map((p) => `${p.name}@${p.version}`).join(', ')}`,
    );
    for (const p of packed) {
      const files = new Set(p.files.map((f) => f.path));
      const dir = PACKAGES.find((d) => p.name.endsWith(d === 'agents' ? 'agent' : d)) as string;
      const manifest = JSON.parse(await readFile(join(ROOT, dir, 'package.json'), 'utf8')) as Record<string, unknown>;
      for (const field of ['license', 'repository', 'engines', 'files'])
        assert.ok(manifest[field], `${p.name}: no ${field}`);
      assert.equal(manifest.private, undefined, `${p.name} is private`);
      assert.deepEqual(
        Object.keys(manifest.exports as object).filter((k) => k.includes('testing')),
        [],
        `${p.name} exports test support`,
      );
      for (const f of ['LICENSE', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/index.js.map'])
        assert.ok(files.has(f), `${p.name}: ${f} is not in the tarball`);
      const leaked = [...files].filter(
        (f) => /^(src|test)\//.test(f) || f.endsWith('.tsbuildinfo') || f === 'bin/from-source.js',
      );
      assert.deepEqual(leaked, [], `${p.name} ships repository-only files`);
      for (const target of publishedTargets(manifest))
        assert.ok(files.has(target), `${p.name}: exports or bin name ${target}, which is not in the tarball`);
    }
    const broker = new Set((packed.find((p) => p.name === '@countersign/broker') as Packed).files.map((f) => f.path));
    for (const asset of [
      'dist/requests/lua/create-5.lua',
      'dist/requests/lua/include/resolve.lua',
      'dist/audit/lua/auditAppend-2.lua',
      'dist/console/static/console.js',
    ]) {
      assert.ok(broker.has(asset), `@countersign/broker: ${asset} is not in the tarball`);
    }
    const proto = new Set((packed.find((p) => p.name === '@countersign/proto') as Packed).files.map((f) => f.path));
    assert.ok(proto.has('dist/gen/descriptors.binpb'), '@countersign/proto: the descriptor set is not in the tarball');
    assert.ok(proto.has('countersign/v1/broker.proto'), '@countersign/proto: broker.proto is not in the tarball');
  });

  it('(a) a plain .mjs verifies a real credential with @countersign/agent/verify, and refuses other parameters', async () => {
    const svid = t.svid('ci/deployer');
    const client = new CountersignClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
    let token: string;
    try {
      const r = await client.requestOperation({
        operation: 'deploy',
        resource: 'staging/web',
        parameters: { version: '1.4.2' },
      });
      assert.equal(r.state, 'APPROVED', r.message);
      token = r.token as string;
    } finally {
      client.close();
    }
    const jwks = await (await fetch(t.jwksUrl)).json();
    await writeFile(join(project, 'jwks.json'), JSON.stringify(jwks));
    await writeFile(
      join(project, 'verify.mjs'),
      [
        "import { readFileSync } from 'node:fs';",
        "import { verifyCredential, CredentialVerificationError } from '@countersign/agent/verify';",
        "const jwks = JSON.parse(readFileSync('jwks.json', 'utf8'));",
        'const [token, version] = process.argv.slice(2);',
        'try {',
        `  const v = await verifyCredential(token, { jwks, audience: ${JSON.stringify(AUD)}, parameters: { version } });`,
        '  console.log(JSON.stringify({ ok: true, operation: v.details.operation, resource: v.details.resource }));',
        '} catch (e) {',
        '  if (!(e instanceof CredentialVerificationError)) throw e;',
        '  console.log(JSON.stringify({ ok: false, code: e.code }));',
        '}',
      ].join('\n'),
    );
    const good = await run(process.execPath, ['verify.mjs', token, '1.4.2'], { cwd: project, env: consumerEnv() });
    assert.deepEqual(JSON.parse(good.stdout), { ok: true, operation: 'deploy', resource: 'staging/web' });
    const other = await run(process.execPath, ['verify.mjs', token, '9.9.9'], { cwd: project, env: consumerEnv() });
    assert.deepEqual(JSON.parse(other.stdout), { ok: false, code: 'ERR_CREDENTIAL_PARAMETERS_MISMATCH' });
  });

  it('(b) a .ts consumer type-checks against the published declarations (tsc --noEmit)', async () => {
    await writeFile(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          types: ['node'],
          skipLibCheck: false,
        },
        files: ['consumer.ts'],
      }),
    );
    await writeFile(
      join(project, 'consumer.ts'),
      [
        "import { CountersignClient, type OperationResult } from '@countersign/agent';",
        "import { verifyCredential, type VerifiedCredential, type VerifyOptions } from '@countersign/agent/verify';",
        "import { parametersDigest } from '@countersign/proto';",
        'export async function check(token: string, options: VerifyOptions): Promise<string> {',
        '  const verified: VerifiedCredential = await verifyCredential(token, options);',
        '  return `${verified.details.operation} ${parametersDigest({ version: "1" })}`;',
        '}',
        'export function ask(client: CountersignClient): Promise<OperationResult> {',
        "  return client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: {} });",
        '}',
        '// The declarations are real types, not any: a number is not a token.',
        '// @ts-expect-error',
        "void verifyCredential(42, { jwks: { keys: [] }, audience: 'x' });",
      ].join('\n'),
    );
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const r = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: project, env: consumerEnv() }).catch(
      (e: { stdout: string }) => e,
    );
    assert.equal(r.stdout, '', `tsc --noEmit reported:\n${r.stdout}`);
  });

  it('(c) `npx countersign --help` runs the compiled CLI', async () => {
    const r = await run('npx', ['--no-install', 'countersign', '--help'], { cwd: project, env: consumerEnv() });
    assert.match(r.stdout, /^Usage: countersign /m);
    assert.match(r.stdout, /\brequest\b/);
  });

  it('does not export the repository-only entry points (test support, TypeScript sources)', async () => {
    const probe = [
      "for (const s of ['@countersign/agent/testing', '@countersign/proto/src/index.ts']) {",
      "  try { import.meta.resolve(s); console.log(s, 'resolved'); } catch (e) { console.log(s, e.code); }",
      '}',
      "console.log(import.meta.resolve('@countersign/agent/verify').replace(/^.*node_modules\\//, ''));",
    ].join('\n');
    const r = await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: project, env: consumerEnv() });
    assert.deepEqual(r.stdout.trim().split('\n'), [
      '@countersign/agent/testing ERR_PACKAGE_PATH_NOT_EXPORTED',
      '@countersign/proto/src/index.ts ERR_PACKAGE_PATH_NOT_EXPORTED',
      '@countersign/agent/dist/verify/index.js',
    ]);
  });
});
