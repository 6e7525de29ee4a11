// The Workload API client shared by the broker and the agents, against a
// Workload API server on a unix socket: endpoint parsing, the first SVID,
// rotation, an agent that is away (backoff), and responses it must not trust.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  parseWorkloadEndpoint,
  splitDerCertificates,
  WorkloadApiClient,
  WorkloadApiError,
  type X509Context,
} from '@countersign/proto/workload-api';
import { CertificateAuthority } from '../src/dev/ca.js';
import { TestWorkloadApi, x509Response } from './support/workload-api.js';

const until = async (what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('Workload API endpoint addresses (SPIFFE Workload Endpoint 4)', () => {
  const good: [string, string][] = [
    ['unix:///run/spire/agent.sock', 'unix:///run/spire/agent.sock'],
    ['unix:/run/spire/agent.sock', 'unix:///run/spire/agent.sock'],
    ['tcp://127.0.0.1:8081', '127.0.0.1:8081'],
    ['tcp://[::1]:8081', '[::1]:8081'],
  ];
  for (const [address, target] of good) {
    it(`accepts ${address}`, () => assert.equal(parseWorkloadEndpoint(address).grpcTarget, target));
  }
  const bad: [string, RegExp][] = [
    ['', /is empty/],
    ['/run/spire/agent.sock', /not a URI/],
    ['unix://host/run/agent.sock', /must not name a host/],
    ['unix:relative.sock', /absolute socket path/],
    ['tcp://localhost:8081', /IP address, not a host name/],
    ['tcp://127.0.0.1', /must name a port/],
    ['tcp://127.0.0.1:8081/path', /must not have a path/],
    ['unix:///run/agent.sock?x=1', /query, fragment or user info/],
    ['http://127.0.0.1:8081', /scheme http; expected unix or tcp/],
  ];
  for (const [address, message] of bad) {
    it(`refuses ${JSON.stringify(address)}`, () => {
      assert.throws(
        () => parseWorkloadEndpoint(address),
        (e: unknown) =>
          e instanceof WorkloadApiError && e.code === 'ERR_WORKLOAD_API_ADDRESS' && message.test(e.message),
      );
    });
  }
  it('says how to fix a missing SPIFFE_ENDPOINT_SOCKET', () => {
    assert.throws(() => new WorkloadApiClient({ env: {} }), /set SPIFFE_ENDPOINT_SOCKET/);
  });
});

describe('DER certificate lists', () => {
  const ca = CertificateAuthority.createRoot('example.org');
  const svid = ca.createIntermediate().issueSvid('spiffe://example.org/w');
  it('splits concatenated DER certificates', () => {
    const parts = splitDerCertificates(Buffer.concat(svid.chainDer), 'chain');
    assert.deepEqual(parts, svid.chainDer);
    assert.deepEqual(splitDerCertificates(Buffer.alloc(0), 'empty'), []);
  });
  it('refuses truncated and non-DER input', () => {
    const whole = Buffer.concat(svid.chainDer);
    assert.throws(() => splitDerCertificates(whole.subarray(0, whole.length - 3), 'chain'), /truncated/);
    assert.throws(
      () => splitDerCertificates(Buffer.from('-----BEGIN CERTIFICATE-----'), 'chain'),
      /not a sequence of DER certificates/,
    );
  });
});

describe('Workload API client', () => {
  const ca = CertificateAuthority.createRoot('example.org');
  const other = CertificateAuthority.createRoot('other.org');
  let api: TestWorkloadApi;
  before(async () => {
    api = await TestWorkloadApi.start();
  });
  after(async () => api?.close());

  it('delivers the SVID, its bundle and federated bundles, then each rotation', async () => {
    const first = ca.issueSvid('spiffe://example.org/w');
    api.publish(x509Response([{ svid: first, bundle: [ca] }], [other]));
    const client = new WorkloadApiClient({ address: api.address });
    try {
      const context = await client.fetchX509Context(10_000);
      assert.equal(context.svids[0]?.spiffeId, 'spiffe://example.org/w');
      assert.equal(context.svids[0]?.certChainPem, first.chainPem);
      assert.equal(context.svids[0]?.serial, new X509Certificate(first.der).serialNumber.toLowerCase());
      assert.equal(context.svids[0]?.notAfter, Date.parse(new X509Certificate(first.der).validTo));
      assert.deepEqual([...context.bundles.keys()].sort(), ['example.org', 'other.org']);
      assert.deepEqual(context.bundles.get('other.org'), [other.certificate.der]);

      const seen: X509Context[] = [];
      client.watchX509((c) => seen.push(c));
      const second = ca.issueSvid('spiffe://example.org/w');
      api.publish(x509Response([{ svid: second, bundle: [ca] }]));
      await until('the rotated SVID', () => seen.some((c) => c.svids[0]?.certChainPem === second.chainPem));
      assert.equal(client.latest?.svids[0]?.certChainPem, second.chainPem);
      assert.equal(client.latest?.bundles.has('other.org'), false, 'a federated bundle that is no longer sent is gone');
    } finally {
      client.close();
    }
  });

  it('keeps the last good context when a response cannot be used, and reports it', async () => {
    const good = ca.issueSvid('spiffe://example.org/w');
    api.publish(x509Response([{ svid: good, bundle: [ca] }]));
    const problems: string[] = [];
    const client = new WorkloadApiClient({ address: api.address, onBadResponse: (e) => problems.push(e.message) });
    try {
      await client.fetchX509Context(10_000);
      const wrongKey = x509Response([{ svid: ca.issueSvid('spiffe://example.org/w'), bundle: [ca] }]);
      (wrongKey.svids[0] as { x509SvidKey: Buffer }).x509SvidKey = good.privateKey.export({
        type: 'pkcs8',
        format: 'der',
      });
      api.publish(wrongKey);
      api.publish({ svids: [], crl: [], federatedBundles: {} });
      await until('two reported problems', () => problems.length >= 2);
      assert.match(problems[0] as string, /private key does not belong to its certificate/);
      assert.match(problems[1] as string, /response holds no SVID/);
      assert.equal(client.latest?.svids[0]?.certChainPem, good.chainPem);
    } finally {
      client.close();
    }
  });

  it('retries with backoff while the agent answers UNAVAILABLE, then gets the SVID', async () => {
    const svid = ca.issueSvid('spiffe://example.org/w');
    api.publish(x509Response([{ svid, bundle: [ca] }]));
    api.failNext = 3;
    const callsBefore = api.calls;
    const retries: number[] = [];
    const client = new WorkloadApiClient({
      address: api.address,
      backoff: { initialMs: 20, maxMs: 200 },
      onRetry: (_e, ms) => retries.push(ms),
    });
    try {
      const context = await client.fetchX509Context(15_000);
      assert.equal(context.svids[0]?.certChainPem, svid.chainPem);
      assert.equal(api.calls - callsBefore, 4, 'three refused calls, then the one that worked');
      assert.equal(retries.length, 3);
      assert.ok(
        retries.every((ms) => ms >= 10 && ms <= 200),
        `delays within the backoff bounds: ${retries.join(', ')}`,
      );
    } finally {
      client.close();
    }
  });

  it('reconnects after the agent restarts and follows the rotation it missed', async () => {
    const before = ca.issueSvid('spiffe://example.org/w');
    api.publish(x509Response([{ svid: before, bundle: [ca] }]));
    const client = new WorkloadApiClient({ address: api.address, backoff: { initialMs: 20, maxMs: 200 } });
    try {
      await client.fetchX509Context(10_000);
      await api.stop();
      const afterRestart = ca.issueSvid('spiffe://example.org/w');
      api.publish(x509Response([{ svid: afterRestart, bundle: [ca] }]));
      await api.restart();
      await until('the SVID issued while away', () => client.latest?.svids[0]?.certChainPem === afterRestart.chainPem);
    } finally {
      client.close();
    }
  });

  it('gives up with a clear error when no SVID comes in time', async () => {
    const silent = await TestWorkloadApi.start(); // never publishes: like a workload with no registration entry
    const client = new WorkloadApiClient({ address: silent.address });
    try {
      await assert.rejects(client.fetchX509Context(300), (e: unknown) => {
        assert.ok(e instanceof WorkloadApiError);
        assert.equal(e.code, 'ERR_WORKLOAD_API_TIMEOUT');
        assert.match(
          e.message,
          /no X\.509-SVID from unix:\/\/.* within 0s \(is the agent running, and is this workload registered\?\)/,
        );
        return true;
      });
    } finally {
      client.close();
      await silent.close();
    }
  });

  it('fails pending fetches when closed', async () => {
    const silent = await TestWorkloadApi.start();
    const client = new WorkloadApiClient({ address: silent.address });
    const pending = client.fetchX509Context(30_000);
    client.close();
    await assert.rejects(pending, { code: 'ERR_WORKLOAD_API_CLOSED' });
    await silent.close();
  });
});
