// The dev trust domain's broker certificate names 127.0.0.1 and ::1 (COUNTERSIGN_ADDR is
// 127.0.0.1:7443; grpcurl and Go clients check the address against the IP SANs), and a dev
// directory made before that gets a new broker certificate on its next start, nothing else.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority } from '../src/dev/ca.js';
import { ensureDevTrustDomain } from '../src/dev/trust-domain.js';

const sans = async (file: string) => (new X509Certificate(await readFile(file, 'utf8')).subjectAltName ?? '').split(', ');

describe('dev trust domain: the broker certificate', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-dev-td-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('names localhost, 127.0.0.1 and ::1 beside its SPIFFE ID', async () => {
    const td = await ensureDevTrustDomain({ dir, trustDomain: 'example.org' });
    assert.deepEqual(await sans(td.broker.certFile), ['URI:spiffe://example.org/countersign/broker', 'DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1']);
    assert.deepEqual(await sans(td.workload.certFile), ['URI:spiffe://example.org/ci/deployer']);
  });

  it('replaces an older broker certificate without IP SANs on the next start, and keeps the rest', async () => {
    const td = await ensureDevTrustDomain({ dir, trustDomain: 'example.org' });
    const ca = CertificateAuthority.load('example.org', await readFile(td.caFile, 'utf8'), await readFile(td.caKeyFile, 'utf8'));
    const old = ca.issueSvid('spiffe://example.org/countersign/broker', { dns: ['localhost'], notAfter: Date.now() + 30 * 24 * 3600_000 });
    await writeFile(td.broker.certFile, old.chainPem);
    await writeFile(td.broker.keyFile, old.keyPem);
    const alice = await readFile(td.approvers[0]?.certFile as string, 'utf8');

    const again = await ensureDevTrustDomain({ dir, trustDomain: 'example.org' });
    assert.deepEqual(again.created.sort(), ['svids/broker-key.pem', 'svids/broker.pem']);
    assert.ok((await sans(again.broker.certFile)).includes('IP Address:127.0.0.1'));
    assert.equal(await readFile(again.approvers[0]?.certFile as string, 'utf8'), alice, "alice's certificate is kept");
    const third = await ensureDevTrustDomain({ dir, trustDomain: 'example.org' });
    assert.deepEqual(third.created, [], 'a current certificate is reused');
  });
});
