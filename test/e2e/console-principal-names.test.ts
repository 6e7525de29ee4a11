// One person, one name, in the approver console. The principals file spells the
// approver "Alice" (and her address "Alice@Example.ORG"), the policy "ALICE", the
// operator types " Alice" on the command line: every one of them is alice
// (policy/principal-name.ts). She signs in with a link the CLI printed, registers
// a passkey, and votes; sessions, passkeys, audit records and the credential all
// name "alice", the CLI finds her passkey under any spelling, and a request made
// on behalf of "ALICE@example.org" is one she cannot approve in the console.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLocalJWKSet, decodeJwt, type JSONWebKeySet } from 'jose';
import { CountersignClient, type OperationResult } from '@countersign/agent';
import { auditEvents, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { readAuditSnapshot } from '../../broker/src/audit/export.js';
import { verifyAuditTrail } from '../../broker/src/audit/verify.js';
import { Keys } from '../../broker/src/redis/keys.js';
import { launchBrowser, PersonBrowser, type Browser } from './support/browser.js';

const TD = 'example.org';
const BROKER_BIN = fileURLToPath(new URL('../../broker/bin/countersign-broker.js', import.meta.url));
const POLICY = `version: 1
rules:
  - name: prod-migrations
    match: { workload: "spiffe://${TD}/ci/*", operation: db-migrate, resource: "prod/*" }
    decision: approve
    approval: { approvers: [ALICE, bob], required: 1, step_up: webauthn, timeout: 15m }
`;
const PRINCIPALS = `version: 1
principals:
  - { name: Alice, display_name: Alice Approver, email: Alice@Example.ORG, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, display_name: Bob Approver, email: bob@${TD}, spiffe_ids: [spiffe://${TD}/human/bob] }
`;

/** A port free now: the CLI needs the console's address in the configuration (port 0 has none). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('approver console: one canonical name per principal', { timeout: 600_000 }, () => {
  let t: TestBroker;
  let browser: Browser;
  let alice: PersonBrowser;
  let deployer: CountersignClient;

  const consoleUrl = () => t.broker.console?.publicUrl as string;
  const brokerCli = (args: string[]) => {
    const run = spawnSync(process.execPath, [BROKER_BIN, ...args, '--config', t.configFile], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(run.status, 0, `countersign-broker ${args.join(' ')}:\n${run.stdout}\n${run.stderr}`);
    return run;
  };
  const migration = (onBehalfOf?: string) =>
    deployer.requestOperation({
      operation: 'db-migrate',
      resource: 'prod/orders',
      parameters: { migration: '0042_add_index' },
      ...(onBehalfOf ? { onBehalfOf } : {}),
    });

  async function collect(requestId: string): Promise<OperationResult> {
    for await (const update of deployer.watch(requestId)) if (update.state !== 'PENDING_APPROVAL') return update;
    assert.fail('the watch ended without an end state');
  }

  before(async () => {
    t = await startTestBroker({
      policy: POLICY,
      principals: PRINCIPALS,
      extraConfig: `console:
  enabled: true
  listen: 127.0.0.1:${await freePort()}
requests:
  poll_interval: 300ms
`,
    });
    const svid = t.svid('ci/deployer');
    deployer = new CountersignClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
    browser = await launchBrowser();
    alice = await PersonBrowser.open(browser);
  });
  after(async () => {
    deployer?.close();
    await browser?.close();
    await t?.close();
  });

  it('signs in with a link for "ALICE", registers a passkey and votes as alice; the CLI finds the passkey under " Alice"', async () => {
    const printed = brokerCli(['principals', 'link', 'ALICE']);
    assert.match(printed.stderr, /one-time sign-in link for alice,/);
    await alice.page.goto(printed.stdout.trim());
    await alice.page.getByRole('button', { name: 'Sign in' }).click();
    await alice.page.getByRole('heading', { name: 'Pending requests' }).waitFor();
    await alice.page.getByText('Signed in as Alice Approver (alice)').waitFor();

    await alice.page.goto(`${consoleUrl()}/passkeys`);
    await alice.page.getByLabel('Passkey name').fill('laptop');
    await alice.page.getByRole('button', { name: 'Register a passkey' }).click();
    await alice.page.getByText('Passkey registered.').waitFor();
    const [credential] = await alice.credentials();
    assert.ok(credential);

    // The operator's spelling finds the same passkeys: keyed by the one canonical name.
    const listed = brokerCli(['principals', 'passkeys', ' Alice']);
    assert.match(listed.stdout, /"laptop"/);
    assert.doesNotMatch(listed.stdout, /has no passkeys/);

    const asked = await migration();
    assert.equal(asked.state, 'PENDING_APPROVAL');
    await alice.page.goto(`${consoleUrl()}/requests/${asked.requestId}`);
    await alice.page.getByLabel('Reason').fill('reviewed');
    await alice.page.getByRole('button', { name: 'Approve' }).click();
    await alice.page.getByText('Your vote is recorded.').waitFor();
    const done = await collect(asked.requestId);
    assert.equal(done.state, 'APPROVED');
    const approval = (
      decodeJwt(done.token as string) as {
        approval: { approvers: { principal: string; channel: string; step_up: string }[] };
      }
    ).approval;
    assert.deepEqual(
      approval.approvers.map((a) => [a.principal, a.channel, a.step_up]),
      [['alice', 'console', 'webauthn']],
    );

    const events = await auditEvents(t.broker.redis, t.prefix);
    const named = (type: string) => events.filter((e) => e.type === type).map((e) => e.principal);
    assert.deepEqual(named('console_link_issued'), ['alice']);
    assert.deepEqual(named('console_sign_in'), ['alice']);
    assert.deepEqual(named('passkey_registered'), ['alice']);
    assert.deepEqual(
      events.filter((e) => e.type === 'vote' && e.request_id === asked.requestId).map((e) => [e.principal, e.channel]),
      [['alice', 'console']],
    );

    const jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
    const report = await verifyAuditTrail({
      ...(await readAuditSnapshot(t.broker.redis, new Keys(t.prefix), {})),
      getKey: createLocalJWKSet(jwks),
      consoleOrigin: consoleUrl(),
    });
    assert.deepEqual(report.problems, []);
    assert.equal(report.passkeyVotes, 1);
  });

  it('refuses alice a request made on behalf of "ALICE@example.org": not listed, no challenge, no vote', async () => {
    const asked = await migration('ALICE@example.org');
    assert.equal(asked.state, 'PENDING_APPROVAL');

    await alice.page.goto(consoleUrl());
    await alice.page.getByRole('heading', { name: 'Pending requests' }).waitFor();
    assert.equal(
      await alice.page.locator(`a[href="/requests/${asked.requestId}"]`).count(),
      0,
      'not among her pending requests',
    );
    await alice.page.goto(`${consoleUrl()}/requests/${asked.requestId}`);
    await alice.page.getByText(/You cannot vote on this request: .*made on behalf of alice/).waitFor();

    const session = (await alice.context.cookies(consoleUrl())).find((c) => c.name === 'countersign_session');
    const csrf = (await alice.page.locator('meta[name="csrf-token"]').getAttribute('content')) as string;
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${consoleUrl()}${path}`, {
        method: 'POST',
        headers: {
          cookie: `countersign_session=${session?.value}`,
          'content-type': 'application/json',
          accept: 'application/json',
          origin: consoleUrl(),
          'x-csrf-token': csrf,
        },
        body: JSON.stringify(body),
      });
      return { status: res.status, code: ((await res.json()) as { error?: { code: string } }).error?.code };
    };
    assert.deepEqual(await post(`/requests/${asked.requestId}/challenge`, { decision: 'approve' }), {
      status: 403,
      code: 'ERR_SELF_APPROVAL',
    });
    assert.deepEqual(await post(`/requests/${asked.requestId}/vote`, { decision: 'deny', reason: 'mine' }), {
      status: 403,
      code: 'ERR_SELF_APPROVAL',
    });
    assert.equal((await t.broker.approvals.store.get(asked.requestId))?.state, 'PENDING_APPROVAL');
    const refused = (await auditEvents(t.broker.redis, t.prefix)).filter(
      (e) => e.type === 'vote_refused' && e.request_id === asked.requestId,
    );
    assert.deepEqual(
      refused.map((e) => [e.principal, e.channel, e.code]),
      [['alice', 'console', 'ERR_SELF_APPROVAL']],
    );
  });
});
