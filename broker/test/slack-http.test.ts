// Slack's requests reach the broker's own HTTP listener at /slack/events. Only
// requests signed with the signing secret and less than five minutes old get
// past it; anything else is a 401 and changes nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ApprovalRequestView, ApprovalWorkflow, VoteInput, VoteOutcome } from '@countersign/approvers';
import { createSlackApprover, SLACK_EVENTS_PATH, type SlackApprover } from '@countersign/approvers/slack';
import { FakeSlack, sampleRequest } from '@countersign/approvers/testing';
import { startHttpServer, type RunningHttpServer } from '../src/api/http-server.js';
import { devPrincipals } from '../src/dev/trust-domain.js';
import { silentLogger } from '../src/observability/logger.js';
import { Principals } from '../src/policy/principals.js';
import { connectRedis, type Redis } from '../src/redis/connection.js';
import { Keys } from '../src/redis/keys.js';
import { testRedis, type TestRedis } from './support/redis.js';

/** Records what it is asked; these tests are about what reaches the workflow, not what it decides. */
class RecordingWorkflow implements ApprovalWorkflow {
  readonly votes: VoteInput[] = [];
  constructor(private readonly view: ApprovalRequestView) {}
  async get(id: string) {
    return id === this.view.id ? this.view : undefined;
  }
  async listPendingFor() {
    return [];
  }
  async vote(input: VoteInput): Promise<VoteOutcome> {
    this.votes.push(input);
    return {
      counted: true,
      request: {
        ...this.view,
        votes: [
          {
            principal: input.principal,
            decision: input.decision,
            channel: input.channel,
            at: 0,
            stepUp: input.stepUp,
            reason: input.reason,
          },
        ],
      },
    };
  }
}

