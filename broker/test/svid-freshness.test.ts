// Freshness facts: the caller's SVID serial and validity window reach policy
// (so a rule can demand a recently issued SVID), and no credential outlives the
// SVID it was issued to.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { RequestOperationRequest } from '@countersign/proto';
import { RedisAuditLog } from '../src/audit/audit-log.js';
import { ManualClock } from '../src/clock.js';
import { CredentialMinter } from '../src/credentials/mint.js';
import { Keyring, parseSigningKey } from '../src/credentials/keys.js';
import { CertificateAuthority } from '../src/dev/ca.js';
import { BundleSet, bundleFromPem } from '../src/identity/bundle.js';
import { verifySvid } from '../src/identity/x509-svid.js';
import { Metrics } from '../src/observability/metrics.js';
import type { PolicyInput } from '../src/policy/decision.js';
import type { Policy } from '../src/policy/policy.js';
import { Keys } from '../src/redis/keys.js';
import { RequestService } from '../src/requests/request-service.js';
import { REQUESTS_PER_TURN, TurnSlots } from '../src/requests/turns.js';
import { registerScripts } from '../src/requests/scripts.js';
import type { Outbox } from '../src/requests/outbox.js';
import { RequestRateLimiter } from '../src/requests/limits.js';
import { RequestStore } from '../src/requests/store.js';
import { testRedis, type TestRedis } from './support/redis.js';
import { testHeadSigner } from './support/audit.js';

const MINUTE = 60_000;
const request = (resource: string): RequestOperationRequest =>
  RequestOperationRequest.create({ operation: 'deploy', resource, parametersJson: '{}' });

describe('SVID freshness facts', () => {
  const now = Math.floor(Date.now() / 1000) * 1000;
  const clock = new ManualClock(now);
  const ca = CertificateAuthority.createRoot('example.org', { now: () => now });
  const bundles = new BundleSet([bundleFromPem('example.org', ca.pem)]);
  const seen: PolicyInput[] = [];
  // A policy that allows everything for 10 minutes and remembers what it was shown.
  const decide = (input: PolicyInput) => (seen.push(input), { effect: 'allow', rule: 'allow-all', ttlMs: 10 * MINUTE });
  const policy = {
    evaluate: decide,
    decide: async (input: PolicyInput) => decide(input),
    digest: 'sha256:test',
  } as unknown as Policy;
  let redis: TestRedis;
  let service: RequestService;

  before(async () => {
    redis = await testRedis('freshness');
    const keys = new Keys(redis.prefix);
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    const keyring = new Keyring([await parseSigningKey(pem, 'test key')], { maxTtlMs: 60 * MINUTE });
    const minter = new CredentialMinter(keyring, {
      issuer: 'spiffe://example.org/countersign/broker',
      maxTtlMs: 60 * MINUTE,
      clock,
    });
    const scripts = registerScripts(redis.redis);
    service = new RequestService(
      {
        policy: () => policy,
        minter,
        audit: new RedisAuditLog(redis.redis, keys, clock, { heads: testHeadSigner(keyring) }),
        store: new RequestStore(redis.redis, keys, scripts, clock, { maxPendingPerWorkload: 10, retentionMs: MINUTE }),
        // The allow path never creates a pending request, so it never reaches the outbox.
        outbox: undefined as unknown as Outbox,
        limiter: new RequestRateLimiter(keys, scripts, clock, { perSecond: 100, burst: 100 }),
        turns: new TurnSlots(REQUESTS_PER_TURN),
        clock,
        metrics: new Metrics({ defaultMetrics: false }),
        announceBreakGlass: async () => assert.fail('the allow-all policy never decides break_glass'),
      },
      { defaultAudience: 'https://deploy.example.org', defaultTtlMs: 5 * MINUTE, pollIntervalMs: 2000 },
    );
  });
  after(async () => redis?.cleanup());

  it('hands policy the SVID serial, not-before and not-after', async () => {
    const svid = ca.issueSvid('spiffe://example.org/ci/deployer', {
      notBefore: now - 3 * MINUTE,
      notAfter: now + 30 * MINUTE,
    });
    const identity = await verifySvid(svid.chainDer, bundles, { now });
    await service.requestOperation(identity, request('staging/web'));
    const input = seen.at(-1) as PolicyInput;
    assert.equal(input.workload.spiffeId, 'spiffe://example.org/ci/deployer');
    assert.equal(input.workload.trustDomain, 'example.org');
    assert.equal(input.workload.notBefore, now - 3 * MINUTE);
    assert.equal(input.workload.notAfter, now + 30 * MINUTE);
    assert.equal(input.workload.serial, identity.serial);
    assert.equal(input.now, now);
    assert.equal(input.now - input.workload.notBefore, 3 * MINUTE, 'the SVID age a rule can bound');
  });

  it('never issues a credential that outlives the SVID', async () => {
    const svid = ca.issueSvid('spiffe://example.org/ci/deployer', {
      notBefore: now - MINUTE,
      notAfter: now + 2 * MINUTE,
    });
    const outcome = await service.requestOperation(
      await verifySvid(svid.chainDer, bundles, { now }),
      request('staging/web'),
    );
    assert.equal(outcome.state, 'APPROVED');
    const claims = decodeJwt(outcome.state === 'APPROVED' ? outcome.credential.token : '');
    assert.equal(
      (claims.exp as number) * 1000,
      now + 2 * MINUTE,
      "capped at the SVID's not-after, not the rule's 10 minutes",
    );
  });

  it('refuses to issue when the SVID is about to expire', async () => {
    const svid = ca.issueSvid('spiffe://example.org/ci/deployer', { notBefore: now - MINUTE, notAfter: now + 3000 });
    await assert.rejects(
      service.requestOperation(await verifySvid(svid.chainDer, bundles, { now }), request('staging/web')),
      {
        code: 'ERR_SVID_TOO_CLOSE_TO_EXPIRY',
        kind: 'failed_precondition',
      },
    );
  });
});
