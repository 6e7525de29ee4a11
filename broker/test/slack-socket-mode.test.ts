// Socket Mode: the broker opens a WebSocket to Slack (here the fake) and gets
// interactions over it instead of HTTP; acknowledgements, modals and their
// inline errors travel back over the same socket.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ApprovalRequestView, ApprovalWorkflow, VoteInput, VoteOutcome } from '@countersign/approvers';
import { createSlackApprover, type SlackApprover } from '@countersign/approvers/slack';
import { FakeSlack, sampleRequest } from '@countersign/approvers/testing';
import { devPrincipals } from '../src/dev/trust-domain.js';
import { silentLogger } from '../src/observability/logger.js';
import { Principals } from '../src/policy/principals.js';
import { connectRedis, type Redis } from '../src/redis/connection.js';
import { Keys } from '../src/redis/keys.js';
import { testRedis, type TestRedis } from './support/redis.js';

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
    return { counted: true, request: this.view };
  }
}

describe('Slack Socket Mode', () => {
  let r: TestRedis;
  let bull: Redis;
  let fake: FakeSlack;
  let slack: SlackApprover;
  let workflow: RecordingWorkflow;
  const view = sampleRequest({ id: 'req_socketmode001', stepUp: 'confirm', expiresAt: Date.now() + 3600_000 });

  before(async () => {
    r = await testRedis('slack-socket');
    bull = await connectRedis(r.url, { forBullmq: true });
    fake = await FakeSlack.start({ users: [{ id: 'U0ALICE', name: 'alice' }] });
    workflow = new RecordingWorkflow(view);
    slack = createSlackApprover({
      settings: {
        mode: 'socket',
        botToken: fake.botToken,
        signingSecret: undefined,
        appToken: fake.appToken,
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
      audit: { append: async () => undefined },
      clock: { now: () => Date.now() },
      logger: silentLogger(),
    });
    await slack.start();
    assert.equal(slack.httpHandler, undefined, 'no HTTP route in Socket Mode');
    await slack.channel.requestCreated(view);
    await fake.waitFor('the card', () => fake.posts('C0APPROVALS')[0]);
  });
  after(async () => {
    await slack?.close();
    await fake?.close();
    bull?.disconnect();
    await r?.cleanup();
  });

  it('connects with the app-level token and takes a step-up approval over the socket', async () => {
    assert.equal(fake.sockets.length, 1);
    assert.equal(fake.callsOf('apps.connections.open')[0]?.ok, true);
    const card = fake.posts('C0APPROVALS')[0]!;
    const click = fake.clickPayload(card, 'countersign_approve', 'U0ALICE');
    const ack = await fake.sendOverSocket(click);
    assert.deepEqual(ack.payload ?? {}, {}, 'a plain acknowledgement');
    const modal = await fake.waitFor('the confirm modal', () => fake.views[0]);
    assert.equal(modal.user, 'U0ALICE');
    assert.equal(workflow.votes.length, 0, 'a click opens the form; it votes nothing');

    const wrong = await fake.sendOverSocket(fake.submitPayload(modal, { resource: 'prod/payment', reason: 'ok' }));
    assert.deepEqual(wrong.payload, {
      response_action: 'errors',
      errors: { resource: 'That is not the resource of this request. Type exactly: prod/payments' },
    });
    assert.equal(workflow.votes.length, 0);

    const right = await fake.sendOverSocket(
      fake.submitPayload(modal, { resource: 'prod/payments', reason: 'checked the diff' }),
    );
    assert.deepEqual(right.payload ?? {}, {}, 'the modal closes');
    await fake.waitFor('the vote', () => workflow.votes.length === 1);
    const v = workflow.votes[0]!;
    assert.deepEqual(
      [v.principal, v.decision, v.stepUp, v.confirmedResource, v.reason, v.channel],
      ['alice', 'approve', 'confirm', 'prod/payments', 'checked the diff', 'slack'],
    );
    assert.equal(v.deliveryId, `slack.view.${modal.id}`);
  });
});
