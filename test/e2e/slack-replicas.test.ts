// Issue 14, finding 9: a replica without Slack configuration took Slack
// notification jobs from the shared queue and dropped them ("notification for a
// channel that is not configured; dropped"), and requests made on it were never
// announced in Slack at all. Two replicas of one deployment on one Redis, one
// with Slack (the fake) and one without; requests are made on both and every
// card must arrive, exactly once.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import type { ApprovalRequestView, ApproverChannel } from '@countersign/approvers';
import { ApprovalsClient, CountersignClient } from '@countersign/agent';
import {
  connectRedis,
  eventually,
  FakeSlack,
  startTestBroker,
  testRedis,
  writeBrokerFiles,
  type BrokerFiles,
  type TestRedis,
} from '@countersign/broker/testing';
import { parseConfig, startBroker, type RunningBroker } from '@countersign/broker';
import { capturingLogger } from './support/identity.js';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: prod-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m, notify: { slack_channels: ["#approvals"], direct_messages: false } }
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, slack_user_id: U0ALICE, email: alice@${TD}, spiffe_ids: ["spiffe://${TD}/human/alice"] }
  - { name: bob, slack_user_id: U0BOB, email: bob@${TD} }
`;
const SLACK = `slack:
  bot_token_file: slack-bot-token
  signing_secret_file: slack-signing-secret
  api_url: API_URL
  delivery: { attempts: 8, backoff: 100ms }
`;

describe('Slack with two replicas, one without Slack', () => {
  let r: TestRedis;
  let fake: FakeSlack;
  let files: BrokerFiles;
  let withSlack: RunningBroker;
  let withoutSlack: RunningBroker;
  let withoutSlackLog: Record<string, unknown>[];
  const clients: { close(): void }[] = [];

  before(async () => {
    r = await testRedis('slack-replicas');
    fake = await FakeSlack.start({
      channels: { approvals: 'C0APPROVALS' },
      users: [
        { id: 'U0ALICE', name: 'alice' },
        { id: 'U0BOB', name: 'bob' },
      ],
    });
    files = await writeBrokerFiles({
      trustDomain: TD,
      policy: POLICY,
      principals: PRINCIPALS,
      redisUrl: r.url,
      prefix: r.prefix,
      files: { 'slack-bot-token': fake.botToken, 'slack-signing-secret': fake.signingSecret },
      extraConfig: `${SLACK.replace('API_URL', fake.apiUrl)}requests:\n  sweep_interval: 1s\n`,
    });
    // The same deployment, but this replica's Slack settings are missing (say, the Secret was not mounted).
    const noSlackConfig = files.configText.replace('slack:\n', 'slack:\n  enabled: false\n');
    const captured = capturingLogger();
    withoutSlackLog = captured.lines;
    // The replica without Slack starts first, so that it is already taking jobs when the other one announces Slack.
    withoutSlack = await startBroker(parseConfig(noSlackConfig, files.configFile), {
      logger: captured.logger,
      redis: await connectRedis(r.url),
      auditStdout: null,
      env: {},
    });
    withSlack = await startBroker(parseConfig(files.configText, files.configFile), {
      logger: capturingLogger().logger,
      redis: await connectRedis(r.url),
      auditStdout: null,
      env: {},
    });
    assert.equal(withSlack.slackMode, 'http');
    assert.equal(withoutSlack.slackMode, undefined);
  });
  after(async () => {
    for (const c of clients) c.close();
    await withSlack?.close();
    await withoutSlack?.close();
    withSlack?.redis.disconnect();
    withoutSlack?.redis.disconnect();
    await fake?.close();
    await r?.cleanup();
  });

  const clientOn = (broker: RunningBroker, path: string) => {
    const svid = files.ca.issueSvid(`spiffe://${TD}/${path}`);
    const client = new CountersignClient({
      address: `127.0.0.1:${broker.grpcPort}`,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: files.ca.pem,
    });
    clients.push(client);
    return client;
  };

  it('delivers the card of every request, made on either replica, exactly once; the replica without Slack drops nothing', async () => {
    const ids: string[] = [];
    for (const broker of [
      withoutSlack,
      withSlack,
      withoutSlack,
      withSlack,
      withoutSlack,
      withoutSlack,
      withSlack,
      withoutSlack,
    ]) {
      const r = await clientOn(broker, 'ci/deployer').requestOperation({
        operation: 'deploy',
        resource: `prod/web-${ids.length}`,
        parameters: { n: ids.length },
        reason: 'release',
      });
      assert.equal(r.state, 'PENDING_APPROVAL', r.message);
      ids.push(r.requestId);
    }
    const cards = await fake.waitFor(
      `a card for each of ${ids.length} requests`,
      () => {
        const found = ids.map((id) => fake.posts('C0APPROVALS').filter((m) => m.text.includes(id)).length);
        return found.every((n) => n >= 1) ? found : undefined;
      },
      30_000,
    );
    assert.deepEqual(
      cards,
      ids.map(() => 1),
      'one card per request',
    );

    // A decision made through the replica without Slack updates the card too.
    const alice = files.ca.issueSvid(`spiffe://${TD}/human/alice`);
    const approvals = new ApprovalsClient({
      address: `127.0.0.1:${withoutSlack.grpcPort}`,
      certChainPem: alice.chainPem,
      keyPem: alice.keyPem,
      caPem: files.ca.pem,
    });
    clients.push(approvals);
    await approvals.decide({ requestId: ids[0] as string, decision: 'approve', reason: 'release window' });
    await fake.waitFor('the card of the approved request updated', () =>
      fake
        .callsOf('chat.update')
        .some((c) => JSON.stringify(c.args).includes(ids[0] as string) && /[Aa]pproved/.test(JSON.stringify(c.args))),
    );

    const dropped = withoutSlackLog.filter((l) => /not configured; dropped/.test(String(l.msg)));
    assert.deepEqual(dropped, [], 'the replica without Slack took no Slack work');
  });

  it('shows Slack notifications waiting on every replica, including the one that cannot send them', async () => {
    const depth = await withoutSlack.metrics.render();
    assert.match(depth.body, /countersign_queue_jobs\{queue="notify\.slack",state="waiting"\} \d+/);
  });
});

