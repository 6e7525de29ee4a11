// The walking skeleton end to end: a workload with an X.509-SVID asks a real
// broker (mTLS gRPC, real Redis) and gets a credential that verifies against the
// JWKS the broker serves.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import {
  BrokerClient,
  RequestState,
  certificateThumbprint,
  parametersDigest,
  RequestOperationRequest,
  type RequestOperationResponse,
} from '@countersign/proto';
import type { JSONWebKeySet } from 'jose';
import { CountersignClient, CountersignClientError, verifyCredential } from '@countersign/agent';
import { CertificateAuthority, startTestBroker, type IssuedSvid, type TestBroker } from '@countersign/broker/testing';

const emptyRequest = RequestOperationRequest.create();

/** A raw generated client, for what the SDK would refuse to send. */
function rawCall(
  address: string,
  ca: string,
  svid: IssuedSvid | undefined,
  req: Partial<RequestOperationRequest>,
): Promise<RequestOperationResponse> {
  const creds = svid
    ? credentials.createSsl(Buffer.from(ca), Buffer.from(svid.keyPem), Buffer.from(svid.chainPem), {
        checkServerIdentity: () => undefined,
      })
    : credentials.createSsl(Buffer.from(ca), null, null, { checkServerIdentity: () => undefined });
  const client = new BrokerClient(address, creds, {
    'grpc.ssl_target_name_override': 'example.org',
    'grpc.max_send_message_length': 8 * 1024 * 1024,
  });
  return new Promise((resolve, reject) => {
    client.requestOperation({ ...emptyRequest, ...req }, new Metadata(), { deadline: Date.now() + 10_000 }, (e, r) => {
      client.close();
      if (e) reject(e);
      else resolve(r);
    });
  });
}

async function rejection(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as ServiceError;
  }
  assert.fail('expected the call to fail');
}

const errorCode = (e: ServiceError) => e.metadata?.get('countersign-error-code')[0]?.toString();

