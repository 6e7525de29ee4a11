// A real SPIRE: spire-server and spire-agent (built by scripts/spire/install.sh)
// on loopback and unix sockets in a temp dir. The broker and a workload are
// registered with the unix attestor under different selectors (same uid, but
// different executables: the workload runs from its own copy of node), take
// their X.509-SVIDs from the Workload API, and a request completes; SVIDs live
// 30 s, so both rotate during the run and requests keep completing on the new
// ones. This test fails, never skips, when the SPIRE binaries are missing.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { copyFile, link, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { verifyCredential } from '@countersign/agent';
import { BundleSet, bundleFromSpiffeJson, verifySvid } from '@countersign/broker/identity';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';
import type { JSONWebKeySet } from 'jose';
import { Spire } from './support/spire.js';
import { servedSerial, until } from './support/identity.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BROKER_ID = 'spiffe://example.org/countersign/broker';
const WORKLOAD_ID = 'spiffe://example.org/ci/deployer';
const SVID_TTL_SECONDS = 30;
const LONG = 120_000;

interface WorkloadLine {
  type: 'ready' | 'rotated' | 'result' | 'error';
  spiffeId?: string;
  serial?: string;
  notAfter?: number;
  thumbprint?: string;
  thumbprintAfter?: string;
  state?: string;
  token?: string;
  code?: string;
  message?: string;
}

/** The workload process, driven line by line. */
class Workload {
  readonly lines: WorkloadLine[] = [];
  private stderr = '';
  constructor(readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (line) => this.lines.push(JSON.parse(line) as WorkloadLine));
    child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }
  get errors(): string {
    return this.stderr.slice(-2000);
  }
  async next(type: WorkloadLine['type'], after: number, timeoutMs = LONG): Promise<WorkloadLine> {
    await until(
      `the workload's ${type} (stderr: ${this.errors})`,
      () => this.lines.slice(after).some((l) => l.type === type || l.type === 'error'),
      timeoutMs,
    );
    const line = this.lines.slice(after).find((l) => l.type === type || l.type === 'error') as WorkloadLine;
    assert.notEqual(line.type, 'error', `workload error ${line.code}: ${line.message}`);
    return line;
  }
  async request(): Promise<WorkloadLine> {
    const mark = this.lines.length;
    this.child.stdin.write('request\n');
    return this.next('result', mark);
  }
}

