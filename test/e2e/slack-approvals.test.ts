// Slack approvals end to end: two broker replicas on one Redis with Slack on,
// real BullMQ, requests over mTLS gRPC, and the Slack Web API fake both taking
// the broker's calls and clicking buttons as Slack would (signed interactions to
// /slack/events). Every vote goes through the broker's approval workflow.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CountersignClient, type OperationResult } from '@countersign/agent';
import {
  auditEvents,
  connectRedis,
  FakeSlack,
  silentLogger,
  testRedis,
  writeBrokerFiles,
  type BrokerFiles,
  type FakeMessage,
  type TestRedis,
} from '@countersign/broker/testing';
import { parseConfig, startBroker, type RunningBroker } from '@countersign/broker';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: prod-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m, notify: { slack_channels: ["#approvals"], direct_messages: false } }
  - name: prod-migrations
    match: { workload: "spiffe://${TD}/ci/*", operation: migrate, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 2, timeout: 15m, notify: { slack_channels: ["#approvals"], direct_messages: false } }
  - name: prod-scaling
    match: { workload: "spiffe://${TD}/ci/*", operation: scale, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob, carol], required: 2, timeout: 15m, notify: { slack_channels: ["#approvals"], direct_messages: false } }
  - name: key-rotations
    match: { workload: "spiffe://${TD}/ci/*", operation: rotate-key, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m, step_up: confirm, notify: { slack_channels: ["#approvals"], direct_messages: false } }
  - name: quick-restarts
    match: { workload: "spiffe://${TD}/ci/*", operation: restart, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 2, timeout: 3s, notify: { slack_channels: ["#approvals"], direct_messages: false } }
  - name: oncall-pages
    match: { workload: "spiffe://${TD}/ci/*", operation: page, resource: "prod/*" }
    decision: approve
    approval: { groups: [oncall], required: 1, timeout: 15m }
  - name: incident-break-glass
    match: { workload: "spiffe://${TD}/ci/*", operation: failover, resource: "prod/*" }
    decision: break_glass
    ttl: 5m
    break_glass: { approvers: [alice, bob], groups: [oncall], slack_channels: ["#approvals"] }
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, slack_user_id: U0ALICE, email: alice@${TD} }
  - { name: bob, slack_user_id: U0BOB, email: bob@${TD} }
  - { name: carol, slack_user_id: U0CAROL, email: carol@${TD} }
  - { name: dave, slack_user_id: U0DAVE, email: dave@${TD} }
groups:
  - { name: oncall, slack_usergroup: S0ONCALL }
