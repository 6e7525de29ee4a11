// The approver console end to end, in a real browser: Debian's chromium driven by
// playwright-core, passkeys on the DevTools WebAuthn virtual authenticator, a
// real broker (gRPC over mTLS, Redis, BullMQ). A person signs in with a one-time
// link, registers a passkey, approves a `step_up: webauthn` request with it; the
// credential names the passkey step-up, and `audit verify` proves it offline.
// Then every way to cheat that the issue names, each refused with its code.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeJwt, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import {
  ApprovalsClient,
  CountersignClient,
  type CountersignClientError,
  type OperationResult,
} from '@countersign/agent';
import { ACR, PASSKEY_AMR } from '@countersign/proto';
import { auditEvents, startTestBroker, type IssuedSvid, type TestBroker } from '@countersign/broker/testing';
import { Keys } from '../../broker/src/redis/keys.js';
import { parseRecord, recordHash, type AuditRecord } from '../../broker/src/audit/chain.js';
import { readAuditSnapshot } from '../../broker/src/audit/export.js';
import { verifyAuditTrail } from '../../broker/src/audit/verify.js';
import { SignInLinks } from '../../broker/src/console/links.js';
import { PasskeyStore } from '../../broker/src/passkeys/store.js';
import { launchBrowser, PersonBrowser, type Browser } from './support/browser.js';
import { softAssertion } from './support/soft-authenticator.js';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: prod-migrations
    description: Database migrations in production need a passkey.
    match: { workload: "spiffe://${TD}/ci/*", operation: db-migrate, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, step_up: webauthn, timeout: 15m }
  - name: prod-restores
    description: Restoring a production database from a backup needs two people, each with a passkey.
    match: { workload: "spiffe://${TD}/ci/*", operation: db-restore, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 2, step_up: webauthn, timeout: 15m }
  - name: prod-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, display_name: Alice Approver, email: alice@${TD}, slack_user_id: U0ALICE, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, display_name: Bob Approver, email: bob@${TD}, spiffe_ids: [spiffe://${TD}/human/bob] }
`;

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** COUNTERSIGN_SCREENSHOTS=1 refreshes the screenshots in docs/console/ (otherwise they go to a temp dir). */
const SHOTS = process.env.COUNTERSIGN_SCREENSHOTS === '1';

describe('approver console in a browser', { timeout: 600_000 }, () => {
  let t: TestBroker;
  let browser: Browser;
  let alice: PersonBrowser;
  let bob: PersonBrowser;
  let deployer: CountersignClient;
  let deployerSvid: IssuedSvid;
  let shotsDir: string;
  const clients: { close(): void }[] = [];

  const consoleUrl = () => t.broker.console?.publicUrl as string;
  const link = async (
    principal: string,
    extra: { method?: 'link' | 'slack_link'; ttlMs?: number; requestId?: string } = {},
  ) =>
    (
      await t.broker.console?.links.issue({
        principal,
        by: 'test',
        method: extra.method ?? 'link',
        ttlMs: extra.ttlMs,
        requestId: extra.requestId,
      })
    )?.url as string;

  async function signIn(person: PersonBrowser, principal: string): Promise<void> {
    await person.page.goto(await link(principal));
    await person.page.getByRole('button', { name: 'Sign in' }).click();
    await person.page.getByRole('heading', { name: 'Pending requests' }).waitFor();
  }

  async function registerPasskey(person: PersonBrowser, name: string): Promise<void> {
    await person.page.goto(`${consoleUrl()}/passkeys`);
    await person.page.getByLabel('Passkey name').fill(name);
    await person.page.getByRole('button', { name: 'Register a passkey' }).click();
    await person.page.getByText('Passkey registered.').waitFor();
  }

  const migration = (parameters: Record<string, unknown> = { migration: '0042_add_index', database: 'orders' }) =>
    deployer.requestOperation({
      operation: 'db-migrate',
      resource: 'prod/orders',
      parameters: parameters as Record<string, string>,
      reason: 'ship the index',
    });

  async function openRequest(person: PersonBrowser, requestId: string): Promise<void> {
    await person.page.goto(`${consoleUrl()}/requests/${requestId}`);
    await person.page
      .getByRole('heading', { name: 'Your decision' })
      .or(person.page.getByText('You cannot vote'))
      .first()
      .waitFor();
  }

  /** The browser's session cookie and CSRF token, to drive the endpoints as a forged page would. */
  async function sessionOf(person: PersonBrowser): Promise<{ cookie: string; csrf: string }> {
    const cookies = await person.context.cookies(consoleUrl());
    const session = cookies.find((c) => c.name === 'countersign_session');
    assert.ok(session, 'signed in');
    const csrf = (await person.page.locator('meta[name="csrf-token"]').getAttribute('content')) as string;
    return { cookie: `countersign_session=${session.value}`, csrf };
  }

  async function post(
    person: PersonBrowser,
    path: string,
    body: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; json: { error?: { code: string; message: string }; [k: string]: unknown } }> {
    const s = await sessionOf(person);
    const res = await fetch(`${consoleUrl()}${path}`, {
      method: 'POST',
      headers: {
        cookie: s.cookie,
        'content-type': 'application/json',
        accept: 'application/json',
        origin: consoleUrl(),
        'x-csrf-token': s.csrf,
        ...headers,
      },
      body: JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as { error?: { code: string; message: string } } };
  }

  async function collect(requestId: string): Promise<OperationResult> {
    for await (const update of deployer.watch(requestId)) if (update.state !== 'PENDING_APPROVAL') return update;
    assert.fail('the watch ended without an end state');
  }

  /** A screenshot for docs/console.md: the whole page ('page'), the first screen only ('screen'), or one element (its selector). */
  async function shot(name: string, person: PersonBrowser, what: string = 'page'): Promise<void> {
    const path = join(shotsDir, name);
    if (what === 'page' || what === 'screen') await person.page.screenshot({ path, fullPage: what === 'page' });
    else await person.page.locator(what).screenshot({ path });
  }

  before(async () => {
    t = await startTestBroker({
      policy: POLICY,
      principals: PRINCIPALS,
      extraConfig: `console:
  enabled: true
  listen: 127.0.0.1:0
requests:
  poll_interval: 300ms
`,
    });
    deployerSvid = t.svid('ci/deployer');
    deployer = new CountersignClient({
      address: t.address,
      certChainPem: deployerSvid.chainPem,
      keyPem: deployerSvid.keyPem,
      caPem: t.ca.pem,
    });
    clients.push(deployer);
    browser = await launchBrowser();
    alice = await PersonBrowser.open(browser);
    bob = await PersonBrowser.open(browser);
    shotsDir = SHOTS ? join(ROOT, 'docs/console') : await mkdtemp(join(tmpdir(), 'console-shots-'));
    await mkdir(shotsDir, { recursive: true });
  });
  after(async () => {
    for (const c of clients) c.close();
    await browser?.close();
    await t?.close();
  });

  it('signs in with a one-time link, registers a passkey and approves a webauthn request with it; the credential names the passkey step-up', async () => {
    await signIn(alice, 'alice');
    await registerPasskey(alice, 'laptop');
    assert.equal((await alice.credentials()).length, 1, 'the virtual authenticator holds the new passkey');

    const asked = await migration();
    assert.equal(asked.state, 'PENDING_APPROVAL');
    await openRequest(alice, asked.requestId);
    await shot('request.png', alice);
    await alice.page.getByLabel('Reason').fill('index reviewed in PR 1234');
    await alice.page.getByRole('button', { name: 'Approve' }).click();
    await alice.page.getByText('Your vote is recorded.').waitFor();

    const done = await collect(asked.requestId);
    assert.equal(done.state, 'APPROVED');
    const claims = decodeJwt(done.token as string) as Record<string, any>;
    assert.equal(claims.acr, ACR.PASSKEY);
    assert.deepEqual(claims.amr, [...PASSKEY_AMR]);
    assert.equal(claims.approval.approvers.length, 1);
    assert.equal(claims.approval.approvers[0].principal, 'alice');
    assert.equal(claims.approval.approvers[0].channel, 'console');
    assert.equal(claims.approval.approvers[0].step_up, 'webauthn');

    const events = (await auditEvents(t.broker.redis, t.prefix)).filter((e) => e.request_id === asked.requestId);
    const vote = events.find((e) => e.type === 'vote') as Record<string, any>;
    assert.equal(vote.step_up, 'webauthn');
    assert.equal(vote.webauthn.challenge.request_id, asked.requestId);
    assert.equal(vote.webauthn.challenge.decision, 'approve');
    assert.equal(vote.webauthn.challenge.parameters_digest, vote.webauthn.challenge.parameters_digest);
    for (const field of ['credential_id', 'authenticator_data', 'client_data_json', 'signature'])
      assert.match(vote.webauthn[field], /^[A-Za-z0-9_-]+$/, field);
  });

  it('audit verify re-checks every passkey vote from the trail alone, and names the sequence number of an altered assertion', async () => {
    const keys = new Keys(t.prefix);
    const snapshot = await readAuditSnapshot(t.broker.redis, keys, {});
    const jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
    const getKey = createLocalJWKSet(jwks);
    const intact = await verifyAuditTrail({ ...snapshot, getKey, consoleOrigin: consoleUrl() });
    assert.deepEqual(intact.problems, []);
    assert.ok(intact.passkeyVotes >= 1);

    // A forger with write access flips one byte of the signature and rewrites the hash chain after it.
    const records = snapshot.records.map((line) => parseRecord(line) as AuditRecord);
    const at = records.findIndex(
      (r) => r.event.type === 'vote' && (r.event as Record<string, any>).webauthn !== undefined,
    );
    const forged = structuredClone(records);
    const evidence = (forged[at] as AuditRecord).event.webauthn as Record<string, string>;
    const sig = Buffer.from(evidence.signature as string, 'base64url');
    sig.writeUInt8(sig.readUInt8(sig.length - 1) ^ 0x01, sig.length - 1);
    evidence.signature = sig.toString('base64url');
    for (let i = at; i < forged.length; i++) {
      const r = forged[i] as AuditRecord;
      if (i > at) r.prev = (forged[i - 1] as AuditRecord).hash;
      r.hash = recordHash(r);
    }
    const report = await verifyAuditTrail({
      records: forged.map((r) => JSON.stringify(r)),
      checkpoints: [],
      fromGenesis: true,
      getKey,
      consoleOrigin: consoleUrl(),
    });
    const seq = (records[at] as AuditRecord).seq;
    assert.deepEqual(
      report.problems.filter((p) => p.kind === 'chain'),
      [],
      'the rewritten chain itself is consistent',
    );
    const found = report.problems.find((p) => p.kind === 'evidence' && p.seq === seq);
    assert.ok(found, `the forged vote at seq ${seq} is named: ${JSON.stringify(report.problems)}`);
    assert.equal(found.code, 'ERR_AUDIT_PASSKEY_INVALID');
    assert.match(found.message, /ERR_PASSKEY_BAD_SIGNATURE/);
    // The credential built on that vote is flagged too.
    assert.ok(
      report.problems.some(
        (p) =>
          p.kind === 'evidence' &&
          p.code === 'ERR_AUDIT_EVIDENCE_MISSING' &&
          (p.seq ?? 0) > seq &&
          /without a verified passkey vote/.test(p.message),
      ),
    );
    // The auditor's command: exit 6 (the approval evidence does not hold), the forged vote named by its code and seq.
    const dir = await mkdtemp(join(tmpdir(), 'console-forged-'));
    await writeFile(join(dir, 'forged.jsonl'), `${forged.map((r) => JSON.stringify(r)).join('\n')}\n`);
    await writeFile(join(dir, 'jwks.json'), JSON.stringify(jwks));
    const cli = spawnSync(
      process.execPath,
      [
        join(ROOT, 'broker/bin/countersign-broker.js'),
        'audit',
        'verify',
        '--file',
        join(dir, 'forged.jsonl'),
        '--jwks',
        join(dir, 'jwks.json'),
      ],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    assert.equal(cli.status, 6, `${cli.stdout}\n${cli.stderr}`);
    assert.match(
      cli.stdout,
      new RegExp(
        `FAIL +1 passkey vote\\(s\\) that do not verify from the trail\\n +ERR_AUDIT_PASSKEY_INVALID +seq ${seq}: `,
      ),
    );
    await rm(dir, { recursive: true, force: true });

    // Moving the vote's challenge to another request is caught as well.
    const moved = structuredClone(records);
    ((moved[at] as AuditRecord).event.webauthn as Record<string, any>).challenge.request_id = 'req_someotherrequest';
    for (let i = at; i < moved.length; i++) {
      const r = moved[i] as AuditRecord;
      if (i > at) r.prev = (moved[i - 1] as AuditRecord).hash;
      r.hash = recordHash(r);
    }
    const movedReport = await verifyAuditTrail({
      records: moved.map((r) => JSON.stringify(r)),
      checkpoints: [],
      fromGenesis: true,
      getKey,
    });
    assert.ok(
      movedReport.problems.some((p) => p.seq === seq && /was made for/.test(p.message)),
      JSON.stringify(movedReport.problems),
    );
  });

  it('a passkey assertion made for request A does not count on request B', async () => {
    const a = await migration({ migration: '0043_a' });
    const b = await migration({ migration: '0044_b' });
    await openRequest(alice, a.requestId);
    // Capture the assertion the page makes for A, and stop it there.
    let captured: { passkey: { challengeId: string; response: unknown } } | undefined;
    await alice.page.route(`**/requests/${a.requestId}/vote`, async (route) => {
      captured = JSON.parse(route.request().postData() as string);
      await route.abort();
    });
    await alice.page.getByRole('button', { name: 'Approve' }).click();
    await alice.page.locator('[data-vote-error]').waitFor({ state: 'visible' });
    await alice.page.unroute(`**/requests/${a.requestId}/vote`);
    assert.ok(captured, 'the page made an assertion for A');

    // Replayed as it is on B: the challenge was issued for A.
    const replayed = await post(alice, `/requests/${b.requestId}/vote`, {
      decision: 'approve',
      reason: '',
      passkey: captured.passkey,
    });
    assert.equal(replayed.status, 403);
    assert.equal(replayed.json.error?.code, 'ERR_PASSKEY_CHALLENGE_MISMATCH');

    // With a fresh challenge for B, A's assertion does not match B's derived challenge.
    const fresh = await post(alice, `/requests/${b.requestId}/challenge`, { decision: 'approve' });
    assert.equal(fresh.status, 200);
    const spliced = await post(alice, `/requests/${b.requestId}/vote`, {
      decision: 'approve',
      reason: '',
      passkey: { challengeId: fresh.json.challengeId, response: captured.passkey.response },
    });
    assert.equal(spliced.json.error?.code, 'ERR_PASSKEY_CHALLENGE_MISMATCH');

    const requests = await Promise.all([a, b].map((r) => t.broker.approvals.store.get(r.requestId)));
    assert.deepEqual(
      requests.map((r) => r?.approvals),
      [0, 0],
      'neither request has an approval',
    );
  });

  it('a passkey assertion counts once: replaying it on the same request is refused', async () => {
    // Two approvals needed: the request is still pending after alice's, so only the replay itself can be refused.
    const r = await deployer.requestOperation({
      operation: 'db-restore',
      resource: 'prod/orders',
      parameters: { backup: '2026-01-01T00:00Z' },
    });
    await openRequest(alice, r.requestId);
    let captured: { passkey: { challengeId: string; response: unknown } } | undefined;
    await alice.page.route(`**/requests/${r.requestId}/vote`, async (route) => {
      captured = JSON.parse(route.request().postData() as string);
      await route.continue();
    });
    await alice.page.getByRole('button', { name: 'Approve' }).click();
    await alice.page.getByText('Your vote is recorded.').waitFor();
    await alice.page.unroute(`**/requests/${r.requestId}/vote`);
    assert.ok(captured);
    const replay = await post(alice, `/requests/${r.requestId}/vote`, {
      decision: 'approve',
      reason: '',
      passkey: captured.passkey,
    });
    assert.equal(replay.json.error?.code, 'ERR_PASSKEY_CHALLENGE_USED');
    const stored = await t.broker.approvals.store.get(r.requestId);
    assert.equal(stored?.state, 'PENDING_APPROVAL');
    assert.equal(stored?.approvals, 1);
  });

  it('refuses an assertion without user verification (UV flag clear), made in the browser', async () => {
    const r = await migration({ migration: '0046_uv' });
    await openRequest(alice, r.requestId);
    await alice.setUserVerified(false);
    // The page asks for user verification; a page that asked for less (here: rewritten in flight) gets an assertion without it.
    await alice.page.route(`**/requests/${r.requestId}/challenge`, async (route) => {
      const res = await route.fetch();
      const json = await res.json();
      json.options.userVerification = 'discouraged';
      await route.fulfill({ response: res, json });
    });
    try {
      await alice.page.getByRole('button', { name: 'Approve' }).click();
      const error = alice.page.locator('[data-vote-error]');
      await error.waitFor({ state: 'visible' });
      assert.match((await error.textContent()) ?? '', /ERR_PASSKEY_USER_NOT_VERIFIED/);
    } finally {
      await alice.page.unroute(`**/requests/${r.requestId}/challenge`);
      await alice.setUserVerified(true);
    }
    assert.equal((await t.broker.approvals.store.get(r.requestId))?.approvals, 0);
  });

  it("refuses bob's passkey used in alice's session", async () => {
    await signIn(bob, 'bob');
    await registerPasskey(bob, 'bob key');
    // Bob's passkey (private key and all) ends up in alice's authenticator.
    const bobs = (await bob.credentials())[0];
    assert.ok(bobs);
    const thief = await PersonBrowser.open(browser);
    try {
      await thief.addCredential(bobs);
      await signIn(thief, 'alice');
      const r = await migration({ migration: '0047_foreign' });
      await openRequest(thief, r.requestId);
      // Alice's challenge lists only alice's passkeys; without that list the authenticator offers the one it has.
      await thief.page.route(`**/requests/${r.requestId}/challenge`, async (route) => {
        const res = await route.fetch();
        const json = await res.json();
        delete json.options.allowCredentials;
        await route.fulfill({ response: res, json });
      });
      await thief.page.getByRole('button', { name: 'Approve' }).click();
      const error = thief.page.locator('[data-vote-error]');
      await error.waitFor({ state: 'visible' });
      assert.match((await error.textContent()) ?? '', /ERR_PASSKEY_NOT_YOURS/);
      assert.equal((await t.broker.approvals.store.get(r.requestId))?.approvals, 0);
    } finally {
      await thief.close();
    }
  });

  it('refuses assertions for another origin or RP ID, and a signature counter that goes back (a cloned authenticator)', async () => {
    const [credential] = await alice.credentials();
    assert.ok(credential);
    const rp = new URL(consoleUrl());
    const attempt = async (requestId: string, patch: { origin?: string; rpId?: string; counter?: number }) => {
      const challenge = await post(alice, `/requests/${requestId}/challenge`, { decision: 'approve' });
      assert.equal(challenge.status, 200, JSON.stringify(challenge.json));
      const options = challenge.json.options as { challenge: string };
      const current = (await alice.credentials())[0]?.signCount ?? 0;
      const response = softAssertion(credential, {
        challenge: options.challenge,
        origin: patch.origin ?? rp.origin,
        rpId: patch.rpId ?? rp.hostname,
        counter: patch.counter ?? current + 1,
      });
      return post(alice, `/requests/${requestId}/vote`, {
        decision: 'approve',
        reason: '',
        passkey: { challengeId: challenge.json.challengeId, response },
      });
    };
    const r = await migration({ migration: '0048_clone' });
    const origin = await attempt(r.requestId, { origin: 'https://countersign.evil.example' });
    assert.equal(origin.json.error?.code, 'ERR_PASSKEY_WRONG_ORIGIN');
    const rpId = await attempt(r.requestId, { rpId: 'evil.example' });
    assert.equal(rpId.json.error?.code, 'ERR_PASSKEY_WRONG_RP_ID');
    const regressed = await attempt(r.requestId, { counter: 1 });
    assert.equal(regressed.json.error?.code, 'ERR_PASSKEY_COUNTER_REGRESSION');
    assert.equal((await t.broker.approvals.store.get(r.requestId))?.approvals, 0);
    // The clone, with a counter above the last one seen, is indistinguishable from the original: that is what counters are for.
    const ok = await attempt(r.requestId, {});
    assert.equal(ok.json.counted, true, JSON.stringify(ok.json));
  });

  it('refuses state changes without the CSRF token, or from another origin', async () => {
    const r = await migration({ migration: '0049_csrf' });
    const s = await sessionOf(alice);
    const form = (body: string, headers: Record<string, string> = {}) =>
      fetch(`${consoleUrl()}/requests/${r.requestId}/vote`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: s.cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body,
      });
    const none = await form('decision=deny&reason=csrf');
    assert.equal(none.status, 403);
    assert.match(await none.text(), /ERR_CSRF/);
    const wrong = await form(`decision=deny&reason=csrf&csrf=${'x'.repeat(43)}`);
    assert.equal(wrong.status, 403);
    const crossSite = await form(`decision=deny&reason=csrf&csrf=${s.csrf}`, { origin: 'https://evil.example' });
    assert.equal(crossSite.status, 403);
    // From the page itself, the browser refuses to even send a cross-site form: the cookie is SameSite=Strict. The same form from the page works.
    assert.equal((await t.broker.approvals.store.get(r.requestId))?.denials, 0);
    const ok = await form(`decision=deny&reason=csrf&csrf=${s.csrf}`, { origin: consoleUrl() });
    assert.equal(ok.status, 303);
    assert.equal((await t.broker.approvals.store.get(r.requestId))?.state, 'DENIED');
  });

  it('sets the session cookie HttpOnly and SameSite=Strict (Secure except on localhost), and a strict CSP', async () => {
    const cookies = await alice.context.cookies(consoleUrl());
    const session = cookies.find((c) => c.name === 'countersign_session');
    assert.ok(session);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(session.secure, false, 'plain http on localhost');
    assert.equal(await alice.page.evaluate('document.cookie'), '', 'scripts cannot read it');
    const res = await fetch(`${consoleUrl()}/sign-in`);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(res.headers.get('referrer-policy'), 'same-origin');
    const page = await res.text();
    assert.doesNotMatch(page, /<script(?![^>]*\bsrc="\/static\/)/, 'no inline script');
  });

  it('renders hostile parameters inert and shows invisible characters', async () => {
    const hostile = {
      migration: '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2">',
      target: 'prod/\u202Esredro',
      note: 'zero\u200Bwidth',
      '"><b>key</b>': 'x',
    };
    const r = await deployer.requestOperation({ operation: 'deploy', resource: 'prod/web', parameters: hostile });
    let dialog = false;
    alice.page.on('dialog', (d) => {
      dialog = true;
      void d.dismiss();
    });
    await openRequest(alice, r.requestId);
    await shot('hostile-parameters.png', alice, 'section[aria-labelledby="cs-params"]');
    assert.equal(await alice.page.evaluate('window.__pwned'), undefined);
    assert.equal(dialog, false);
    const json = alice.page.locator('pre.cs-json');
    const text = (await json.textContent()) ?? '';
    assert.match(text, /<script>window\.__pwned = 1<\/script>/, 'shown as text');
    assert.equal(await json.locator('script, img, b').count(), 0, 'no element came from the parameters');
    assert.ok(!text.includes('\u202E') && !text.includes('\u200B'), 'the invisible characters do not act');
    assert.match(text, /⟦U\+202E⟧/);
    assert.match(text, /⟦U\+200B⟧/);
    assert.equal(await json.locator('.cs-invisible[title="U+202E RIGHT-TO-LEFT OVERRIDE"]').count(), 1);
    await alice.page.getByRole('note').filter({ hasText: 'invisible or change the direction' }).waitFor();
  });

  it('shows what changed against the last approved request for the same operation and resource', async () => {
    const first = await deployer.requestOperation({
      operation: 'deploy',
      resource: 'prod/api',
      parameters: { version: '1.4.1', replicas: '3' },
    });
    await openRequest(alice, first.requestId);
    await alice.page.getByRole('button', { name: 'Approve' }).click();
    await alice.page.getByText('Your vote is recorded.').waitFor();
    const second = await deployer.requestOperation({
      operation: 'deploy',
      resource: 'prod/api',
      parameters: { version: '1.4.2', replicas: '3' },
    });
    await openRequest(alice, second.requestId);
    const changes = alice.page.locator('.cs-changes');
    assert.equal(await changes.locator('li').count(), 1);
    assert.equal((await changes.textContent())?.replace(/\s+/g, ' ').trim(), 'version: "1.4.1" → "1.4.2"');
  });

  it('refuses a Slack-style click and the CLI approve on a webauthn rule, pointing at the console page', async () => {
    const r = await migration({ migration: '0050_cli' });
    const aliceSvid = t.svid('human/alice');
    const cli = new ApprovalsClient({
      address: t.address,
      certChainPem: aliceSvid.chainPem,
      keyPem: aliceSvid.keyPem,
      caPem: t.ca.pem,
    });
    clients.push(cli);
    const refused = await cli.decide({ requestId: r.requestId, decision: 'approve', reason: 'from the terminal' }).then(
      () => assert.fail('the CLI approval counted'),
      (e: unknown) => e as CountersignClientError,
    );
    assert.equal(refused.code, 'ERR_STEP_UP_REQUIRED');
    assert.ok(refused.message.includes(`${consoleUrl()}/requests/${r.requestId}`), refused.message);
    // The channel-side vote a Slack click makes (no passkey proof) is refused the same way.
    const click = await t.broker.approvals.workflow.vote({
      requestId: r.requestId,
      principal: 'alice',
      channel: 'slack',
      decision: 'approve',
      reason: '',
      stepUp: 'click',
    });
    assert.equal(click.counted, false);
    assert.equal(click.counted === false && click.code, 'ERR_STEP_UP_REQUIRED');
    // Deny needs no passkey, from anywhere.
    await cli.decide({ requestId: r.requestId, decision: 'deny', reason: 'not today' });
    assert.equal((await t.broker.approvals.store.get(r.requestId))?.state, 'DENIED');
  });

  it('refuses a used sign-in link and an expired one', async () => {
    const person = await PersonBrowser.open(browser);
    try {
      const url = await link('bob');
      await person.page.goto(url);
      await person.page.getByRole('button', { name: 'Sign in' }).click();
      await person.page.getByRole('heading', { name: 'Pending requests' }).waitFor();
      // The same link again, in another browser.
      const other = await PersonBrowser.open(browser);
      try {
        await other.page.goto(url);
        await other.page.getByRole('button', { name: 'Sign in' }).click();
        await other.page.getByText('ERR_SIGN_IN_LINK_USED').waitFor();
        // A link issued an hour ago with a 15-minute lifetime (its issuer's clock is an hour behind).
        const keys = new Keys(t.prefix);
        const past = new SignInLinks(
          {
            store: new PasskeyStore(t.broker.redis, keys),
            keys,
            audit: { append: async () => ({}) as never, appendAll: async () => [] },
            clock: { now: () => Date.now() - 3600_000 },
          },
          { publicUrl: consoleUrl, ttlMs: 15 * 60_000 },
        );
        await other.page.goto('about:blank');
        await other.page.goto((await past.issue({ principal: 'bob', by: 'test', method: 'link' })).url);
        await other.page.getByRole('button', { name: 'Sign in' }).click();
        await other.page.getByText('ERR_SIGN_IN_LINK_EXPIRED').waitFor();
        assert.equal(
          (await other.context.cookies(consoleUrl())).some((c) => c.name === 'countersign_session'),
          false,
        );
      } finally {
        await other.close();
      }
    } finally {
      await person.close();
    }
  });

  it('keeps link sign-ins from Slack from registering or removing passkeys; sign out ends the session', async () => {
    const person = await PersonBrowser.open(browser);
    try {
      await person.page.goto(await link('bob', { method: 'slack_link' }));
      await person.page.getByRole('button', { name: 'Sign in' }).click();
      await person.page.getByRole('heading', { name: 'Pending requests' }).waitFor();
      await person.page.goto(`${consoleUrl()}/passkeys`);
      await person.page.getByText('a chat session alone must not be able to add a passkey').waitFor();
      assert.equal(await person.page.getByRole('button', { name: 'Register a passkey' }).count(), 0);
      const s = await sessionOf(person);
      const res = await fetch(`${consoleUrl()}/passkeys/options`, {
        method: 'POST',
        headers: { cookie: s.cookie, 'content-type': 'application/json', 'x-csrf-token': s.csrf },
        body: '{}',
      });
      assert.equal(res.status, 403);
      assert.equal(
        ((await res.json()) as { error: { code: string } }).error.code,
        'ERR_PASSKEY_ENROLLMENT_NOT_ALLOWED',
      );
      // Nor take bob's passkey away.
      assert.equal(await person.page.getByRole('button', { name: /^Remove passkey/ }).count(), 0);
      const [bobs] = (await t.broker.console?.passkeys.list('bob')) ?? [];
      assert.ok(bobs);
      const remove = await fetch(`${consoleUrl()}/passkeys/remove`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: s.cookie, 'content-type': 'application/x-www-form-urlencoded', origin: consoleUrl() },
        body: `csrf=${s.csrf}&credential_id=${bobs.credential_id}`,
      });
      assert.equal(remove.status, 403);
      assert.equal((await t.broker.console?.passkeys.list('bob'))?.length, 1);

      // Sign out ends the session on the server, not only in this browser.
      await person.page.getByRole('button', { name: 'Sign out' }).click();
      await person.page.getByRole('heading', { name: 'Sign in to approve' }).waitFor();
      const after = await fetch(`${consoleUrl()}/`, { redirect: 'manual', headers: { cookie: s.cookie } });
      assert.equal(after.status, 303);
      assert.match(after.headers.get('location') ?? '', /^\/sign-in\?next=/);
    } finally {
      await person.close();
    }
  });

  it('registers a second passkey (another device) and removes it; both are audited', async () => {
    // One authenticator holds one passkey per site: the second one is alice's other device.
    const device = await PersonBrowser.open(browser);
    try {
      await signIn(device, 'alice');
      await registerPasskey(device, 'spare key');
      await device.page.getByRole('button', { name: 'Remove passkey spare key' }).click();
      await device.page.getByText('Passkey removed.').waitFor();
    } finally {
      await device.close();
    }
    const names = (await t.broker.console?.passkeys.list('alice'))?.map((p) => p.name);
    assert.deepEqual(names, ['laptop']);
    const events = await auditEvents(t.broker.redis, t.prefix);
    const spare = events.find((e) => e.type === 'passkey_registered' && e.name === 'spare key');
    assert.ok(spare, 'registration audited');
    assert.match(String(spare.public_key), /^[A-Za-z0-9_-]+$/);
    assert.ok(
      events.some((e) => e.type === 'passkey_removed' && e.credential_id === spare.credential_id && e.by === 'alice'),
    );
  });

  it('is usable on a phone: the request page fits a narrow screen', async () => {
    const phone = await PersonBrowser.open(browser, { viewport: { width: 390, height: 844 } });
    try {
      await signIn(phone, 'bob');
      const r = await migration({ migration: '0051_phone' });
      await openRequest(phone, r.requestId);
      const overflow = await phone.page.evaluate<number>(
        'document.documentElement.scrollWidth - document.documentElement.clientWidth',
      );
      assert.ok(overflow <= 0, `no horizontal scrolling (${overflow}px)`);
      await shot('request-phone.png', phone, 'screen');
      assert.match(
        (await phone.page.locator('time[data-countdown]').first().textContent()) ?? '',
        /^in \d+ min \d+ s$/,
      );
    } finally {
      await phone.close();
    }
    await alice.page.goto(`${consoleUrl()}/passkeys`);
    await shot('passkeys.png', alice);
  });
});
