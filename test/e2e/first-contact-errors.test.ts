// The mistakes a newcomer makes, and what they are told: a wrong CA fails at once with what
// to check; a broker that is not running is named with its address and how to start one; a
// missing identity points at dev mode's env files; a key given as the certificate is called
// what it is; --version exists; a port in use names the option that moves it; and a resource
// server's verification says what differed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CountersignClient, CredentialVerificationError, verifyCredential } from '@countersign/agent';
import { CertificateAuthority, startRedisServer, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { retryReporter } from '../../agents/src/cli/retry-report.js';
import { CLI, cliIdentities, type CliIdentities } from './support/cli.js';

const BROKER_BIN = fileURLToPath(new URL('../../broker/bin/countersign-broker.js', import.meta.url));

function run(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  for (const name of Object.keys(env))
    if (name.startsWith('COUNTERSIGN_') && !(options.env && name in options.env)) delete env[name];
  const child = spawn(process.execPath, [file, ...args], { env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

async function listening(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

describe('first contact: errors that say what to do', () => {
  let t: TestBroker;
  let ids: CliIdentities;
  let scratch: string;
  before(async () => {
    t = await startTestBroker();
    ids = await cliIdentities(t, { deployer: 'ci/deployer' });
    scratch = await mkdtemp(join(tmpdir(), 'countersign-first-contact-'));
  });
  after(async () => {
    await t?.close();
    await ids?.cleanup();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('a wrong CA fails at once, is not retried, and says to check the CA bundle', async () => {
    const otherCa = join(scratch, 'other-ca.pem');
    await writeFile(otherCa, CertificateAuthority.createRoot('example.org').pem);
    const out = await run(CLI, ['request', '--operation', 'deploy', '--resource', 'staging/web'], {
      env: { ...ids.env.deployer, COUNTERSIGN_CA: otherCa },
    });
    assert.equal(out.code, 1);
    assert.match(
      out.stderr,
      new RegExp(
        `cannot trust the broker at ${t.address.replace(/\./g, '\\.')}: .*certificate.*Check the CA bundle \\(--ca or COUNTERSIGN_CA\\)`,
      ),
    );
    assert.match(out.stderr, /\[ERR_BROKER_UNTRUSTED\]/);
    assert.doesNotMatch(out.stderr, /retrying/);
    assert.doesNotMatch(out.stderr, /Resolution note|No connection established/);
  });

  it('a broker that is not running is named, with how to start one', async () => {
    const { server, port } = await listening();
    await new Promise((resolve) => server.close(resolve));
    const out = await run(CLI, ['request', '--operation', 'deploy', '--resource', 'staging/web'], {
      env: { ...ids.env.deployer, COUNTERSIGN_ADDR: `127.0.0.1:${port}` },
    });
    assert.equal(out.code, 1);
    assert.match(
      out.stderr,
      new RegExp(
        `no broker answers at 127\\.0\\.0\\.1:${port} \\(connection refused\\)\\. Is it running\\? In the repository, \`npm start\``,
      ),
    );
    assert.doesNotMatch(out.stderr, /Resolution note|No connection established/);
  });

  it('retries are quiet on a terminal: the reason once, then nothing', () => {
    const lines: string[] = [];
    const onTerminal = retryReporter(true, (l) => lines.push(l));
    const error = Object.assign(new Error('no broker answers at 127.0.0.1:7443 (connection refused)'), {
      code: 'ERR_BROKER_UNAVAILABLE',
    });
    for (let attempt = 1; attempt <= 5; attempt++) onTerminal(error as never, attempt, 100 * attempt);
    assert.deepEqual(lines, [
      'no broker answers at 127.0.0.1:7443 (connection refused)\nretrying for a few seconds (Ctrl-C stops)',
    ]);
    const logged: string[] = [];
    const inLogs = retryReporter(false, (l) => logged.push(l));
    for (let attempt = 1; attempt <= 3; attempt++) inLogs(error as never, attempt, 100);
    assert.equal(logged.length, 3);
  });

  it('without an address or identity, names the dev env files when .countersign/dev exists', async () => {
    const repo = join(scratch, 'repo');
    await mkdir(join(repo, '.countersign/dev'), { recursive: true });
    const withDev = await run(CLI, ['request', '--operation', 'deploy', '--resource', 'staging/web'], { cwd: repo });
    assert.equal(withDev.code, 1, withDev.stderr);
    assert.match(withDev.stderr, /source \.countersign\/dev\/env\/deployer\.env/);
    const elsewhere = await run(CLI, ['request', '--operation', 'deploy', '--resource', 'staging/web'], {
      cwd: scratch,
    });
    assert.doesNotMatch(elsewhere.stderr, /\.countersign\/dev/);
    const noAddress = await run(CLI, ['approvals', 'list'], {
      cwd: repo,
      env: { COUNTERSIGN_CA: ids.env.deployer?.COUNTERSIGN_CA },
    });
    assert.match(noAddress.stderr, /no broker address: .*source \.countersign\/dev\/env\/deployer\.env/);
  });

  it('a key file given as the certificate is called what it is', async () => {
    const out = await run(CLI, ['request', '--operation', 'deploy', '--resource', 'staging/web'], {
      env: { ...ids.env.deployer, COUNTERSIGN_CERT: ids.env.deployer?.COUNTERSIGN_KEY },
    });
    assert.equal(out.code, 1);
    assert.match(
      out.stderr,
      /the client certificate \(--cert or COUNTERSIGN_CERT\) is not a certificate: it holds a PEM (EC )?PRIVATE KEY/,
    );
  });

  it('both CLIs print their version', async () => {
    const version = (
      JSON.parse(await readFile(fileURLToPath(new URL('../../agents/package.json', import.meta.url)), 'utf8')) as {
        version: string;
      }
    ).version;
    const agent = await run(CLI, ['--version']);
    const broker = await run(BROKER_BIN, ['--version']);
    assert.deepEqual([agent.code, agent.stdout.trim()], [0, version]);
    assert.deepEqual([broker.code, broker.stdout.trim()], [0, version]);
  });

  it('a port in use says a broker may be running and names --grpc-port', async () => {
    const redis = await startRedisServer({ persistence: 'none' });
    const { server, port } = await listening();
    try {
      const out = await run(
        BROKER_BIN,
        ['dev', '--dir', join(scratch, 'dev'), '--grpc-port', String(port), '--http-port', '0', '--console-port', '0'],
        { env: { REDIS_URL: redis.url } },
      );
      assert.equal(out.code, 1, out.stdout + out.stderr);
      assert.match(
        out.stderr,
        new RegExp(
          `127\\.0\\.0\\.1:${port} is already in use: another broker \\(countersign-broker dev or npm start\\) may already be running there\\. Stop it, or choose another port with --grpc-port`,
        ),
      );
    } finally {
      server.close();
      await redis.destroy();
    }
  });

  describe('verifying a credential', () => {
    let token: string;
    let jwks: { keys: object[] };
    let certPem: string;
    before(async () => {
      const svid = t.svid('ci/deployer');
      certPem = svid.chainPem;
      const client = new CountersignClient({
        address: t.address,
        certChainPem: svid.chainPem,
        keyPem: svid.keyPem,
        caPem: t.ca.pem,
      });
      const result = await client.requestOperation({
        operation: 'deploy',
        resource: 'staging/web',
        parameters: { version: '1.4.2' },
      });
      client.close();
      token = result.token as string;
      jwks = (await (await fetch(t.jwksUrl)).json()) as { keys: object[] };
    });

    it('accepts the client certificate as a Buffer of PEM text (readFileSync of a .pem file)', async () => {
      const verified = await verifyCredential(token, {
        jwks: jwks,
        audience: 'https://deploy.example.org',
        clientCertificate: Buffer.from(certPem),
      });
      assert.equal(verified.details.operation, 'deploy');
    });

    const refusal = async (options: object) => {
      try {
        await verifyCredential(token, { jwks: jwks, audience: 'https://deploy.example.org', ...options });
      } catch (e) {
        assert.ok(e instanceof CredentialVerificationError);
        return e;
      }
      return assert.fail('verified');
    };

    it('says what differed: expected and got', async () => {
      assert.match(
        (await refusal({ audience: 'https://other.example.org' })).message,
        /the credential is for "https:\/\/deploy\.example\.org", this resource server is "https:\/\/other\.example\.org"/,
      );
      assert.match((await refusal({ operation: 'rollback' })).message, /authorizes operation "deploy", not "rollback"/);
      assert.match(
        (await refusal({ resource: 'prod/web' })).message,
        /authorizes resource "staging\/web", not "prod\/web"/,
      );
      assert.match(
        (await refusal({ parameters: { version: '9.9.9' } })).message,
        /theirs digest to \S+, the credential carries \S+/,
      );
      assert.match(
        (await refusal({ clientCertificate: t.svid('ci/other').chainPem })).message,
        /the credential names x5t#S256 \S+, the presented certificate's is \S+/,
      );
    });
  });
});