describe('with a real SPIRE', { timeout: 600_000 }, () => {
  let spire: Spire;
  let t: TestBroker;
  let workload: Workload;
  let workloadNode: string;
  let jwks: JSONWebKeySet;

  before(async () => {
    spire = await Spire.start();
    // The workload runs from its own executable; the broker is this process (node).
    const node = await realpath(process.execPath);
    workloadNode = join(spire.dir, 'node-workload');
    await link(node, workloadNode).catch(() => copyFile(node, workloadNode));
    const uid = process.getuid?.() ?? 0;
    await spire.register({
      spiffeId: BROKER_ID,
      selectors: [`unix:uid:${uid}`, `unix:path:${node}`],
      x509SvidTtlSeconds: SVID_TTL_SECONDS,
    });
    await spire.register({
      spiffeId: WORKLOAD_ID,
      selectors: [`unix:uid:${uid}`, `unix:path:${workloadNode}`],
      x509SvidTtlSeconds: SVID_TTL_SECONDS,
    });

    t = await startTestBroker({
      policy: `version: 1
rules:
  - name: ci-staging
    match: { workload: "spiffe://example.org/ci/*", operation: deploy, resource: "staging/*" }
    decision: allow
    ttl: 10m
`,
      identity: `identity:
  svid:
    workload_api:
      socket: ${spire.workloadApiAddress}
      spiffe_id: ${BROKER_ID}
      timeout: 2m
`,
    }).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}\n${spire.logs()}`);
    });
    jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;

    const child = spawn(workloadNode, ['--import', 'tsx', join(ROOT, 'test/e2e/fixtures/spire-workload.ts')], {
      cwd: ROOT,
      env: {
        ...process.env,
        SPIFFE_ENDPOINT_SOCKET: spire.workloadApiAddress,
        COUNTERSIGN_ADDR: t.address,
        COUNTERSIGN_SERVER_ID: BROKER_ID,
      },
    });
    workload = new Workload(child);
  });

  after(async () => {
    if (workload && workload.child.exitCode === null) {
      workload.child.stdin.write('exit\n');
      await new Promise((r) => {
        const timer = setTimeout(() => workload.child.kill('SIGKILL'), 10_000);
        workload.child.once('exit', () => r(clearTimeout(timer)));
      });
    }
    await t?.close();
    await spire?.stop();
  });

  const check = async (line: WorkloadLine) => {
    assert.equal(line.state, 'APPROVED', JSON.stringify(line));
    const verified = await verifyCredential(line.token as string, {
      jwks,
      audience: 'https://deploy.example.org',
      issuer: BROKER_ID,
      parameters: { build: 42 },
    });
    assert.equal(verified.claims.sub, WORKLOAD_ID);
    const bound = verified.claims.cnf['x5t#S256'];
    assert.ok([line.thumbprint, line.thumbprintAfter].includes(bound), 'bound to the SVID the workload presented');
    // The SVID lives 30 s (SPIRE backdates it 10 s): the credential is capped by it, far under the rule's 10 minutes.
    if (bound === line.thumbprint)
      assert.ok(verified.claims.exp * 1000 <= (line.notAfter as number), 'never outlives the SVID');
    assert.ok(verified.claims.exp - verified.claims.iat <= SVID_TTL_SECONDS + 10);
  };

  it('the broker serves the SVID SPIRE issued it', async () => {
    assert.equal(t.broker.spiffeId, BROKER_ID);
    assert.ok(
      t.broker.identity.svid.notAfter - t.broker.identity.svid.notBefore <= (SVID_TTL_SECONDS + 15) * 1000,
      'a short-lived SPIRE SVID',
    );
    assert.deepEqual(t.broker.identity.bundles.current.trustDomains, ['example.org']);
  });

  it("reads the SPIFFE bundle document SPIRE prints, and it validates SPIRE's SVIDs", async () => {
    const notes = { ignored: [] as string[] };
    const bundle = bundleFromSpiffeJson(
      'example.org',
      await spire.server(['bundle', 'show', '-format', 'spiffe']),
      'spire bundle',
      notes,
    );
    assert.ok(bundle.x509Authorities.length >= 1);
    assert.ok(
      notes.ignored.some((n) => /use "jwt-svid"/.test(n)),
      'the JWT-SVID key SPIRE publishes is skipped',
    );
    const svid = t.broker.identity.svid;
    assert.equal(
      (await verifySvid(svid.chainDer, new BundleSet([bundle]), { now: Date.now(), role: 'server' })).spiffeId,
      BROKER_ID,
    );
  });

  it('a workload with an SVID from the Workload API gets a credential', async () => {
    const first = await workload.next('ready', 0);
    // Same uid, different executable: SPIRE told the workload from the broker.
    assert.equal(first.spiffeId, WORKLOAD_ID);
    await check(await workload.request());
  });

  it('keeps completing requests while SPIRE rotates both SVIDs', async () => {
    const brokerSerial = t.broker.identity.svid.serial;
    const mark = workload.lines.length;
    const rotated = await workload.next('rotated', mark);
    await until('the broker SVID to rotate', () => t.broker.identity.svid.serial !== brokerSerial, LONG);
    await until('the new broker SVID on new connections', async () => {
      const svid = { chainPem: t.broker.identity.svid.certChainPem, keyPem: t.broker.identity.svid.keyPem };
      return (await servedSerial(t.broker.grpcPort, svid)) === t.broker.identity.svid.serial;
    });
    const result = await workload.request();
    await check(result);
    assert.notEqual(result.serial, ready(workload).serial, 'the request went out with the rotated SVID');
    assert.ok(rotated.serial);
  });

  it('the countersign CLI takes its SVID from the Workload API too', async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (resolve) => {
        const cli = spawn(
          workloadNode,
          [
            join(ROOT, 'agents/bin/countersign.js'),
            'request',
            '--workload-api',
            '--addr',
            t.address,
            '--server-id',
            BROKER_ID,
            '--operation',
            'deploy',
            '--resource',
            'staging/web',
            '--param',
            'build:=42',
          ],
          { cwd: ROOT, env: { ...process.env, SPIFFE_ENDPOINT_SOCKET: spire.workloadApiAddress } },
        );
        let out = '';
        let err = '';
        cli.stdout.on('data', (d: Buffer) => (out += d.toString()));
        cli.stderr.on('data', (d: Buffer) => (err += d.toString()));
        cli.on('exit', (c) => resolve({ code: c, stdout: out, stderr: err }));
      },
    );
    assert.equal(code, 0, stderr);
    const verified = await verifyCredential(stdout.trim(), {
      jwks,
      audience: 'https://deploy.example.org',
      issuer: BROKER_ID,
      parameters: { build: 42 },
    });
    assert.equal(verified.claims.sub, WORKLOAD_ID);
  });
});

const ready = (w: Workload): WorkloadLine => w.lines.find((l) => l.type === 'ready') as WorkloadLine;
