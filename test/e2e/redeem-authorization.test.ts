// Issue 14, finding 7: anyone could burn anyone's credential. Any authenticated
// workload holding a copy (the requester itself, a service that saw it in a log)
// could RedeemCredential it, and the resource server it was meant for then found
// it used. Only a workload listed for the credential's audience in
// credentials.redeemers may redeem; anyone else gets PERMISSION_DENIED, audited,
// and the credential stays usable.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { CountersignClient, CountersignClientError } from '@countersign/agent';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';

const DEPLOY = 'https://deploy.example.org';
const BILLING = 'https://billing.example.org';

async function refusal(p: Promise<unknown>): Promise<CountersignClientError> {
  const e = await p.then(
    (r) => assert.fail(`expected a refusal, got ${JSON.stringify(r)}`),
    (err: unknown) => err,
  );
  assert.ok(e instanceof CountersignClientError, String(e));
  return e;
}

describe('who may redeem a credential', () => {
  let t: TestBroker;
  const clients: CountersignClient[] = [];
  const as = (path: string) => {
    const svid = t.svid(path);
    const client = new CountersignClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
    clients.push(client);
    return client;
  };
  let deployer: CountersignClient;
  const issue = async (audience = DEPLOY) => {
    const r = await deployer.requestOperation({
      operation: 'deploy',
      resource: 'staging/web',
      parameters: { version: '1.4.2' },
      audience,
    });
    assert.equal(r.state, 'APPROVED', r.message);
    return { token: r.token as string, jti: r.credentialId as string };
  };
  const redeemedEvents = async (jti: string) =>
    (await t.auditEvents()).filter((e) => e.type === 'credential_redeemed' && e.jti === jti);

  before(async () => {
    t = await startTestBroker({
      redeemers: [
        { audience: DEPLOY, workloads: ['spiffe://example.org/svc/deploy-api', 'spiffe://example.org/edge/*/gateway'] },
        { audience: BILLING, workloads: ['spiffe://example.org/svc/billing'] },
      ],
    });
    deployer = as('ci/deployer');
  });
  after(async () => {
    for (const c of clients) c.close();
    await t?.close();
  });

  it('refuses the requester and any other workload holding a copy, audits it, and leaves the credential usable', async () => {
    const { token, jti } = await issue();
    for (const [who, client] of [
      ['spiffe://example.org/ci/deployer', deployer],
      ['spiffe://example.org/svc/billing', as('svc/billing')],
      ['spiffe://example.org/svc/deploy-api-2', as('svc/deploy-api-2')],
    ] as const) {
      const e = await refusal(client.redeemCredential(token));
      assert.equal(e.grpcStatus, status.PERMISSION_DENIED, e.message);
      assert.equal(e.code, 'ERR_REDEEMER_NOT_ALLOWED');
      assert.ok(e.message.startsWith(`${who} may not redeem credentials for audience "${DEPLOY}"`), e.message);
      assert.match(e.message, /credentials\.redeemers/);
    }
    const refused = await redeemedEvents(jti);
    assert.deepEqual(
      refused.map((e) => [e.outcome, e.by, e.code, e.audience]),
      [
        ['forbidden', 'spiffe://example.org/ci/deployer', 'ERR_REDEEMER_NOT_ALLOWED', DEPLOY],
        ['forbidden', 'spiffe://example.org/svc/billing', 'ERR_REDEEMER_NOT_ALLOWED', DEPLOY],
        ['forbidden', 'spiffe://example.org/svc/deploy-api-2', 'ERR_REDEEMER_NOT_ALLOWED', DEPLOY],
      ],
    );
    // Not burnt: the resource server it was meant for redeems it, once.
    const api = as('svc/deploy-api');
    assert.equal((await api.redeemCredential(token)).credentialId, jti);
    assert.equal((await refusal(api.redeemCredential(token))).code, 'ERR_CREDENTIAL_ALREADY_REDEEMED');
  });

  it('matches workloads by pattern, and only for their own audience', async () => {
    const gateway = as('edge/eu-1/gateway');
    const forDeploy = await issue(DEPLOY);
    assert.equal((await gateway.redeemCredential(forDeploy.token)).credentialId, forDeploy.jti);
    // "*" is one path segment: a deeper path does not match.
    const deeper = await issue(DEPLOY);
    assert.equal(
      (await refusal(as('edge/eu/1/gateway').redeemCredential(deeper.token))).code,
      'ERR_REDEEMER_NOT_ALLOWED',
    );
    // The deploy API is no redeemer for billing's credentials, nor billing for deploy's.
    const forBilling = await issue(BILLING);
    assert.equal(
      (await refusal(as('svc/deploy-api').redeemCredential(forBilling.token))).code,
      'ERR_REDEEMER_NOT_ALLOWED',
    );
    assert.equal((await refusal(as('svc/billing').redeemCredential(deeper.token))).code, 'ERR_REDEEMER_NOT_ALLOWED');
    assert.equal((await as('svc/billing').redeemCredential(forBilling.token)).credentialId, forBilling.jti);
  });
});

describe('redemption without credentials.redeemers', () => {
  it('refuses everyone (fail closed) with a message that says what to configure', async () => {
    const t = await startTestBroker();
    const svid = t.svid('svc/deploy-api');
    const deployerSvid = t.svid('ci/deployer');
    const api = new CountersignClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
    const deployer = new CountersignClient({
      address: t.address,
      certChainPem: deployerSvid.chainPem,
      keyPem: deployerSvid.keyPem,
      caPem: t.ca.pem,
    });
    try {
      const r = await deployer.requestOperation({ operation: 'deploy', resource: 'staging/web' });
      const e = await refusal(api.redeemCredential(r.token as string));
      assert.equal(e.grpcStatus, status.PERMISSION_DENIED);
      assert.equal(e.code, 'ERR_REDEMPTION_NOT_CONFIGURED');
      assert.match(
        e.message,
        /credentials\.redeemers: \[\{ audience: "https:\/\/deploy\.example\.org", workloads: \["spiffe:\/\/example\.org\/svc\/deploy-api"\] \}\]/,
      );
      const events = (await t.auditEvents()).filter((ev) => ev.type === 'credential_redeemed');
      assert.deepEqual(
        events.map((ev) => [ev.outcome, ev.code]),
        [['forbidden', 'ERR_REDEMPTION_NOT_CONFIGURED']],
      );
    } finally {
      api.close();
      deployer.close();
      await t.close();
    }
  });
});
