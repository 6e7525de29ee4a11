// Where the requester SDK and CLI take their identity from: files when named,
// the Workload API when asked for or when only SPIFFE_ENDPOINT_SOCKET is set,
// and clear errors otherwise.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CountersignClientError, resolveIdentity, WorkloadApiIdentity } from '@countersign/agent';
import { CertificateAuthority, TestWorkloadApi, x509Response } from '@countersign/broker/testing';

describe('requester identity sources', () => {
  const ca = CertificateAuthority.createRoot('example.org');
  const partner = CertificateAuthority.createRoot('partner.org');
  const fileSvid = ca.issueSvid('spiffe://example.org/ci/from-file');
  let api: TestWorkloadApi;
  let dir: string;
  let files: { COUNTERSIGN_CERT: string; COUNTERSIGN_KEY: string; COUNTERSIGN_CA: string };

  before(async () => {
    api = await TestWorkloadApi.start();
    api.publish(
      x509Response(
        [
          { svid: ca.issueSvid('spiffe://example.org/ci/first'), bundle: [ca] },
          { svid: ca.issueSvid('spiffe://example.org/ci/second'), bundle: [ca] },
        ],
        [partner],
      ),
    );
    dir = await mkdtemp(join(tmpdir(), 'cs-sdk-'));
    files = {
      COUNTERSIGN_CERT: join(dir, 'svid.pem'),
      COUNTERSIGN_KEY: join(dir, 'key.pem'),
      COUNTERSIGN_CA: join(dir, 'ca.pem'),
    };
    await writeFile(files.COUNTERSIGN_CERT, fileSvid.chainPem);
    await writeFile(files.COUNTERSIGN_KEY, fileSvid.keyPem);
    await writeFile(files.COUNTERSIGN_CA, ca.pem);
  });
  after(async () => {
    await api?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const close = (identity: Awaited<ReturnType<typeof resolveIdentity>>) => {
    if ('source' in identity) identity.source.close();
  };

  it('uses named files even when SPIFFE_ENDPOINT_SOCKET is set', async () => {
    const identity = await resolveIdentity({}, { ...files, SPIFFE_ENDPOINT_SOCKET: api.address });
    assert.ok(!('source' in identity));
    assert.equal(identity.certChainPem, fileSvid.chainPem);
  });

  it('uses the Workload API when only SPIFFE_ENDPOINT_SOCKET is set', async () => {
    const identity = await resolveIdentity({}, { SPIFFE_ENDPOINT_SOCKET: api.address });
    try {
      assert.ok('source' in identity);
      assert.equal(identity.source.spiffeId, 'spiffe://example.org/ci/first');
    } finally {
      close(identity);
    }
  });

  it('takes the endpoint from COUNTERSIGN_WORKLOAD_API, and --spiffe-id picks the SVID', async () => {
    const identity = await resolveIdentity(
      { spiffeId: 'spiffe://example.org/ci/second' },
      { COUNTERSIGN_WORKLOAD_API: api.address },
    );
    try {
      assert.ok('source' in identity);
      assert.equal(identity.source.spiffeId, 'spiffe://example.org/ci/second');
    } finally {
      close(identity);
    }
  });

  it("authenticates the broker with its own trust domain's bundle only", async () => {
    const identity = await WorkloadApiIdentity.connect({ address: api.address });
    try {
      assert.equal(identity.identityFor('example.org').caPem, ca.pem);
      assert.equal(identity.identityFor('partner.org').caPem, partner.pem);
      assert.throws(
        () => identity.identityFor('stranger.org'),
        (e: unknown) =>
          e instanceof CountersignClientError &&
          e.code === 'ERR_IDENTITY_MISSING' &&
          /no bundle for trust domain stranger\.org/.test(e.message),
      );
    } finally {
      identity.close();
    }
  });

  it('refuses files and --workload-api together', async () => {
    await assert.rejects(resolveIdentity({ certFile: files.COUNTERSIGN_CERT, workloadApi: true }, {}), {
      code: 'ERR_USAGE',
    });
  });

  it('says what to set when there is no identity at all', async () => {
    await assert.rejects(resolveIdentity({}, {}), (e: unknown) => {
      assert.ok(e instanceof CountersignClientError);
      assert.equal(e.code, 'ERR_IDENTITY_MISSING');
      assert.match(
        e.message,
        /--cert or COUNTERSIGN_CERT.*or use the SPIFFE Workload API \(--workload-api, or SPIFFE_ENDPOINT_SOCKET\)/,
      );
      return true;
    });
  });

  it('names a malformed endpoint, and an SVID the agent does not offer', async () => {
    await assert.rejects(
      resolveIdentity({ workloadApi: 'tcp://localhost:1' }, {}),
      (e: unknown) => e instanceof CountersignClientError && /IP address, not a host name/.test(e.message),
    );
    await assert.rejects(
      resolveIdentity({ workloadApi: api.address, spiffeId: 'spiffe://example.org/nobody' }, {}),
      (e: unknown) => {
        assert.ok(e instanceof CountersignClientError);
        assert.equal(e.code, 'ERR_IDENTITY_MISSING');
        assert.match(e.message, /offers no SVID for spiffe:\/\/example\.org\/nobody/);
        return true;
      },
    );
  });
});
