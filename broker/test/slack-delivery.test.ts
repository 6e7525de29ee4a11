// The Slack channel's delivery against the Slack Web API fake, with real Redis
// and real BullMQ: cards posted once despite 429s and 500s, updated on every vote
// and end state, thread replies, DMs, user groups cached with a TTL.
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import type { ApprovalRequestView, ApprovalWorkflow } from '@countersign/approvers';
import { createSlackApprover, type SlackApprover, type SlackSettings } from '@countersign/approvers/slack';
import { FakeSlack, sampleRequest } from '@countersign/approvers/testing';
import { silentLogger } from '../src/observability/logger.js';
import { devPrincipals } from '../src/dev/trust-domain.js';
import { Principals } from '../src/policy/principals.js';
import { connectRedis, type Redis } from '../src/redis/connection.js';
import { Keys } from '../src/redis/keys.js';
import { testRedis, type TestRedis } from './support/redis.js';

/** Request views by id, as a workflow would serve them; tests change them to play votes and ends. */
class ViewTable implements ApprovalWorkflow {
  readonly views = new Map<string, ApprovalRequestView>();
  async get(id: string) {
    return this.views.get(id);
  }
  async listPendingFor() {
    return [];
  }
  async vote(): Promise<never> {
    throw new Error('this test casts no votes');
  }
}

const at = Date.UTC(2026, 0, 1, 12, 1);
const vote = (principal: string, decision: 'approve' | 'deny' = 'approve', reason = '') => ({
  principal,
  decision,
  channel: 'slack',
  at,
  stepUp: 'click' as const,
  reason,
});