`;

describe('Slack approvals with a real broker (two replicas, fake Slack)', () => {
  let r: TestRedis;
  let fake: FakeSlack;
  let files: BrokerFiles;
  let a: RunningBroker;
  let b: RunningBroker;
  let client: CountersignClient;
  const events = (broker: RunningBroker) => `http://127.0.0.1:${broker.httpPort}/slack/events`;

  before(async () => {
    r = await testRedis('slack-e2e');
    fake = await FakeSlack.start({
      channels: { approvals: 'C0APPROVALS' },
      users: [
        { id: 'U0ALICE', name: 'alice' },
        { id: 'U0BOB', name: 'bob' },
        { id: 'U0CAROL', name: 'carol' },
        { id: 'U0DAVE', name: 'dave' },
        { id: 'U0MALLORY', name: 'mallory' },
      ],
      usergroups: { S0ONCALL: ['U0CAROL'] },
    });
    files = await writeBrokerFiles({
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
requests:
  sweep_interval: 1s
`,
    });
    // Two replicas of one deployment: same config, same Redis prefix, their own listeners.
    const start = async () =>
      startBroker(parseConfig(files.configText, files.configFile), {
        logger: silentLogger(),
        redis: await connectRedis(r.url),
        auditStdout: null,
        env: {},
      });
    a = await start();
    b = await start();
    const deployer = files.ca.issueSvid(`spiffe://${TD}/ci/deployer`);
    client = new CountersignClient({
      address: `127.0.0.1:${a.grpcPort}`,
      certChainPem: deployer.chainPem,
      keyPem: deployer.keyPem,
      caPem: files.ca.pem,
    });
  });
  after(async () => {
    client?.close();
    await a?.close();
    await b?.close();
    a?.redis.disconnect();
    b?.redis.disconnect();
    await fake?.close();
    await r?.cleanup();
  });

  const ask = async (
    operation: string,
    resource: string,
    extra: { onBehalfOf?: string; reason?: string } = {},
  ): Promise<OperationResult> => {
    const result = await client.requestOperation({
      operation,
      resource,
      parameters: { version: '1.4.2' },
      reason: extra.reason ?? 'release',
      onBehalfOf: extra.onBehalfOf,
    });
    assert.equal(result.state, 'PENDING_APPROVAL', result.message);
    return result;
  };
  const cardOf = (requestId: string, channel = 'C0APPROVALS'): Promise<FakeMessage> =>
    fake.waitFor(`the card of ${requestId}`, () => fake.posts(channel).find((m) => m.text.includes(requestId)));
  const stateOf = async (requestId: string) => (await a.approvals.workflow.get(requestId))?.state;
  /** Clicks a button as `user` on replica `broker` and waits for the private answer. */
  const clickAndHear = async (
    broker: RunningBroker,
    card: FakeMessage,
    actionId: string,
    user: string,
    pattern: RegExp,
  ) => {
    const from = fake.ephemerals.length;
    const res = await fake.click(events(broker), card, actionId, user);
    assert.equal(res.status, 200);
    return answerTo(user, pattern, from);
  };
  const answerTo = (user: string, pattern: RegExp, from: number) =>
    fake.waitFor(`an answer to ${user} matching ${pattern}`, () =>
      fake.ephemerals.slice(from).find((e) => e.user === user && pattern.test(e.text)),
    );
  /** Jobs added to the Slack queue with an id it already had (BullMQ's "duplicated" event). */
  const duplicatedSlackJobs = async () =>
    (await r.redis.xrange(`${r.prefix}bull:slack:events`, '-', '+')).filter(
      ([, fields]) => fields[0] === 'event' && fields[1] === 'duplicated',
    ).length;
  const audited = async (requestId: string) =>
    (await auditEvents(r.redis, r.prefix)).filter((e) => e.request_id === requestId);

  it('posts the card for a prod request and approves it with one click; the requester gets its credential', async () => {
    const req = await ask('deploy', 'prod/web');
    const card = await cardOf(req.requestId);
    assert.match(JSON.stringify(card.blocks), /spiffe:\/\/example.org\/ci\/deployer/);
    assert.match(JSON.stringify(card.blocks), /0 of 1 given/);
    const watching = (async () => {
      const updates: OperationResult[] = [];
      for await (const u of client.watch(req.requestId)) updates.push(u);
      return updates;
    })();

    await clickAndHear(
      a,
      card,
      'countersign_approve',
      'U0ALICE',
      /`deploy` on `prod\/web` is recorded; the request is now \*approved\*/,
    );
    const updates = await watching;
    const last = updates.at(-1);
    assert.equal(last?.state, 'APPROVED');
    assert.ok(last?.token, 'the watching requester gets the credential');
    const claims = JSON.parse(Buffer.from(last.token.split('.')[1] as string, 'base64url').toString()) as {
      approval: { approvers: { principal: string; channel: string }[] };
    };
    assert.deepEqual(
      claims.approval.approvers.map((x) => [x.principal, x.channel]),
      [['alice', 'slack']],
    );
    // The card ends without buttons, saying who approved; the vote is a reply in its thread.
    await fake.waitFor(
      'the approved card',
      () =>
        !card.blocks.some((blk) => blk.type === 'actions') && /Approved\* by alice/.test(JSON.stringify(card.blocks)),
    );
    await fake.waitFor('the vote in the thread', () =>
      fake.replies(card.channel, card.ts).some((m) => m.text.includes('*alice*')),
    );
  });

  it('a 2-of-2 rule needs both approvals: one click leaves it pending, the second approves it', async () => {
    const req = await ask('migrate', 'prod/orders');
    const card = await cardOf(req.requestId);
    await clickAndHear(a, card, 'countersign_approve', 'U0ALICE', /recorded: 1 of 2 approval/);
    assert.equal(await stateOf(req.requestId), 'PENDING_APPROVAL');
    await fake.waitFor('the card to show 1 of 2', () => /1 of 2 given/.test(JSON.stringify(card.blocks)));
    // bob clicks on the other replica: any replica can take any click and update any card.
    await clickAndHear(b, card, 'countersign_approve', 'U0BOB', /the request is now \*approved\*/);
    assert.equal(await stateOf(req.requestId), 'APPROVED');
    await fake.waitFor('the approved card', () => /Approved\* by alice, bob/.test(JSON.stringify(card.blocks)));
  });

  it('refuses and audits a click by a non-approver, a self-approval and a second vote', async () => {
    const req = await ask('scale', 'prod/users', { onBehalfOf: 'alice' });
    const card = await cardOf(req.requestId);

    await clickAndHear(a, card, 'countersign_approve', 'U0DAVE', /Not recorded: dave is not an approver/);
    await clickAndHear(
      a,
      card,
      'countersign_approve',
      'U0ALICE',
      /Not recorded: .*on behalf of alice.*separation of duties/,
    );
    await clickAndHear(b, card, 'countersign_approve', 'U0BOB', /recorded: 1 of 2/);
    await clickAndHear(a, card, 'countersign_approve', 'U0BOB', /Not recorded: bob already voted approve/);
    await clickAndHear(
      a,
      card,
      'countersign_approve',
      'U0MALLORY',
      /U0MALLORY is not in Countersign's principals file/,
    );

    assert.equal(await stateOf(req.requestId), 'PENDING_APPROVAL');
    const view = await a.approvals.workflow.get(req.requestId);
    assert.deepEqual(
      view?.votes.map((v) => v.principal),
      ['bob'],
    );
    const refused = (await audited(req.requestId))
      .filter((e) => e.type === 'vote_refused')
      .map((e) => [e.principal, e.code, e.channel]);
    assert.deepEqual(refused, [
      ['dave', 'ERR_NOT_AN_APPROVER', 'slack'],
      ['alice', 'ERR_SELF_APPROVAL', 'slack'],
      ['bob', 'ERR_ALREADY_VOTED', 'slack'],
      ['slack:U0MALLORY', 'ERR_SLACK_UNKNOWN_USER', 'slack'],
    ]);
  });

  it('two replicas handling the same interaction count one vote', async () => {
    const req = await ask('migrate', 'prod/billing');
    const card = await cardOf(req.requestId);
    const from = fake.ephemerals.length;
    const duplicatesBefore = await duplicatedSlackJobs();
    const payload = fake.clickPayload(card, 'countersign_approve', 'U0ALICE');
    const [ra, rb] = await Promise.all([
      fake.sendInteraction(events(a), payload),
      fake.sendInteraction(events(b), payload),
    ]);
    assert.deepEqual([ra.status, rb.status], [200, 200]);
    await answerTo('U0ALICE', /recorded: 1 of 2/, from);
    // Both replicas answered: the second answer is the same Slack job, which BullMQ reports as a duplicate.
    await fake.waitFor('both deliveries to be answered', async () => (await duplicatedSlackJobs()) > duplicatesBefore);
    assert.equal(fake.ephemerals.slice(from).filter((e) => e.user === 'U0ALICE').length, 1, 'one answer');
    const view = await a.approvals.workflow.get(req.requestId);
    assert.deepEqual(
      view?.votes.map((v) => v.principal),
      ['alice'],
    );
    assert.equal(view?.state, 'PENDING_APPROVAL');
    const votes = (await audited(req.requestId)).filter((e) => e.type === 'vote' || e.type === 'vote_refused');
    assert.deepEqual(
      votes.map((e) => e.type),
      ['vote'],
      'a redelivery is neither a second vote nor a refusal',
    );
  });

  it('deny opens a form for the reason; the denial ends the request and the card says why', async () => {
    const req = await ask('deploy', 'prod/api');
    const card = await cardOf(req.requestId);
    const from = fake.ephemerals.length;
    await fake.click(events(a), card, 'countersign_deny', 'U0BOB');
    const modal = await fake.waitFor('the deny form', () =>
      fake.views.find((v) => v.user === 'U0BOB' && JSON.stringify(v.view).includes(req.requestId)),
    );
    assert.equal(await stateOf(req.requestId), 'PENDING_APPROVAL', 'opening the form decides nothing');
    const empty = await fake.submitView(events(b), modal, { reason: '' });
    assert.deepEqual(empty.json, {
      response_action: 'errors',
      errors: { reason: 'Give a reason: it is recorded with your vote.' },
    });
    await fake.submitView(events(b), modal, { reason: 'not during the freeze' });
    await answerTo('U0BOB', /denial .* is recorded; the request is now \*denied\*/, from);
    assert.equal(await stateOf(req.requestId), 'DENIED');
    await fake.waitFor(
      'the denied card',
      () =>
        /Denied\* by bob/.test(JSON.stringify(card.blocks)) &&
        /not during the freeze/.test(JSON.stringify(card.blocks)),
    );
  });

  it('step-up confirm: a modal where the resource must be typed again, then a reason', async () => {
    const req = await ask('rotate-key', 'prod/signing');
    const card = await cardOf(req.requestId);
    const from = fake.ephemerals.length;
    await fake.click(events(a), card, 'countersign_approve', 'U0ALICE');
    const modal = await fake.waitFor('the confirm form', () =>
      fake.views.find((v) => v.user === 'U0ALICE' && JSON.stringify(v.view).includes(req.requestId)),
    );
    const typo = await fake.submitView(events(a), modal, { resource: 'prod/signin', reason: 'scheduled rotation' });
    assert.equal((typo.json as { response_action: string }).response_action, 'errors');
    assert.equal(await stateOf(req.requestId), 'PENDING_APPROVAL');
    await fake.submitView(events(a), modal, { resource: 'prod/signing', reason: 'scheduled rotation' });
    await answerTo('U0ALICE', /`rotate-key` on `prod\/signing` is recorded; the request is now \*approved\*/, from);
    const view = await a.approvals.workflow.get(req.requestId);
    assert.deepEqual(
      view?.votes.map((v) => [v.principal, v.stepUp, v.reason]),
      [['alice', 'confirm', 'scheduled rotation']],
    );
  });

  it('expiry updates the card: buttons gone, EXPIRED with the approvals it had; a late click is refused', async () => {
    const req = await ask('restart', 'prod/cache');
    const card = await cardOf(req.requestId);
    await clickAndHear(a, card, 'countersign_approve', 'U0ALICE', /recorded: 1 of 2/);
    await fake.waitFor(
      'the expired card',
      () => /Expired\*/.test(JSON.stringify(card.blocks)) && !card.blocks.some((blk) => blk.type === 'actions'),
    );
    assert.match(JSON.stringify(card.blocks), /with 1 of 2 approval/);
    assert.equal(await stateOf(req.requestId), 'EXPIRED');
    // A click on a stale copy of the card (Slack clients can lag) is refused, and the card is refreshed.
    const stale = { ...card, blocks: card.versions[0]?.blocks ?? [] };
    await clickAndHear(b, stale, 'countersign_approve', 'U0BOB', /Not recorded: request .* expired/);
  });

  it('break-glass: the credential comes at once, and the channel and every approver (groups included) are told, with the reason', async () => {
    const result = await client.requestOperation({
      operation: 'failover',
      resource: 'prod/db',
      parameters: { region: 'eu-west-1' },
      reason: 'primary is down, INC-4711',
    });
    assert.equal(result.state, 'APPROVED', result.message);
    assert.ok(result.token, 'no waiting for anyone');
    const jti = (
      JSON.parse(Buffer.from(result.token.split('.')[1] as string, 'base64url').toString()) as { jti: string }
    ).jti;
    // The rule's channel, and a DM to alice, bob and carol (a member of the oncall Slack user group).
    for (const channel of ['C0APPROVALS', 'D0ALICE', 'D0BOB', 'D0CAROL']) {
      const notice = await fake.waitFor(`the break-glass notice in ${channel}`, () =>
        fake.posts(channel).find((m) => m.text.includes(result.requestId)),
      );
      const shown = JSON.stringify(notice.blocks);
      assert.match(notice.text, /Break-glass used: failover prod\/db/);
      assert.match(shown, /incident-break-glass/);
      assert.match(shown, /primary is down, INC-4711/);
      assert.match(shown, /eu-west-1/);
      assert.ok(shown.includes(jti), 'the notice names the credential it announces');
      assert.ok(!notice.blocks.some((blk) => blk.type === 'actions'), 'nothing to click: it is not pending');
    }
    assert.equal(
      fake.posts('D0DAVE').filter((m) => m.text.includes(result.requestId)).length,
      0,
      'dave is not named by the rule',
    );
    // The audit says it was break-glass, and where each notice went.
    const trail = await fake.waitFor('four notices in the audit log', async () => {
      const events = await audited(result.requestId);
      return events.filter((e) => e.type === 'notification_sent' && e.event === 'break_glass_posted').length === 4
        ? events
        : undefined;
    });
    const decision = trail.find((e) => e.type === 'decision');
    assert.equal(decision?.decision, 'break_glass');
    assert.equal(decision?.break_glass, true);
    assert.ok(trail.some((e) => e.type === 'credential_issued' && e.jti === jti));
    assert.ok(
      trail.some((e) => e.type === 'notification_sent' && e.channel === 'slack' && e.event === 'break_glass'),
      'the broker recorded the announcement job as done',
    );
  });

  it('break-glass without a reason is denied, and nobody is paged', async () => {
    const posted = fake.posts().length;
    const result = await client.requestOperation({
      operation: 'failover',
      resource: 'prod/db',
      parameters: {},
      reason: '',
    });
    assert.equal(result.state, 'DENIED');
    assert.match(result.message, /break-glass, which needs a reason/);
    // The notify queue is empty of break-glass jobs for it (nothing was announced).
    const jobs = await r.redis.keys(`${r.prefix}bull:notify:${result.requestId}.break_glass*`);
    assert.deepEqual(jobs, []);
    assert.equal(
      fake
        .posts()
        .slice(posted)
        .filter((m) => m.text.includes(result.requestId)).length,
      0,
    );
  });

  it('/metrics counts the Slack queue with the others (Web API calls waiting, retrying, failed)', async () => {
    const text = await (await fetch(`http://127.0.0.1:${b.httpPort}/metrics`)).text();
    for (const queue of ['notify', 'expiry', 'slack'])
      assert.match(text, new RegExp(`countersign_queue_jobs\\{queue="${queue}",state="failed"\\} \\d+`));
  });

  it('approver groups can be Slack user groups: a member approves, in a DM', async () => {
    const req = await ask('page', 'prod/db');
    // The rule names no channel and there is no default: the card goes to the group members' DMs.
    const card = await cardOf(req.requestId, 'D0CAROL');
    await clickAndHear(a, card, 'countersign_approve', 'U0CAROL', /the request is now \*approved\*/);
    assert.equal(await stateOf(req.requestId), 'APPROVED');
    assert.ok(fake.callsOf('usergroups.users.list').length >= 1);
  });
});
