// Slack on a `step_up: webauthn` rule, end to end: a real broker with Slack (the
// Web API fake signing interactions like Slack) and the approver console, and
// chromium for the person. The card's Approve is a link to the console page; a
// click that tries to approve in Slack is refused and points there; "Sign in to
// approve" sends the clicker alone a one-time link; the passkey approves.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { CountersignClient, type OperationResult } from '@countersign/agent';
import { parseConfig, startBroker, type RunningBroker } from '@countersign/broker';
import {
  auditEvents,
  connectRedis,
  FakeSlack,
  silentLogger,
  testRedis,
  writeBrokerFiles,
  type FakeMessage,
  type TestRedis,
} from '@countersign/broker/testing';
import { launchBrowser, PersonBrowser, type Browser } from './support/browser.js';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: prod-migrations
    match: { workload: "spiffe://${TD}/ci/*", operation: db-migrate, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, step_up: webauthn, timeout: 15m, notify: { slack_channels: ["#approvals"], direct_messages: false } }
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, display_name: Alice, slack_user_id: U0ALICE, email: alice@${TD} }
  - { name: bob, slack_user_id: U0BOB, email: bob@${TD} }
  - { name: dave, slack_user_id: U0DAVE, email: dave@${TD} }
`;

describe('Slack and the approver console on a passkey rule', { timeout: 600_000 }, () => {
  let r: TestRedis;
  let fake: FakeSlack;
  let broker: RunningBroker;
  let client: CountersignClient;
  let browser: Browser;
  let alice: PersonBrowser;
  const events = () => `http://127.0.0.1:${broker.httpPort}/slack/events`;

  before(async () => {
    r = await testRedis('console-slack');
    fake = await FakeSlack.start({
      channels: { approvals: 'C0APPROVALS' },
      users: [
        { id: 'U0ALICE', name: 'alice' },
        { id: 'U0BOB', name: 'bob' },
        { id: 'U0DAVE', name: 'dave' },
      ],
    });
    const files = await writeBrokerFiles({
      trustDomain: TD,
      policy: POLICY,
      principals: PRINCIPALS,
      redisUrl: r.url,
      prefix: r.prefix,
      files: { 'slack-bot-token': fake.botToken, 'slack-signing-secret': fake.signingSecret },
      extraConfig: `slack:
  bot_token_file: slack-bot-token
  signing_secret_file: slack-signing-secret
  api_url: ${fake.apiUrl}
  delivery: { attempts: 8, backoff: 100ms }
console:
  enabled: true
  listen: 127.0.0.1:0
`,
    });
    broker = await startBroker(parseConfig(files.configText, files.configFile), {
      logger: silentLogger(),
      redis: await connectRedis(r.url),
      auditStdout: null,
      env: {},
    });
    const deployer = files.ca.issueSvid(`spiffe://${TD}/ci/deployer`);
    client = new CountersignClient({
      address: `127.0.0.1:${broker.grpcPort}`,
      certChainPem: deployer.chainPem,
      keyPem: deployer.keyPem,
      caPem: files.ca.pem,
    });
    browser = await launchBrowser();
    // Alice enrolled a passkey earlier, with a link from an operator.
    alice = await PersonBrowser.open(browser);
    await alice.page.goto(
      (await broker.console?.links.issue({ principal: 'alice', by: 'cli', method: 'link' }))?.url as string,
    );
    await alice.page.getByRole('button', { name: 'Sign in' }).click();
    await alice.page.goto(`${broker.console?.publicUrl}/passkeys`);
    await alice.page.getByLabel('Passkey name').fill('laptop');
    await alice.page.getByRole('button', { name: 'Register a passkey' }).click();
    await alice.page.getByText('Passkey registered.').waitFor();
    await alice.context.clearCookies();
  });
  after(async () => {
    client?.close();
    await browser?.close();
    await broker?.close();
    broker?.redis.disconnect();
    await fake?.close();
    await r?.cleanup();
  });

  const ask = async (migration: string): Promise<OperationResult> => {
    const result = await client.requestOperation({
      operation: 'db-migrate',
      resource: 'prod/orders',
      parameters: { migration },
    });
    assert.equal(result.state, 'PENDING_APPROVAL', result.message);
    return result;
  };
  const cardOf = (requestId: string): Promise<FakeMessage> =>
    fake.waitFor(`the card of ${requestId}`, () => fake.posts('C0APPROVALS').find((m) => m.text.includes(requestId)));
  const buttons = (card: FakeMessage) =>
    card.blocks
      .filter((b) => b.type === 'actions')
      .flatMap((b) => b.elements as { action_id: string; url?: string; text: { text: string } }[]);
  const click = async (card: FakeMessage, actionId: string, user: string, pattern: RegExp) => {
    const from = fake.ephemerals.length;
    const res = await fake.click(events(), card, actionId, user);
    assert.equal(res.status, 200);
    return fake.waitFor(`an answer to ${user} matching ${pattern}`, () =>
      fake.ephemerals.slice(from).find((e) => e.user === user && pattern.test(e.text)),
    );
  };

  it("shows Approve as a link to the request's console page, with Sign in to approve and Deny", async () => {
    const req = await ask('0100_card');
    const card = await cardOf(req.requestId);
    const found = buttons(card);
    assert.deepEqual(
      found.map((b) => [b.action_id, b.text.text]),
      [
        ['countersign_open_console', 'Approve with passkey'],
        ['countersign_console_sign_in', 'Sign in to approve'],
        ['countersign_deny', 'Deny…'],
      ],
    );
    assert.equal(found[0]?.url, `${broker.console?.publicUrl}/requests/${req.requestId}`);
    assert.match(JSON.stringify(card.blocks), /each approver confirms with a passkey in the console/);
    // Opening the link is a click Slack reports too: nothing is voted, nothing is said.
    const from = fake.ephemerals.length;
    assert.equal((await fake.click(events(), card, 'countersign_open_console', 'U0ALICE')).status, 200);
    assert.equal((await broker.approvals.workflow.get(req.requestId))?.votes.length, 0);
    assert.equal(fake.ephemerals.length, from);
  });

  it('refuses an approval clicked in Slack (an older card) and points at the console page', async () => {
    const req = await ask('0101_old_card');
    const card = await cardOf(req.requestId);
    // The card as it was before the rule required a passkey: a plain Approve button.
    const old: FakeMessage = {
      ...card,
      blocks: card.blocks.map((b) =>
        b.type === 'actions'
          ? {
              ...b,
              elements: [
                {
                  type: 'button',
                  action_id: 'countersign_approve',
                  value: req.requestId,
                  text: { type: 'plain_text', text: 'Approve' },
                },
              ],
            }
          : b,
      ),
    };
    const answer = await click(old, 'countersign_approve', 'U0ALICE', /Not recorded/);
    assert.match(answer.text, /requires step-up "webauthn"/);
    assert.ok(answer.text.includes(`${broker.console?.publicUrl}/requests/${req.requestId}`), answer.text);
    const refused = (await auditEvents(r.redis, r.prefix)).filter(
      (e) => e.request_id === req.requestId && e.type === 'vote_refused',
    );
    assert.deepEqual(
      refused.map((e) => [e.principal, e.code, e.channel]),
      [['alice', 'ERR_STEP_UP_REQUIRED', 'slack']],
    );
    assert.equal((await broker.approvals.workflow.get(req.requestId))?.state, 'PENDING_APPROVAL');
  });

  it('sends a one-time sign-in link to the clicker only, who approves with the passkey in the console', async () => {
    const req = await ask('0102_link');
    const card = await cardOf(req.requestId);
    await click(card, 'countersign_console_sign_in', 'U0DAVE', /cannot approve/);
    const answer = await click(card, 'countersign_console_sign_in', 'U0ALICE', /one-time sign-in link/);
    const link = /<(http:\/\/localhost:\d+\/sign-in\/link#t=[A-Za-z0-9_-]+)\|/.exec(answer.text)?.[1];
    assert.ok(link, answer.text);
    assert.equal(
      fake.posts('C0APPROVALS').some((m) => m.text.includes('#t=')),
      false,
      'never in the channel',
    );

    await alice.page.goto(link);
    await alice.page.getByRole('button', { name: 'Sign in' }).click();
    await alice.page.getByRole('heading', { name: 'Your decision' }).waitFor();
    assert.ok(alice.page.url().endsWith(`/requests/${req.requestId}`));
    await alice.page.getByRole('button', { name: 'Approve' }).click();
    await alice.page.getByText('Your vote is recorded.').waitFor();

    let done: OperationResult | undefined;
    for await (const u of client.watch(req.requestId)) done = u;
    assert.equal(done?.state, 'APPROVED');
    const claims = decodeJwt(done?.token as string) as {
      approval: { approvers: { principal: string; channel: string; step_up: string }[] };
    };
    assert.deepEqual(
      claims.approval.approvers.map((a) => [a.principal, a.channel, a.step_up]),
      [['alice', 'console', 'webauthn']],
    );
    await fake.waitFor(
      'the card to show the passkey approval',
      () => /Approved\* by alice/.test(JSON.stringify(card.blocks)) && !card.blocks.some((b) => b.type === 'actions'),
    );
    const issued = (await auditEvents(r.redis, r.prefix)).filter((e) => e.type === 'console_link_issued');
    assert.ok(issued.some((e) => e.principal === 'alice' && e.by === 'slack' && e.method === 'slack_link'));
  });
});
