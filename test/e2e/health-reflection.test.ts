// The standard services every gRPC operator expects: grpc.health.v1 and server
// reflection (what grpcurl and Kubernetes probes use).
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  credentials,
  loadPackageDefinition,
  status,
  type Client,
  type ClientDuplexStream,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoRoot } from '@countersign/proto';
import { CertificateAuthority, startTestBroker, type TestBroker } from '@countersign/broker/testing';

// The standard protos as vendored in proto/grpc/ (what reflection serves).
const reflectionProtoDir = protoRoot;
const healthProto = join(protoRoot, 'grpc/health/v1/health.proto');

/** A client of `service`; `as` picks the client certificate: the broker's own trust domain (default), none, or another CA's. */
function clientFor(
  t: TestBroker,
  protoFile: string,
  includeDir: string,
  service: string,
  as: 'workload' | 'no certificate' | 'stranger' = 'workload',
): Client {
  const pkg = loadPackageDefinition(loadSync(protoFile, { includeDirs: [includeDir], keepCase: true, enums: String }));
  const Ctor = service
    .split('.')
    .reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], pkg) as ServiceClientConstructor;
  const svid =
    as === 'stranger'
      ? CertificateAuthority.createRoot('evil.org').issueSvid('spiffe://evil.org/prober')
      : t.svid('ops/prober');
  const creds =
    as === 'no certificate'
      ? credentials.createSsl(Buffer.from(t.ca.pem), null, null, { checkServerIdentity: () => undefined })
      : credentials.createSsl(Buffer.from(t.ca.pem), Buffer.from(svid.keyPem), Buffer.from(svid.chainPem), {
          checkServerIdentity: () => undefined,
        });
  return new Ctor(t.address, creds, { 'grpc.ssl_target_name_override': t.trustDomain });
}

type ReflectionClient = Client & {
  ServerReflectionInfo(): ClientDuplexStream<
    { list_services: string },
    { list_services_response?: { service: { name: string }[] } }
  >;
};

/** The service names server reflection lists, or the error that ended the stream. */
function listServices(reflection: ReflectionClient): Promise<string[]> {
  const stream = reflection.ServerReflectionInfo();
  return new Promise<string[]>((resolve, reject) => {
    stream.on('data', (r) => {
      resolve((r.list_services_response?.service ?? []).map((s: { name: string }) => s.name));
      stream.end();
    });
    stream.on('error', reject);
    stream.write({ list_services: '*' });
  });
}