describe('Slack delivery (fake Slack, real Redis, real BullMQ)', () => {
  let r: TestRedis;
  let bull: Redis;
  let fake: FakeSlack;
  let views: ViewTable;
  let slack: SlackApprover;
  let counter = 0;

  const settings = (): SlackSettings => ({
    mode: 'http',
    botToken: fake.botToken,
    signingSecret: fake.signingSecret,
    appToken: undefined,
    apiUrl: fake.apiUrl,
    defaultChannel: undefined,
    matchByEmail: false,
    usergroupCacheTtlMs: 60_000,
    teamId: undefined,
    attempts: 5,
    backoffMs: 50,
  });

  const start = async (
    overrides: Partial<SlackSettings> = {},
    principals = Principals.parse(devPrincipals('example.org'), 'principals.yaml'),
  ) => {
    const approver = createSlackApprover({
      settings: { ...settings(), ...overrides },
      workflow: views,
      directory: principals,
      redis: r.redis,
      connection: bull,
      keys: new Keys(r.prefix),
      audit: { append: async () => undefined },
      clock: { now: () => Date.now() },
      logger: silentLogger(),
    });
    await approver.start();
    return approver;
  };

  const request = (overrides: Partial<ApprovalRequestView> = {}) => {
    counter += 1;
    const view = sampleRequest({ id: `req_delivery${counter}`, ...overrides });
    views.views.set(view.id, view);
    return view;
  };
  const change = (id: string, changes: Partial<ApprovalRequestView>) => {
    const next = { ...(views.views.get(id) as ApprovalRequestView), ...changes };
    views.views.set(id, next);
    return next;
  };
  /** Waits until no Slack job is waiting, delayed or running: nothing more will be sent. */
  const drained = async (approver: SlackApprover) => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const c = await approver.delivery.queue.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
      if (Object.values(c).every((n) => n === 0)) return;
      if (Date.now() > deadline) throw new Error(`Slack queue did not drain: ${JSON.stringify(c)}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  };

  before(async () => {
    r = await testRedis('slack');
    bull = await connectRedis(r.url, { forBullmq: true, connectionName: 'countersign-test-bull' });
  });
  after(async () => {
    bull.disconnect();
    await r.cleanup();
  });
  beforeEach(async () => {
    fake = await FakeSlack.start({
      channels: { approvals: 'C0APPROVALS' },
      users: [
        { id: 'U0ALICE', name: 'alice', email: 'alice@example.org' },
        { id: 'U0BOB', name: 'bob', email: 'bob@example.org' },
        { id: 'U0CAROL', name: 'carol', email: 'carol@example.org' },
      ],
      usergroups: { S0OPS: ['U0ALICE', 'U0BOB', 'U0STRANGER'] },
    });
    views = new ViewTable();
    slack = await start();
  });
  afterEach(async () => {
    await slack.close();
    await fake.close();
  });

  it('posts the card once when Slack first answers 429, waiting the Retry-After it asked for', async () => {
    fake.failNext('chat.postMessage', { status: 429, retryAfterSeconds: 1 }, 2);
    const view = request();
    await slack.channel.requestCreated(view);
    await fake.waitFor('the card', () => fake.posts('C0APPROVALS').length === 1);
    await drained(slack);
    assert.equal(fake.posts('C0APPROVALS').length, 1);
    const calls = fake.callsOf('chat.postMessage');
    assert.deepEqual(
      calls.map((c) => c.status),
      [429, 429, 200],
    );
    // Retry-After is honoured: each retry comes at least a second after the 429 (minus the fake's whole-second clock).
    assert.ok(
      (calls[1]?.at ?? 0) - (calls[0]?.at ?? 0) >= 900,
      `${(calls[1]?.at ?? 0) - (calls[0]?.at ?? 0)} ms between 429 and retry`,
    );
    assert.ok((calls[2]?.at ?? 0) - (calls[1]?.at ?? 0) >= 900);
    const card = fake.posts('C0APPROVALS')[0];
    assert.match(card?.text ?? '', new RegExp(view.id));
  });

  it('rides out a Slack outage (HTTP 500s) and still posts exactly one card', async () => {
    fake.failNext('chat.postMessage', { status: 500 }, 3);
    const view = request();
    await slack.channel.requestCreated(view);
    await fake.waitFor('the card', () => fake.posts('C0APPROVALS').length === 1);
    await drained(slack);
    assert.equal(fake.posts('C0APPROVALS').length, 1);
    assert.equal(fake.callsOf('chat.postMessage').length, 4);
  });

  it('does not retry what cannot succeed (channel_not_found)', async () => {
    const view = request({ notify: { slackChannels: ['C0GONE'], directMessages: false } });
    fake.failNext('chat.postMessage', { error: 'channel_not_found' }, 10);
    await slack.channel.requestCreated(view);
    await fake.waitFor('the job to fail', async () => (await slack.delivery.queue.getJobCounts('failed')).failed === 1);
    await drained(slack);
    assert.equal(fake.callsOf('chat.postMessage').length, 1);
    assert.equal(fake.posts().length, 0);
  });

  it('updates the card on each vote, replies in its thread, and removes the buttons at the end', async () => {
    const view = request({ onBehalfOf: 'bob' });
    await slack.channel.requestCreated(view);
    const card = await fake.waitFor('the card', () => fake.posts('C0APPROVALS')[0]);
    assert.ok(card.blocks.some((b) => b.type === 'actions'));

    const afterAlice = change(view.id, { votes: [vote('alice')] });
    await slack.channel.voteRecorded(afterAlice, afterAlice.votes[0]!);
    await fake.waitFor('the thread reply', () =>
      fake.replies(card.channel, card.ts).find((m) => m.text.includes('*alice*')),
    );
    await fake.waitFor('the updated card', () => /1 of 2 given/.test(JSON.stringify(card.blocks)));

    const expired = change(view.id, { state: 'EXPIRED', resolvedAt: view.expiresAt });
    await slack.channel.requestResolved(expired);
    await fake.waitFor('the expired card', () => /Expired/.test(JSON.stringify(card.blocks)));
    await drained(slack);
    assert.ok(!card.blocks.some((b) => b.type === 'actions'), 'no buttons on an ended card');
    assert.match(JSON.stringify(card.blocks), /with 1 of 2 approval/);
    const replies = fake.replies(card.channel, card.ts).map((m) => m.text);
    assert.equal(replies.length, 2);
    assert.match(replies[1] ?? '', /Expired/);
    // The human the workload acted for hears the outcome in a DM.
    const notice = fake.posts('D0BOB');
    assert.equal(notice.length, 1);
    assert.match(notice[0]?.text ?? '', /Expired/);
    assert.equal(fake.posts('C0APPROVALS').length, 1, 'updates never post a second card');
  });

  it('sends approvers the card in a DM when the rule names no channel, but never the requester or the human it acts for', async () => {
    const view = request({ notify: { slackChannels: [], directMessages: false }, onBehalfOf: 'bob' });
    await slack.channel.requestCreated(view);
    await fake.waitFor('the DM to alice', () => fake.posts('D0ALICE').length === 1);
    await drained(slack);
    assert.equal(fake.posts('D0BOB').length, 0);
    assert.equal(fake.posts().length, 1);
  });

  it('caches Slack user group members for the TTL, and fails closed when Slack cannot answer', async () => {
    await slack.close();
    slack = await start({ usergroupCacheTtlMs: 300 });
    assert.deepEqual(await slack.usergroupMembers('S0OPS'), ['U0ALICE', 'U0BOB', 'U0STRANGER']);
    assert.deepEqual(await slack.usergroupMembers('S0OPS'), ['U0ALICE', 'U0BOB', 'U0STRANGER']);
    assert.equal(fake.callsOf('usergroups.users.list').length, 1);
    fake.setUsergroup('S0OPS', ['U0BOB']);
    await fake.waitFor(
      'the cache to expire',
      async () => (await r.redis.exists(new Keys(r.prefix).slackUsergroup('S0OPS'))) === 0 || undefined,
    );
    assert.deepEqual(await slack.usergroupMembers('S0OPS'), ['U0BOB']);
    fake.failNext('usergroups.users.list', { status: 500 });
    await assert.rejects(slack.usergroupMembers('S0NEW'), { code: 'ERR_SLACK_USERGROUP_UNAVAILABLE' });
  });
});