describe('Slack requests on the broker HTTP listener', () => {
  let r: TestRedis;
  let bull: Redis;
  let fake: FakeSlack;
  let slack: SlackApprover;
  let http: RunningHttpServer;
  let workflow: RecordingWorkflow;
  let url: string;
  const audit: Record<string, unknown>[] = [];
  const refused: string[] = [];
  const view = sampleRequest({
    id: 'req_httptest0001',
    notify: { slackChannels: ['C0APPROVALS'], directMessages: false },
    expiresAt: Date.now() + 3600_000,
  });

  before(async () => {
    r = await testRedis('slack-http');
    bull = await connectRedis(r.url, { forBullmq: true });
    fake = await FakeSlack.start({
      users: [
        { id: 'U0ALICE', name: 'alice' },
        { id: 'U0MALLORY', name: 'mallory' },
      ],
    });
    workflow = new RecordingWorkflow(view);
    slack = createSlackApprover({
      settings: {
        mode: 'http',
        botToken: fake.botToken,
        signingSecret: fake.signingSecret,
        appToken: undefined,
        apiUrl: fake.apiUrl,
        defaultChannel: undefined,
        matchByEmail: false,
        usergroupCacheTtlMs: 60_000,
        teamId: undefined,
        attempts: 3,
        backoffMs: 50,
      },
      workflow,
      directory: Principals.parse(devPrincipals('example.org'), 'principals.yaml'),
      redis: r.redis,
      connection: bull,
      keys: new Keys(r.prefix),
      audit: { append: async (e) => void audit.push(e) },
      clock: { now: () => Date.now() },
      logger: silentLogger(),
      onRefusedRequest: (code) => refused.push(code),
    });
    await slack.start();
    http = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      logger: silentLogger(),
      jwks: () => ({ keys: [] }),
      readiness: [],
      routes: { [SLACK_EVENTS_PATH]: slack.httpHandler! },
    });
    url = `http://127.0.0.1:${http.port}${SLACK_EVENTS_PATH}`;
    await slack.channel.requestCreated(view);
    await fake.waitFor('the card', () => fake.posts('C0APPROVALS')[0]);
  });
  after(async () => {
    await http?.close();
    await slack?.close();
    await fake?.close();
    bull?.disconnect();
    await r?.cleanup();
  });

  const card = () => fake.posts('C0APPROVALS')[0]!;
  const nothingRecorded = () => {
    assert.equal(workflow.votes.length, 0, 'no vote reached the workflow');
    assert.equal(fake.ephemerals.length, 0, 'no answer was sent');
    assert.equal(fake.views.length, 0, 'no modal was opened');
    assert.equal(audit.filter((e) => e.type === 'vote_refused').length, 0);
  };

  it('refuses a forged signature with 401 and records nothing', async () => {
    const res = await fake.click(url, card(), 'countersign_approve', 'U0ALICE', {
      secret: 'not-the-signing-secret-0123456789',
    });
    assert.equal(res.status, 401);
    assert.deepEqual(res.json, {
      code: 'ERR_SLACK_SIGNATURE_INVALID',
      error: 'X-Slack-Signature does not match the body signed with the signing secret',
    });
    nothingRecorded();
  });

  it('refuses a correctly signed request older than five minutes with 401 and records nothing', async () => {
    const res = await fake.click(url, card(), 'countersign_approve', 'U0ALICE', {
      timestampMs: Date.now() - 6 * 60_000,
    });
    assert.equal(res.status, 401);
    assert.equal((res.json as { code: string }).code, 'ERR_SLACK_TIMESTAMP_STALE');
    nothingRecorded();
  });

  it('refuses unsigned, oversized and non-POST requests', async () => {
    assert.equal((await fake.click(url, card(), 'countersign_approve', 'U0ALICE', { unsigned: true })).status, 401);
    const big = await fake.send(url, `payload=${'x'.repeat(1024 * 1024 + 1)}`, 'application/x-www-form-urlencoded');
    assert.equal(big.status, 413);
    assert.equal((await fetch(url)).status, 405);
    nothingRecorded();
    assert.deepEqual(refused, [
      'ERR_SLACK_SIGNATURE_INVALID',
      'ERR_SLACK_TIMESTAMP_STALE',
      'ERR_SLACK_SIGNATURE_MISSING',
      'ERR_SLACK_BODY_TOO_LARGE',
      'ERR_SLACK_METHOD',
    ]);
  });

  it('answers a signed but malformed payload with 400, and a URL verification with its challenge', async () => {
    const bad = await fake.send(url, 'payload=%7Bnot-json', 'application/x-www-form-urlencoded');
    assert.equal(bad.status, 400);
    assert.equal((bad.json as { code: string }).code, 'ERR_SLACK_PAYLOAD_INVALID');
    const challenge = await fake.send(
      url,
      JSON.stringify({ type: 'url_verification', challenge: 'abc123', token: 't' }),
      'application/json',
    );
    assert.deepEqual(challenge.json, { challenge: 'abc123' });
    nothingRecorded();
  });

  it('refuses, audits and answers privately a click by someone Countersign does not know', async () => {
    const res = await fake.click(url, card(), 'countersign_approve', 'U0MALLORY');
    assert.equal(res.status, 200);
    const answer = await fake.waitFor('the ephemeral answer', () =>
      fake.ephemerals.find((e) => e.user === 'U0MALLORY'),
    );
    assert.equal(answer.channel, 'C0APPROVALS');
    assert.match(answer.text, /U0MALLORY is not in Countersign's principals file/);
    assert.equal(workflow.votes.length, 0);
    assert.deepEqual(
      audit.filter((e) => e.type === 'vote_refused').map((e) => [e.code, e.principal, e.slack_user, e.request_id]),
      [['ERR_SLACK_UNKNOWN_USER', 'slack:U0MALLORY', 'U0MALLORY', view.id]],
    );
  });

  it("hands a known approver's click to the workflow, once per delivery, and tells them the result", async () => {
    const payload = fake.clickPayload(card(), 'countersign_approve', 'U0ALICE');
    assert.equal((await fake.sendInteraction(url, payload)).status, 200);
    const answer = await fake.waitFor('the ephemeral answer', () => fake.ephemerals.find((e) => e.user === 'U0ALICE'));
    assert.match(answer.text, /Your approval of `deploy` on `prod\/payments` is recorded: 1 of 2/);
    assert.equal(workflow.votes.length, 1);
    const v = workflow.votes[0]!;
    assert.deepEqual(
      { requestId: v.requestId, principal: v.principal, channel: v.channel, decision: v.decision, stepUp: v.stepUp },
      { requestId: view.id, principal: 'alice', channel: 'slack', decision: 'approve', stepUp: 'click' },
    );
    assert.equal(v.deliveryId, `slack.action.${payload.trigger_id as string}`);
    // Slack delivering the same interaction again: the same delivery id, and no second answer.
    const queued: string[] = [];
    const ephemeral = slack.delivery.ephemeral.bind(slack.delivery);
    slack.delivery.ephemeral = async (channel, user, text, dedupKey) => {
      await ephemeral(channel, user, text, dedupKey);
      queued.push(dedupKey);
    };
    assert.equal((await fake.sendInteraction(url, payload)).status, 200);
    await fake.waitFor('the second delivery to be answered', () => queued.includes(v.deliveryId as string));
    assert.equal(workflow.votes[1]?.deliveryId, v.deliveryId);
    await fake.waitFor('the Slack queue to drain', async () =>
      Object.values(await slack.delivery.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized')).every(
        (n) => n === 0,
      ),
    );
    assert.equal(fake.ephemerals.filter((e) => e.user === 'U0ALICE').length, 1);
  });
});
