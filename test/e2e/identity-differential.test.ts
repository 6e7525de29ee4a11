// The differential test of the certificate table (issue 14, finding 1). Every row
// goes through the broker's validation and through `openssl verify`, the
// reference RFC 5280 implementation, and both must reach the same verdict,
// except for rows that say why the broker is stricter (stricterThanOpenssl).
// The broker's side is judged twice where it can be:
// - verifySvid as a pure function at the test's clock: SPIFFE rules plus PKI.js's
//   path validation, which is all that judges a chain forwarded in XFCC;
// - a real broker over mTLS on 127.0.0.1, for the rows that survive a TLS
//   handshake unchanged, where OpenSSL's handshake verdict is also applied.
// openssl gets the leaf's own trust domain's authorities as -CAfile, the rest of
// the chain as -untrusted, -attime the test's clock, the purpose of the role, and
// -x509_strict. Rows are minted once per run and shared by all three judges.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { type BundleSet, derToPem, verifySvid } from '@countersign/broker/identity';
import {
  CertificateAuthority,
  defaultBundles,
  startTestBroker,
  svidCases,
  type SvidCase,
  type SvidCaseContext,
  type SvidCaseInput,
  type TestBroker,
} from '@countersign/broker/testing';
import { errorCode, rawCall } from './support/identity.js';

const run = promisify(execFile);

type Verdict = { accepted: true } | { accepted: false; why: string };
const describeVerdict = (v: Verdict): string => (v.accepted ? 'accepted' : `refused (${v.why})`);

/** The trust domain openssl is given anchors for: the leaf's URI SAN host, as written (lowercased), or example.org. */
function trustDomainOf(leaf: Buffer | undefined): string {
  try {
    const san = leaf === undefined ? undefined : new X509Certificate(leaf).subjectAltName;
    const host = /URI:[a-z][a-z0-9+.-]*:\/\/([^/:?#,]*)/i.exec(san ?? '')?.[1];
    return host ? host.toLowerCase() : 'example.org';
  } catch {
    return 'example.org';
  }
}

async function opensslVerdict(input: SvidCaseInput, bundles: BundleSet, now: number): Promise<Verdict> {
  const dir = await mkdtemp(join(tmpdir(), 'countersign-openssl-'));
  try {
    const [leaf, ...rest] = input.chain;
    const anchors = bundles.getBundle(trustDomainOf(leaf))?.x509Authorities ?? [];
    const args = [
      'verify',
      '-x509_strict',
      '-purpose',
      input.role === 'server' ? 'sslserver' : 'sslclient',
      '-attime',
      String(Math.floor(now / 1000)),
    ];
    // Only the anchors given here: never the machine's own CA store.
    args.push('-no-CApath', '-no-CAstore');
    if (anchors.length > 0) {
      await writeFile(join(dir, 'anchors.pem'), anchors.map((a) => derToPem(a.der)).join(''));
      args.push('-CAfile', join(dir, 'anchors.pem'));
    } else {
      args.push('-no-CAfile');
    }
    if (rest.length > 0) {
      await writeFile(join(dir, 'untrusted.pem'), rest.map((der) => derToPem(der)).join(''));
      args.push('-untrusted', join(dir, 'untrusted.pem'));
    }
    await writeFile(join(dir, 'leaf.pem'), leaf === undefined ? '' : derToPem(leaf));
    args.push(join(dir, 'leaf.pem'));
    try {
      const { stdout } = await run('openssl', args);
      return /: OK\s*$/.test(stdout) ? { accepted: true } : { accepted: false, why: stdout.trim() };
    } catch (e) {
      const failed = e as { stdout?: string; stderr?: string; message: string };
      const output = `${failed.stdout ?? ''}${failed.stderr ?? ''}`.trim() || failed.message;
      return {
        accepted: false,
        why:
          output
            .split('\n')
            .filter((l) => /error/i.test(l))
            .join('; ')
            .slice(0, 300) || output.slice(0, 300),
      };
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function brokerVerdict(input: SvidCaseInput, bundles: BundleSet, now: number): Promise<Verdict> {
  try {
    await verifySvid(input.chain, bundles, { now, role: input.role ?? 'client' });
    return { accepted: true };
  } catch (e) {
    return { accepted: false, why: String((e as { code?: string }).code ?? e) };
  }
}

async function mtlsVerdict(t: TestBroker, input: SvidCaseInput): Promise<Verdict> {
  try {
    await rawCall(
      t.address,
      t.ca.pem,
      { chainPem: input.chainPem, keyPem: input.keyPem },
      { operation: 'deploy', resource: 'staging/web' },
    );
    return { accepted: true };
  } catch (e) {
    const error = e as { code?: number; details?: string };
    assert.equal(
      error.code,
      status.UNAUTHENTICATED,
      `a refusal over mTLS is UNAUTHENTICATED, got ${error.code}: ${error.details}`,
    );
    return { accepted: false, why: errorCode(e as Parameters<typeof errorCode>[0]) ?? 'no code' };
  }
}

describe('certificate table: the broker against openssl verify', () => {
  let t: TestBroker;
  let ctx: SvidCaseContext;
  const inputs = new Map<SvidCase, SvidCaseInput>();

  before(async () => {
    const other = CertificateAuthority.createRoot('other.org');
    t = await startTestBroker({ federated: [other] });
    ctx = { ca: t.ca, other, now: Date.now() };
    for (const c of svidCases) inputs.set(c, c.build(ctx));
  });
  after(async () => t?.close());

  it('has more than 60 rows, and every row where the broker is stricter says why', () => {
    assert.ok(svidCases.length > 60, `${svidCases.length} rows`);
    for (const c of svidCases.filter((x) => x.stricterThanOpenssl !== undefined)) {
      assert.ok((c.stricterThanOpenssl ?? '').length > 20, `${c.name}: give the reason`);
      assert.notEqual(c.expect, 'ok', `${c.name}: a stricter row is one the broker refuses`);
    }
  });

  for (const c of svidCases) {
    const judged =
      c.stricterThanOpenssl === undefined ? 'the same verdict as openssl' : 'refused, openssl accepts (stricter)';
    it(`${c.name}: ${judged}${c.overTls ? ', also over mTLS' : ''}`, async () => {
      const input = inputs.get(c) as SvidCaseInput;
      const bundles = input.bundles ?? defaultBundles(ctx);
      const broker = await brokerVerdict(input, bundles, ctx.now);
      const openssl = await opensslVerdict(input, bundles, ctx.now);
      const both = `broker ${describeVerdict(broker)}, openssl ${describeVerdict(openssl)}`;
      if (c.stricterThanOpenssl === undefined) {
        assert.equal(broker.accepted, openssl.accepted, both);
      } else {
        assert.equal(broker.accepted, false, both);
        assert.equal(openssl.accepted, true, `${both}: openssl refuses too, so this row is no longer stricter`);
      }
      if (c.overTls) {
        const overTls = await mtlsVerdict(t, input);
        assert.equal(
          overTls.accepted,
          broker.accepted,
          `over mTLS ${describeVerdict(overTls)}, pure ${describeVerdict(broker)}`,
        );
      }
    });
  }
});
