// Rate limits of the approver console (docs/console.md, "Threat model"): token
// buckets in Redis per client address and per signed-in principal on sign-in link
// redemption, the OIDC callback, passkey options and verification and votes;
// past them, 429 with Retry-After and ERR_RATE_LIMITED naming the limit. The
// broker trusts X-Forwarded-For from the configured proxy (the loopback peer
// here), so each case comes from an address of its own.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CountersignClient } from '@countersign/agent';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: prod-migrations
    match: { workload: "spiffe://${TD}/ci/*", operation: db-migrate, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, step_up: webauthn, timeout: 15m }
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, display_name: Alice Approver, email: alice@${TD}, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, display_name: Bob Approver, email: bob@${TD}, spiffe_ids: [spiffe://${TD}/human/bob] }
`;
const PER_IP_BURST = 6;
const PER_PRINCIPAL_BURST = 4;

interface Reply {
  status: number;
  retryAfter: string | null;
  code: string | undefined;
  message: string | undefined;
}

describe('approver console rate limits', { timeout: 300_000 }, () => {
  let t: TestBroker;
  let deployer: CountersignClient;
  const consoleUrl = () => t.broker.console?.publicUrl as string;

  before(async () => {
    t = await startTestBroker({
      policy: POLICY,
      principals: PRINCIPALS,
      extraConfig: `console:
  enabled: true
  listen: 127.0.0.1:0
  rate_limits:
    per_ip: { per_minute: 1, burst: ${PER_IP_BURST} }
    per_principal: { per_minute: 1, burst: ${PER_PRINCIPAL_BURST} }
    trusted_proxies: [127.0.0.1/32, "::1"]
`,
    });
    const svid = t.svid('ci/deployer');
    deployer = new CountersignClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
  });
  after(async () => {
    deployer?.close();
    await t?.close();
  });

  async function send(
    path: string,
    init: { method?: string; from: string; cookie?: string; body?: string; type?: string; csrf?: string },
  ): Promise<Reply> {
    const res = await fetch(`${consoleUrl()}${path}`, {
      method: init.method ?? 'POST',
      redirect: 'manual',
      headers: {
        'x-forwarded-for': init.from,
        origin: consoleUrl(),
        accept: 'application/json',
        ...(init.cookie ? { cookie: init.cookie } : {}),
        ...(init.type ? { 'content-type': init.type } : {}),
        ...(init.csrf ? { 'x-csrf-token': init.csrf } : {}),
      },
      ...(init.body === undefined ? {} : { body: init.body }),
    });
    const text = await res.text();
    let error: { code?: string; message?: string } | undefined;
    try {
      error = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
    } catch {
      // An HTML page: its code is in the text.
      error = { code: /ERR_[A-Z_]+/.exec(text)?.[0], message: text };
    }
    return {
      status: res.status,
      retryAfter: res.headers.get('retry-after'),
      code: error?.code,
      message: error?.message,
    };
  }

  /** Redeems a fresh sign-in link for `principal` as a browser at `from` would; returns the session cookie and CSRF token. */
  async function signIn(principal: string, from: string): Promise<{ cookie: string; csrf: string }> {
    const url = (await t.broker.console?.links.issue({ principal, by: 'test', method: 'link' }))?.url as string;
    const token = new URL(url).hash.replace(/^#t=/, '');
    const page = await fetch(`${consoleUrl()}/sign-in/link`, { headers: { 'x-forwarded-for': from } });
    const pre = /countersign_pre=([^;]+)/.exec(page.headers.get('set-cookie') ?? '')?.[1] as string;
    const res = await fetch(`${consoleUrl()}/sign-in/link`, {
      method: 'POST',
      redirect: 'manual',
      headers: {
        'x-forwarded-for': from,
        origin: consoleUrl(),
        cookie: `countersign_pre=${pre}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token, pre_csrf: pre }).toString(),
    });
    assert.equal(res.status, 303, await res.text());
    const session = /(countersign_session=[^;]+)/.exec(res.headers.get('set-cookie') ?? '')?.[1] as string;
    const home = await (
      await fetch(`${consoleUrl()}/`, { headers: { cookie: session, 'x-forwarded-for': from } })
    ).text();
    const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(home)?.[1] as string;
    assert.ok(session && csrf, 'signed in');
    return { cookie: session, csrf };
  }

  function assertLimited(r: Reply, limit: string): void {
    assert.equal(r.status, 429, JSON.stringify(r));
    assert.equal(r.code, 'ERR_RATE_LIMITED');
    assert.match(r.message ?? '', new RegExp(`limit ${limit.replace(/\./g, '\\.')}`));
    assert.ok(Number(r.retryAfter) >= 1 && Number(r.retryAfter) <= 60, `Retry-After ${r.retryAfter}`);
  }

  it('refuses sign-in link guessing from one address after the burst, with 429 and Retry-After', async () => {
    const from = '198.51.100.7';
    const page = await fetch(`${consoleUrl()}/sign-in/link`, { headers: { 'x-forwarded-for': from } });
    const pre = /countersign_pre=([^;]+)/.exec(page.headers.get('set-cookie') ?? '')?.[1] as string;
    const guess = (i: number) =>
      send('/sign-in/link', {
        from,
        cookie: `countersign_pre=${pre}`,
        type: 'application/x-www-form-urlencoded',
        body: new URLSearchParams({ token: `${'A'.repeat(42)}${i}`, pre_csrf: pre }).toString(),
      });
    for (let i = 0; i < PER_IP_BURST; i++)
      assert.equal((await guess(i)).code, 'ERR_SIGN_IN_LINK_UNKNOWN', `guess ${i} is answered`);
    assertLimited(await guess(PER_IP_BURST), 'console.rate_limits.per_ip');
    // Another address has its own bucket; words the client adds to the left of X-Forwarded-For change nothing.
    assert.equal(
      (
        await send('/sign-in/link', {
          from: '198.51.100.8',
          cookie: `countersign_pre=${pre}`,
          type: 'application/x-www-form-urlencoded',
          body: new URLSearchParams({ token: 'A'.repeat(43), pre_csrf: pre }).toString(),
        })
      ).code,
      'ERR_SIGN_IN_LINK_UNKNOWN',
    );
    assertLimited(
      await send('/sign-in/link', {
        from: `203.0.113.99, ${from}`,
        cookie: `countersign_pre=${pre}`,
        type: 'application/x-www-form-urlencoded',
        body: 'token=x',
      }),
      'console.rate_limits.per_ip',
    );
  });

  it('limits the OIDC callback per address', async () => {
    const from = '198.51.100.20';
    for (let i = 0; i < PER_IP_BURST; i++)
      assert.notEqual((await send(`/sign-in/oidc/callback?code=c${i}&state=s`, { method: 'GET', from })).status, 429);
    assertLimited(
      await send('/sign-in/oidc/callback?code=c&state=s', { method: 'GET', from }),
      'console.rate_limits.per_ip',
    );
  });

  it('limits passkey and vote endpoints per principal, whatever address the requests come from', async () => {
    const alice = await signIn('alice', '198.51.100.30');
    const asked = await deployer.requestOperation({
      operation: 'db-migrate',
      resource: 'prod/orders',
      parameters: { migration: '0042' },
    });
    const endpoints = [
      `/requests/${asked.requestId}/challenge`,
      '/passkeys/options',
      '/sign-in/passkey/options',
      `/requests/${asked.requestId}/vote`,
      '/sign-in/passkey',
      '/passkeys',
    ];
    const call = (i: number) =>
      send(endpoints[i % endpoints.length] as string, {
        from: `198.51.100.${40 + i}`,
        cookie: alice.cookie,
        csrf: alice.csrf,
        type: 'application/json',
        body: JSON.stringify({ decision: 'approve' }),
      });
    for (let i = 0; i < PER_PRINCIPAL_BURST; i++) assert.notEqual((await call(i)).status, 429, `call ${i}`);
    for (let i = PER_PRINCIPAL_BURST; i < endpoints.length + PER_PRINCIPAL_BURST; i++)
      assertLimited(await call(i), 'console.rate_limits.per_principal');
    // Bob, signed in from an address alice never used, is not slowed down by her.
    const bob = await signIn('bob', '198.51.100.90');
    const bobs = await send(`/requests/${asked.requestId}/challenge`, {
      from: '198.51.100.91',
      cookie: bob.cookie,
      csrf: bob.csrf,
      type: 'application/json',
      body: JSON.stringify({ decision: 'approve' }),
    });
    assert.equal(bobs.code, 'ERR_PASSKEY_NONE', JSON.stringify(bobs));
    // Refused votes changed nothing.
    assert.equal((await t.broker.approvals.store.get(asked.requestId))?.approvals, 0);
  });
});