describe('notifications queued by an earlier version in the shared queue', () => {
  it("are moved to their channel's own queue and delivered, not dropped", async () => {
    const told: string[] = [];
    const recorder: ApproverChannel = {
      name: 'recorder',
      requestCreated: async (r: ApprovalRequestView) => void told.push(`created ${r.id}`),
      voteRecorded: async () => undefined,
      requestResolved: async (r: ApprovalRequestView) => void told.push(`resolved ${r.id}`),
    };
    const t = await startTestBroker({ overrides: { channels: [recorder] } });
    const svid = t.svid('ci/deployer');
    const client = new CountersignClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
    // As a broker before per-channel queues enqueued it: the queue "notify", shared by every channel.
    const connection = t.broker.redis.duplicate();
    const legacy = new Queue('notify', { connection, prefix: `${t.prefix}bull` });
    try {
      const r = await client.requestOperation({
        operation: 'deploy',
        resource: 'prod/web',
        parameters: { version: '1.4.2' },
      });
      await eventually('the new request announced', () => told.includes(`created ${r.requestId}`) || undefined);
      await legacy.add(
        'resolved',
        { requestId: r.requestId, event: 'resolved', channel: 'recorder' },
        { jobId: `${r.requestId}.resolved.recorder` },
      );
      await eventually('the legacy job delivered', () => told.includes(`resolved ${r.requestId}`) || undefined);
    } finally {
      await legacy.close();
      connection.disconnect();
      client.close();
      await t.close();
    }
  });
});
