// The dev trust domain's broker certificate names 127.0.0.1 and ::1 (COUNTERSIGN_ADDR is
// 127.0.0.1:7443; grpcurl and Go clients check the address against the IP SANs), and a dev
// directory made before that gets a new broker certificate on its next start, nothing else.
// Its config.yaml is the user's once written: dev mode updates only what it owns of the console.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority } from '../src/dev/ca.js';
import { parseConfig } from '../src/config/config.js';
import { DEV_OIDC_ISSUER, devConfig, ensureDevTrustDomain, updateDevConfig } from '../src/dev/trust-domain.js';
import { devToken } from '../src/cli/dev.js';
import { renderSpiffeId } from '../src/exchange/oidc-exchange.js';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';

const sans = async (file: string) =>
  (new X509Certificate(await readFile(file, 'utf8')).subjectAltName ?? '').split(', ');

describe('dev trust domain: the broker certificate', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-dev-td-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('names localhost, 127.0.0.1 and ::1 beside its SPIFFE ID', async () => {
    const td = await ensureDevTrustDomain({ dir, trustDomain: 'example.org' });
    assert.deepEqual(await sans(td.broker.certFile), [
      'URI:spiffe://example.org/countersign/broker',
      'DNS:localhost',
      'IP Address:127.0.0.1',
      'IP Address:0:0:0:0:0:0:0:1',
    ]);
    assert.deepEqual(await sans(td.workload.certFile), ['URI:spiffe://example.org/ci/deployer']);
  });

  it('replaces an older broker certificate without IP SANs on the next start, and keeps the rest', async () => {
    const td = await ensureDevTrustDomain({ dir, trustDomain: 'example.org' });
    const ca = CertificateAuthority.load(
      'example.org',
      await readFile(td.caFile, 'utf8'),
      await readFile(td.caKeyFile, 'utf8'),
    );
    const old = ca.issueSvid('spiffe://example.org/countersign/broker', {
      dns: ['localhost'],
      notAfter: Date.now() + 30 * 24 * 3600_000,
    });
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

describe('dev config.yaml: what dev mode owns of the console', () => {
  const owned = {
    trustDomain: 'example.org',
    grpcPort: 7443,
    httpPort: 7080,
    consolePort: 7090,
    redisUrl: 'redis://127.0.0.1:6379',
    redisPrefix: 'countersign:dev:abc:',
  };
  const fresh = devConfig(owned);
  const consoleOf = (text: string) => parseConfig(text, 'config.yaml').console;

  it('writes the console on localhost at --console-port, and leaves the text alone when nothing changed', () => {
    assert.deepEqual(
      [consoleOf(fresh).enabled, consoleOf(fresh).listen, consoleOf(fresh).public_url],
      [true, '127.0.0.1:7090', 'http://localhost:7090'],
    );
    assert.deepEqual(updateDevConfig(fresh, owned), { text: fresh, added: [] });
  });

  it('follows --console-port in listen and in its own localhost URL; port 0 leaves the URL to the port the console gets', () => {
    const moved = updateDevConfig(fresh, { ...owned, consolePort: 7091 }).text;
    assert.deepEqual(
      [consoleOf(moved).listen, consoleOf(moved).public_url],
      ['127.0.0.1:7091', 'http://localhost:7091'],
    );
    const any = updateDevConfig(fresh, { ...owned, consolePort: 0 }).text;
    assert.deepEqual([consoleOf(any).listen, consoleOf(any).public_url], ['127.0.0.1:0', undefined]);
  });

  it("keeps the user's console: an address of their own, or the console turned off", () => {
    const tunnel = updateDevConfig(fresh.replace('http://localhost:7090', 'https://approve.example.com'), {
      ...owned,
      consolePort: 7091,
    }).text;
    assert.deepEqual(
      [consoleOf(tunnel).listen, consoleOf(tunnel).public_url],
      ['127.0.0.1:7091', 'https://approve.example.com'],
    );
    const off = fresh.replace(
      '  enabled: true\n  listen: 127.0.0.1:7090\n',
      '  enabled: false\n  listen: 127.0.0.1:7090\n',
    );
    assert.notEqual(off, fresh);
    assert.equal(updateDevConfig(off, { ...owned, consolePort: 7091 }).text, off);
  });

  it('adds the console section to a config.yaml written before the console, keeping the rest as it was', () => {
    const before = fresh.replace(/^console:\n(?: .*\n)+/m, '').replace('  max_ttl: 1h\n', '  # ours\n  max_ttl: 3h\n');
    assert.doesNotMatch(before, /^console:/m);
    const { text, added } = updateDevConfig(before, owned);
    assert.deepEqual(added, ['console']);
    assert.deepEqual(
      [consoleOf(text).enabled, consoleOf(text).listen, consoleOf(text).public_url],
      [true, '127.0.0.1:7090', 'http://localhost:7090'],
    );
    assert.match(text, / {2}# ours\n {2}max_ttl: 3h\n/);
    assert.deepEqual(updateDevConfig(text, owned), { text, added: [] }, 'added once');
  });
});

describe('dev mode: the local CI issuer (issue 18)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-dev-oidc-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));
  const owned = {
    trustDomain: 'example.org',
    grpcPort: 7443,
    httpPort: 7080,
    consolePort: 7090,
    redisUrl: 'redis://127.0.0.1:6379',
    redisPrefix: 'countersign:dev:abc:',
  };

  it('writes an OIDC intermediate below the dev CA and an issuer key whose tokens verify against the JWKS the config names', async () => {
    const td = await ensureDevTrustDomain({ dir, trustDomain: 'example.org' });
    const root = new X509Certificate(await readFile(td.caFile, 'utf8'));
    const intermediate = new X509Certificate(await readFile(td.oidc.caFile, 'utf8'));
    assert.ok(
      intermediate.ca && intermediate.checkIssued(root) && intermediate.verify(root.publicKey),
      'the OIDC CA is signed by the dev CA',
    );
    const config = parseConfig(devConfig(owned), join(dir, 'config.yaml'));
    const [devCi] = config.identity.oidc;
    assert.equal(devCi?.issuer, DEV_OIDC_ISSUER);
    const token = await devToken({ dir, claim: ['ref=refs/heads/feature'], audience: 'countersign', lifetime: 60 });
    const { payload } = await jwtVerify(
      token,
      createLocalJWKSet(JSON.parse(await readFile(td.oidc.jwksFile, 'utf8')) as JSONWebKeySet),
      { issuer: DEV_OIDC_ISSUER, audience: 'countersign' },
    );
    assert.equal(payload.ref, 'refs/heads/feature');
    assert.equal(payload.actor, 'bob');
    assert.equal(renderSpiffeId(devCi?.spiffe_id, 'example.org', payload), 'spiffe://example.org/ci/hosted-runner');
  });

  it('adds identity.oidc to a dev config.yaml written before it, once, keeping the rest', () => {
    const before = devConfig(owned).replace(/^ {2}# A local CI issuer[\s\S]*?(?=^redis:)/m, '');
    assert.doesNotMatch(before, /oidc/);
    const { text, added } = updateDevConfig(before, owned);
    assert.deepEqual(added, ['identity.oidc']);
    assert.equal(parseConfig(text, join(dir, 'config.yaml')).identity.oidc[0]?.name, 'dev-ci');
    assert.deepEqual(updateDevConfig(text, owned), { text, added: [] }, 'added once');
  });
});