describe('walking skeleton: RequestOperation over mTLS', () => {
  let t: TestBroker;
  let deployer: IssuedSvid;
  let client: CountersignClient;

  before(async () => {
    t = await startTestBroker();
    deployer = t.svid('ci/deployer');
    client = new CountersignClient({
      address: t.address,
      certChainPem: deployer.chainPem,
      keyPem: deployer.keyPem,
      caPem: t.ca.pem,
    });
  });
  after(async () => {
    client?.close();
    await t?.close();
  });

  it('answers an allowed request with a credential bound to the operation, parameters and certificate', async () => {
    const parameters = { version: '1.4.2', replicas: 3, flags: ['canary'] };
    const result = await client.requestOperation({
      operation: 'deploy',
      resource: 'staging/web',
      parameters,
      reason: 'release',
    });
    assert.equal(result.state, 'APPROVED');
    assert.equal(result.rule, 'staging-deploys');
    assert.ok(result.token);

    const jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
    const verified = await verifyCredential(result.token, {
      jwks,
      audience: `https://deploy.${t.trustDomain}`,
      issuer: `spiffe://${t.trustDomain}/countersign/broker`,
      clientCertificate: deployer.pem,
      parameters,
      operation: 'deploy',
      resource: 'staging/web',
    });
    assert.equal(verified.claims.sub, deployer.spiffeId);
    assert.equal(verified.claims.client_id, deployer.spiffeId);
    assert.equal(verified.claims.cnf['x5t#S256'], certificateThumbprint(deployer.der));
    assert.equal(verified.details.parameters_digest, parametersDigest(parameters));
    assert.equal(verified.claims.jti, result.credentialId);
    assert.equal(verified.alg, 'ES256');
    // The staging rule sets a 10 minute TTL (instead of the 5 minute default), under the 1 h cap.
    assert.equal(verified.claims.exp - verified.claims.iat, 600);

    // The same credential does not verify for other parameters or another certificate.
    await assert.rejects(
      verifyCredential(result.token, {
        jwks,
        audience: `https://deploy.${t.trustDomain}`,
        parameters: { ...parameters, replicas: 4 },
      }),
      { code: 'ERR_CREDENTIAL_PARAMETERS_MISMATCH' },
    );
    await assert.rejects(
      verifyCredential(result.token, {
        jwks,
        audience: `https://deploy.${t.trustDomain}`,
        clientCertificate: t.svid('ci/deployer').pem,
      }),
      { code: 'ERR_CREDENTIAL_CERTIFICATE_MISMATCH' },
    );
  });

  it('records the request, the decision and the issuance in the audit chain before answering', async () => {
    const result = await client.requestOperation({ operation: 'deploy', resource: 'staging/api' });
    const entries = await t.broker.redis.lrange(`${t.prefix}audit:chain`, 0, -1);
    const events = entries
      .map((line) => (JSON.parse(line) as { event: Record<string, unknown> }).event)
      .filter((e) => e.request_id === result.requestId);
    assert.deepEqual(
      events.map((e) => e.type),
      ['request_received', 'decision', 'credential_issued'],
    );
    assert.equal(events.find((e) => e.type === 'credential_issued')?.jti, result.credentialId);
    assert.equal(events.find((e) => e.type === 'decision')?.decision, 'allow');
  });

  it('honours a shorter requested TTL and an explicit audience', async () => {
    const result = await client.requestOperation({
      operation: 'deploy',
      resource: 'staging/web',
      ttlSeconds: 60,
      audience: 'spiffe://example.org/deploy-api',
    });
    const jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
    const verified = await verifyCredential(result.token as string, {
      jwks,
      audience: 'spiffe://example.org/deploy-api',
    });
    assert.equal(verified.claims.exp - verified.claims.iat, 60);
  });

  it('answers PENDING_APPROVAL for a request that needs a human', async () => {
    const result = await client.requestOperation({
      operation: 'deploy',
      resource: 'prod/web',
      parameters: { version: '1.4.2' },
    });
    assert.equal(result.state, 'PENDING_APPROVAL');
    assert.equal(result.token, undefined);
    assert.match(result.requestId, /^req_/);
    assert.ok(result.expiresAt && result.expiresAt.getTime() > Date.now());
    const stored = await client.getRequest(result.requestId);
    assert.equal(stored.request?.state, RequestState.REQUEST_STATE_PENDING_APPROVAL);
    assert.deepEqual(stored.request?.approvers, ['alice', 'bob']);
  });

  it('denies what no rule allows, with the reason', async () => {
    const result = await client.requestOperation({ operation: 'drop-table', resource: 'prod/orders' });
    assert.equal(result.state, 'DENIED');
    assert.match(result.message, /no policy rule allows drop-table on prod\/orders/);
    assert.equal(result.token, undefined);
  });

  it('refuses a connection without a client certificate', async () => {
    const e = await rejection(
      rawCall(t.address, t.ca.pem, undefined, { operation: 'deploy', resource: 'staging/web' }),
    );
    assert.equal(e.code, status.UNAUTHENTICATED);
    assert.equal(errorCode(e), 'ERR_SVID_NO_CERTIFICATE');
  });

  it('refuses a certificate from an unknown CA', async () => {
    const stranger = CertificateAuthority.createRoot('example.org').issueSvid('spiffe://example.org/ci/deployer');
    const e = await rejection(rawCall(t.address, t.ca.pem, stranger, { operation: 'deploy', resource: 'staging/web' }));
    assert.equal(e.code, status.UNAUTHENTICATED);
    assert.equal(errorCode(e), 'ERR_SVID_UNTRUSTED');
  });

  it('refuses a certificate from a foreign trust domain', async () => {
    const foreign = CertificateAuthority.createRoot('other.org').issueSvid('spiffe://other.org/ci/deployer');
    const e = await rejection(rawCall(t.address, t.ca.pem, foreign, { operation: 'deploy', resource: 'staging/web' }));
    assert.equal(e.code, status.UNAUTHENTICATED);
    assert.equal(errorCode(e), 'ERR_SVID_UNKNOWN_TRUST_DOMAIN');
  });

  const malformed: [string, Partial<RequestOperationRequest>, string][] = [
    ['missing operation', { resource: 'staging/web' }, 'operation'],
    ['over-long resource', { operation: 'deploy', resource: `staging/${'x'.repeat(600)}` }, 'resource'],
    [
      'parameters that are not a JSON object',
      { operation: 'deploy', resource: 'staging/web', parametersJson: '["a"]' },
      'parameters_json',
    ],
  ];
  for (const [name, req, field] of malformed) {
    it(`answers ${name} with INVALID_ARGUMENT naming ${field}`, async () => {
      const e = await rejection(rawCall(t.address, t.ca.pem, deployer, req));
      assert.equal(e.code, status.INVALID_ARGUMENT);
      assert.equal(errorCode(e), 'ERR_INVALID_FIELD');
      assert.match(e.details, new RegExp(`^${field}: `));
    });
  }

  it('answers a 1 MiB message with RESOURCE_EXHAUSTED naming parameters_json and the limit', async () => {
    const e = await rejection(
      rawCall(t.address, t.ca.pem, deployer, {
        operation: 'deploy',
        resource: 'staging/web',
        parametersJson: JSON.stringify({ blob: 'x'.repeat(1024 * 1024) }),
      }),
    );
    assert.equal(e.code, status.RESOURCE_EXHAUSTED);
    assert.equal(errorCode(e), 'ERR_LIMIT_EXCEEDED');
    assert.match(
      e.details,
      /^parameters_json: is \d+ bytes, at most 65536 are allowed \(limit requests.limits.max_parameters_bytes\)/,
    );
  });

  it('maps broker errors to typed SDK errors', async () => {
    await assert.rejects(client.requestOperation({ operation: 'deploy', resource: 'a b' }), (e: unknown) => {
      assert.ok(e instanceof CountersignClientError);
      assert.equal(e.code, 'ERR_INVALID_FIELD');
      assert.equal(e.grpcStatus, status.INVALID_ARGUMENT);
      return true;
    });
  });

  it('refuses to redeem something that is not one of its credentials, saying why', async () => {
    const creds = credentials.createSsl(
      Buffer.from(t.ca.pem),
      Buffer.from(deployer.keyPem),
      Buffer.from(deployer.chainPem),
      { checkServerIdentity: () => undefined },
    );
    const raw = new BrokerClient(t.address, creds, { 'grpc.ssl_target_name_override': 'example.org' });
    const e = await rejection(
      new Promise((resolve, reject) =>
        raw.redeemCredential({ token: 'x' }, (err, res) => (err ? reject(err) : resolve(res))),
      ),
    );
    raw.close();
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.equal(errorCode(e), 'ERR_CREDENTIAL_INVALID');
    assert.match(e.details, /^token: not a valid credential from this broker/);
  });

  it('serves JWKS, health and readiness over HTTP', async () => {
    const base = `http://127.0.0.1:${t.broker.httpPort}`;
    const jwks = (await (await fetch(`${base}/.well-known/jwks.json`)).json()) as {
      keys: { kty: string; alg: string; kid: string; d?: string }[];
    };
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0]?.alg, 'ES256');
    assert.equal(jwks.keys[0]?.d, undefined, 'no private part is published');
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  });
});
