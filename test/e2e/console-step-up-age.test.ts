// step_up_max_age: a rule may accept a recent passkey confirmation instead of an
// assertion per vote. In chromium with a virtual authenticator, against a broker
// whose clock the test moves: within the age, Approve asks for nothing; past
// it, a plain approval is refused and the page asks for the passkey again.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { CountersignClient } from '@countersign/agent';
import { ManualClock } from '@countersign/broker';
import { auditEvents, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { readAuditSnapshot } from '../../broker/src/audit/export.js';
import { verifyAuditTrail } from '../../broker/src/audit/verify.js';
import { Keys } from '../../broker/src/redis/keys.js';
import { launchBrowser, PersonBrowser, type Browser } from './support/browser.js';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: key-rotations
    match: { workload: "spiffe://${TD}/ci/*", operation: rotate-key, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, step_up: webauthn, step_up_max_age: 5m, timeout: 1h }
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, email: alice@${TD}, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, email: bob@${TD}, spiffe_ids: [spiffe://${TD}/human/bob] }
`;

describe('approver console: step_up_max_age accepts a recent passkey confirmation', { timeout: 600_000 }, () => {
  const clock = new ManualClock(Date.now());
  let t: TestBroker;
  let browser: Browser;
  let alice: PersonBrowser;
  let deployer: CountersignClient;

  const url = (path: string) => `${t.broker.console?.publicUrl}${path}`;
  const rotation = (key: string) =>
    deployer.requestOperation({ operation: 'rotate-key', resource: 'prod/signing', parameters: { key } });

  before(async () => {
    t = await startTestBroker({
      policy: POLICY,
      principals: PRINCIPALS,
      clock,
      extraConfig: `console:\n  enabled: true\n  listen: 127.0.0.1:0\n`,
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
    await alice.page.goto(
      (await t.broker.console?.links.issue({ principal: 'alice', by: 'test', method: 'link' }))?.url as string,
    );
    await alice.page.getByRole('button', { name: 'Sign in' }).click();
    await alice.page.goto(url('/passkeys'));
    await alice.page.getByLabel('Passkey name').fill('laptop');
    await alice.page.getByRole('button', { name: 'Register a passkey' }).click();
    await alice.page.getByText('Passkey registered.').waitFor();
  });
  after(async () => {
    deployer?.close();
    await browser?.close();
    await t?.close();
  });

  const signCount = async () => (await alice.credentials())[0]?.signCount ?? -1;

  it('approves several requests with one passkey confirmation while it is recent', async () => {
    await alice.page.getByRole('button', { name: 'Confirm with my passkey' }).click();
    await alice.page.getByText('Confirmed with your passkey.').waitFor();
    const counted = await signCount();
    for (const key of ['k1', 'k2']) {
      const r = await rotation(key);
      clock.advance(60_000);
      await alice.page.goto(url(`/requests/${r.requestId}`));
      await alice.page.getByText('You confirmed with your passkey recently').waitFor();
      await alice.page.getByRole('button', { name: 'Approve' }).click();
      await alice.page.getByText('Your vote is recorded.').waitFor();
      assert.equal((await t.broker.approvals.store.get(r.requestId))?.state, 'APPROVED');
    }
    assert.equal(await signCount(), counted, 'no new assertion was asked for');
    const votes = (await auditEvents(t.broker.redis, t.prefix)).filter((e) => e.type === 'vote') as Record<
      string,
      any
    >[];
    assert.equal(votes.length, 2);
    for (const v of votes) {
      assert.equal(v.step_up, 'webauthn');
      assert.equal(v.webauthn.challenge.purpose, 'sign_in');
      assert.equal(v.webauthn.challenge.principal, 'alice');
    }
  });

  it('past the age, a plain approval is refused and the page asks for the passkey again', async () => {
    const r = await rotation('k3');
    clock.advance(5 * 60_000);
    await alice.page.goto(url(`/requests/${r.requestId}`));
    await alice.page.getByText('Approve asks for your passkey').waitFor();
    // The form posted without the page's script (or by a forged page) carries no proof.
    const cookie = (await alice.context.cookies(url('/'))).find((c) => c.name === 'countersign_session');
    const csrf = (await alice.page.locator('meta[name="csrf-token"]').getAttribute('content')) as string;
    const res = await fetch(url(`/requests/${r.requestId}/vote`), {
      method: 'POST',
      redirect: 'manual',
      headers: {
        cookie: `countersign_session=${cookie?.value}`,
        'content-type': 'application/x-www-form-urlencoded',
        origin: url(''),
      },
      body: `csrf=${csrf}&decision=approve&reason=`,
    });
    assert.equal(res.status, 409);
    assert.match(await res.text(), /ERR_STEP_UP_REQUIRED/);
    const before = await signCount();
    await alice.page.getByRole('button', { name: 'Approve' }).click();
    await alice.page.getByText('Your vote is recorded.').waitFor();
    assert.equal(await signCount(), before + 1, 'a new assertion, made for this vote');
  });

  it('audit verify checks the age of each confirmation against the rule', async () => {
    const snapshot = await readAuditSnapshot(t.broker.redis, new Keys(t.prefix), {});
    const jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
    const report = await verifyAuditTrail({ ...snapshot, getKey: createLocalJWKSet(jwks) });
    assert.deepEqual(report.problems, []);
    assert.equal(report.passkeyVotes, 3);
  });
});
