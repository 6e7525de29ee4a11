// grpcurl, a client nobody here wrote, against a real broker: everything it knows comes from
// server reflection, so the descriptors must be the real ones (file names, imports, map
// entries, fully qualified types), and a call must work with its JSON mapping, including
// `parameters` as a JSON object.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { parametersDigest } from '@countersign/proto';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { tool } from './support/tools.js';

describe('grpcurl through server reflection', () => {
  let t: TestBroker;
  let dir: string;
  let tls: string[];

  // Asynchronous: the broker runs in this process and must keep answering.
  const grpcurl = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(tool('grpcurl'), [...tls, ...args], { encoding: 'utf8', timeout: 30_000 }, (e, stdout, stderr) =>
        resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : -1, stdout, stderr }),
      );
    });
  const ok = async (args: string[]) => {
    const out = await grpcurl(args);
    assert.equal(out.code, 0, `grpcurl ${args.join(' ')}\n${out.stdout}${out.stderr}`);
    return out.stdout;
  };

  before(async () => {
    // An address-checking client verifies 127.0.0.1 against the certificate's IP SANs.
    t = await startTestBroker({ brokerSvidOptions: { ips: ['127.0.0.1'] } });
    dir = await mkdtemp(join(tmpdir(), 'countersign-grpcurl-'));
    const svid = t.svid('ci/deployer');
    await writeFile(join(dir, 'ca.pem'), t.ca.pem);
    await writeFile(join(dir, 'deployer.pem'), svid.chainPem);
    await writeFile(join(dir, 'deployer-key.pem'), svid.keyPem);
    tls = ['-cacert', join(dir, 'ca.pem'), '-cert', join(dir, 'deployer.pem'), '-key', join(dir, 'deployer-key.pem')];
  });
  after(async () => {
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lists the services the broker serves', async () => {
    const services = (await ok([t.address, 'list'])).trim().split('\n').sort();
    assert.deepEqual(services, [
      'countersign.v1.Approvals',
      'countersign.v1.Broker',
      'countersign.v1.Identity',
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
    ]);
  });

  it('describes every service and message, with imports, map entries and comments', async () => {
    for (const service of ['countersign.v1.Broker', 'countersign.v1.Approvals', 'grpc.health.v1.Health'])
      await ok([t.address, 'describe', service]);
    const request = await ok([t.address, 'describe', 'countersign.v1.RequestOperationRequest']);
    assert.match(request, /\.google\.protobuf\.Duration requested_ttl = 7;/);
    assert.match(request, /oneof parameters_form \{/);
    assert.match(request, /\.google\.protobuf\.Struct parameters = 10;/);
    assert.match(
      request,
      /must be sent as a string; it is refused otherwise/,
      'field comments come along (source info)',
    );
    const health = await ok([t.address, 'describe', 'grpc.health.v1.HealthListResponse']);
    assert.match(health, /map<string, \.grpc\.health\.v1\.HealthCheckResponse> statuses = 1;/);
    assert.match(await ok([t.address, 'describe', 'countersign.v1.Broker.RequestOperation']), /rpc RequestOperation/);
  });

  it('runs a health check', async () => {
    assert.deepEqual(JSON.parse(await ok([t.address, 'grpc.health.v1.Health/Check'])), { status: 'SERVING' });
    assert.deepEqual(
      JSON.parse(await ok(['-d', '{"service":"countersign.v1.Broker"}', t.address, 'grpc.health.v1.Health/Check'])),
      { status: 'SERVING' },
    );
  });

  it('calls RequestOperation with parameters as a JSON object, digested like parameters_json', async () => {
    const body = { operation: 'deploy', resource: 'staging/web', parameters: { version: '1.4.2', replicas: 3 } };
    const res = JSON.parse(
      await ok(['-d', JSON.stringify(body), t.address, 'countersign.v1.Broker/RequestOperation']),
    ) as {
      state: string;
      rule: string;
      credential: { token: string };
    };
    assert.equal(res.state, 'REQUEST_STATE_APPROVED');
    assert.equal(res.rule, 'staging-deploys');
    const claims = decodeJwt(res.credential.token) as { authorization_details: { parameters_digest: string }[] };
    assert.equal(
      claims.authorization_details[0]?.parameters_digest,
      parametersDigest({ version: '1.4.2', replicas: 3 }),
    );
    const asText = JSON.parse(
      await ok([
        '-d',
        JSON.stringify({
          operation: 'deploy',
          resource: 'staging/web',
          parameters_json: '{"replicas":3,"version":"1.4.2"}',
        }),
        t.address,
        'countersign.v1.Broker/RequestOperation',
      ]),
    ) as { credential: { token: string } };
    const textClaims = decodeJwt(asText.credential.token) as { authorization_details: { parameters_digest: string }[] };
    assert.equal(
      textClaims.authorization_details[0]?.parameters_digest,
      claims.authorization_details[0]?.parameters_digest,
    );
  });

  it('records a vote cast over raw gRPC with channel grpc, not cli', async () => {
    const pending = JSON.parse(
      await ok([
        '-d',
        '{"operation":"deploy","resource":"prod/web","parameters":{"version":"1.4.2"}}',
        t.address,
        'countersign.v1.Broker/RequestOperation',
      ]),
    ) as {
      requestId: string;
      state: string;
    };
    assert.equal(pending.state, 'REQUEST_STATE_PENDING_APPROVAL');
    const alice = t.svid('human/alice');
    await writeFile(join(dir, 'alice.pem'), alice.chainPem);
    await writeFile(join(dir, 'alice-key.pem'), alice.keyPem);
    const asAlice = [
      '-cacert',
      join(dir, 'ca.pem'),
      '-cert',
      join(dir, 'alice.pem'),
      '-key',
      join(dir, 'alice-key.pem'),
    ];
    const decided = await new Promise<string>((resolve, reject) =>
      execFile(
        tool('grpcurl'),
        [
          ...asAlice,
          '-d',
          JSON.stringify({ request_id: pending.requestId, decision: 'VOTE_DECISION_APPROVE', reason: 'ok' }),
          t.address,
          'countersign.v1.Approvals/Decide',
        ],
        (e, stdout, stderr) => (e ? reject(new Error(stderr)) : resolve(stdout)),
      ),
    );
    const request = (
      JSON.parse(decided) as { request: { state: string; votes: { principal: string; channel: string }[] } }
    ).request;
    assert.equal(request.state, 'REQUEST_STATE_APPROVED');
    assert.deepEqual(
      request.votes.map((v) => [v.principal, v.channel]),
      [['alice', 'grpc']],
    );
  });

  it('passes on a refusal of the Struct form with the field and the advice', async () => {
    const out = await grpcurl([
      '-d',
      '{"operation":"deploy","resource":"staging/web","parameters":{"n":12345678901234567890}}',
      t.address,
      'countersign.v1.Broker/RequestOperation',
    ]);
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /Code: InvalidArgument/);
    assert.match(out.stderr, /parameters\.n: .*send it as a string/);
  });
});