describe('health and reflection', () => {
  let t: TestBroker;
  before(async () => {
    t = await startTestBroker();
  });
  after(async () => t?.close());

  it('reports SERVING for the server and for countersign.v1.Broker', async () => {
    const health = clientFor(t, healthProto, dirname(healthProto), 'grpc.health.v1.Health') as Client & {
      check(req: { service: string }, cb: (e: Error | null, r: { status: string }) => void): void;
    };
    for (const service of ['', 'countersign.v1.Broker']) {
      const res = await new Promise<{ status: string }>((resolve, reject) =>
        health.check({ service }, (e, r) => (e ? reject(e) : resolve(r))),
      );
      assert.equal(res.status, 'SERVING', service);
    }
    health.close();
  });

  it('lists the Broker and Approvals services through server reflection', async () => {
    const reflection = clientFor(
      t,
      'grpc/reflection/v1/reflection.proto',
      reflectionProtoDir,
      'grpc.reflection.v1.ServerReflection',
    ) as ReflectionClient;
    const names = await listServices(reflection);
    reflection.close();
    assert.ok(names.includes('countersign.v1.Broker'), names.join(','));
    assert.ok(names.includes('countersign.v1.Approvals'), names.join(','));
  });

  // Issue 14, finding 10: reflection listed every service to a caller without a client certificate.
  for (const as of ['no certificate', 'stranger'] as const) {
    for (const version of ['v1', 'v1alpha']) {
      it(`refuses server reflection (${version}) to a caller with ${as === 'stranger' ? "another trust domain's certificate" : 'no client certificate'}`, async () => {
        const reflection = clientFor(
          t,
          `grpc/reflection/${version}/reflection.proto`,
          reflectionProtoDir,
          `grpc.reflection.${version}.ServerReflection`,
          as,
        ) as ReflectionClient;
        const e = (await listServices(reflection).then(
          (names) => assert.fail(`reflection answered: ${names.join(',')}`),
          (err: unknown) => err,
        )) as ServiceError;
        reflection.close();
        assert.equal(e.code, status.UNAUTHENTICATED, e.details);
        assert.match(String(e.metadata?.get('countersign-error-code')[0]), /^ERR_/);
      });
    }
  }

  it('answers health checks without a client certificate (Kubernetes probes)', async () => {
    const health = clientFor(
      t,
      healthProto,
      dirname(healthProto),
      'grpc.health.v1.Health',
      'no certificate',
    ) as Client & {
      check(req: { service: string }, cb: (e: Error | null, r: { status: string }) => void): void;
    };
    const res = await new Promise<{ status: string }>((resolve, reject) =>
      health.check({ service: '' }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    health.close();
    assert.equal(res.status, 'SERVING');
  });
});

describe('plaintext health port for kubelet gRPC probes', () => {
  it('answers grpc.health.v1 without TLS for readiness ("") and liveness, and nothing else', async () => {
    const t = await startTestBroker({ extraConfig: 'health:\n  grpc_listen: 127.0.0.1:0\n' });
    try {
      assert.ok(t.broker.healthPort);
      const pkg = loadPackageDefinition(
        loadSync(healthProto, { includeDirs: [dirname(healthProto)], keepCase: true, enums: String }),
      );
      const Health = ((pkg.grpc as GrpcObject).health as GrpcObject).v1 as GrpcObject;
      const client = new (Health.Health as ServiceClientConstructor)(
        `127.0.0.1:${t.broker.healthPort}`,
        credentials.createInsecure(),
      ) as unknown as Client & {
        check(
          req: { service: string },
          cb: (e: (Error & { code?: number }) | null, r: { status: string }) => void,
        ): void;
      };
      const check = (service: string) =>
        new Promise<string>((resolve, reject) =>
          client.check({ service }, (e, r) => (e ? reject(e) : resolve(r.status))),
        );
      assert.equal(await check(''), 'SERVING');
      assert.equal(await check('liveness'), 'SERVING');
      await assert.rejects(check('no.such.Service'), (e: Error & { code?: number }) => e.code === 5);
      // The API itself is not reachable in plaintext on this port.
      const { BrokerClient } = await import('@countersign/proto');
      const api = new BrokerClient(`127.0.0.1:${t.broker.healthPort}`, credentials.createInsecure());
      await assert.rejects(
        new Promise((resolve, reject) =>
          api.getRequest({ requestId: 'req_x' }, (e, r) => (e ? reject(e) : resolve(r))),
        ),
        (e: Error & { code?: number }) => e.code === 12,
      );
      api.close();
      client.close();
    } finally {
      await t.close();
    }
  });
});

describe('metrics', () => {
  it('serves Prometheus metrics that count decisions by rule', async () => {
    const t = await startTestBroker({
      redeemers: [{ audience: 'https://deploy.example.org', workloads: ['spiffe://example.org/ci/deployer'] }],
    });
    try {
      const { CountersignClient } = await import('@countersign/agent');
      const svid = t.svid('ci/deployer');
      const client = new CountersignClient({
        address: t.address,
        certChainPem: svid.chainPem,
        keyPem: svid.keyPem,
        caPem: t.ca.pem,
      });
      const allowed = await client.requestOperation({ operation: 'deploy', resource: 'staging/web' });
      await client.requestOperation({ operation: 'drop', resource: 'prod/db' });
      await assert.rejects(client.requestOperation({ operation: 'deploy', resource: 'a b' }));
      await client.redeemCredential(allowed.token as string);
      await assert.rejects(client.redeemCredential(allowed.token as string));
      client.close();
      const res = await fetch(`http://127.0.0.1:${t.broker.httpPort}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
      const text = await res.text();
      assert.match(text, /countersign_requests_total\{decision="allow",rule="staging-deploys"\} 1/);
      assert.match(text, /countersign_requests_total\{decision="deny",rule="\(none\)"\} 1/);
      assert.match(text, /countersign_credentials_issued_total 1/);
      assert.match(text, /countersign_rpc_errors_total\{method="RequestOperation",code="ERR_INVALID_FIELD"\} 1/);
      assert.match(text, /countersign_credential_redemptions_total\{outcome="redeemed"\} 1/);
      assert.match(text, /countersign_credential_redemptions_total\{outcome="refused"\} 1/);
      assert.match(text, /countersign_queue_jobs\{queue="expiry",state="waiting"\} \d+/);
      assert.match(text, /countersign_signing_key_age_seconds\{kid="[^"]+"\} \d/);
      assert.match(text, /^process_resident_memory_bytes \d/m);
    } finally {
      await t.close();
    }
  });
});
