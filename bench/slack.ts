// Benchmark: a Slack click, end to end on loopback, beside the CLI approver's
// vote measured in the same run. One broker with Slack on (HTTP mode), the Slack
// Web API fake, one pending request per vote, votes one at a time:
//   - baseline: Approvals.Decide over mTLS gRPC, returning once the vote is counted;
//   - Slack ack: a signed POST /slack/events -> the HTTP answer (Slack allows 3 s);
//   - Slack click -> counted: the same POST -> the vote stored in Redis (polled).
// BENCH_SLACK_N changes the number of votes per figure (default 200).
import { ApprovalsClient, CountersignClient } from '@countersign/agent';
import { FakeSlack, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { fmt, table } from './harness.js';

const TD = 'example.org';
const policy = `version: 1
rules:
  - name: prod-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 2, timeout: 1h, notify: { slack_channels: ["C0BENCH"], direct_messages: false } }
`;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

export async function benchSlack(options: { votes: number }): Promise<void> {
  const n = options.votes;
  const fake = await FakeSlack.start({ users: [{ id: 'U0ALICE', name: 'alice' }] });
  let t: TestBroker | undefined;
  try {
    t = await startTestBroker({
      policy,
      files: { 'slack-bot-token': fake.botToken, 'slack-signing-secret': fake.signingSecret },
      extraConfig: `slack:
  bot_token_file: slack-bot-token
  signing_secret_file: slack-signing-secret
  api_url: ${fake.apiUrl}
requests:
  limits: { max_pending_per_workload: ${2 * n + 10}, requests_per_second: 100000, burst: 100000 }
`,
    });
    const svid = t.svid('ci/deployer');
    const connect = { address: t.address, certChainPem: svid.chainPem, keyPem: svid.keyPem, caPem: t.ca.pem };
    const deployer = new CountersignClient(connect);
    const aliceSvid = t.svid('human/alice');
    const alice = new ApprovalsClient({ ...connect, certChainPem: aliceSvid.chainPem, keyPem: aliceSvid.keyPem });
    const workflow = t.broker.approvals.workflow;
    const url = `http://127.0.0.1:${t.broker.httpPort}/slack/events`;
    const pending = async (): Promise<string> =>
      (await deployer.requestOperation({ operation: 'deploy', resource: 'prod/web', parameters: { version: '1' } }))
        .requestId;

    // Baseline: the CLI approver's vote.
    const decide: number[] = [];
    for (let i = 0; i < n; i += 1) {
      const id = await pending();
      const t0 = performance.now();
      await alice.decide({ requestId: id, decision: 'approve' });
      decide.push(performance.now() - t0);
    }

    // The Slack click: cards for n fresh requests, then one click each.
    const ids: string[] = [];
    for (let i = 0; i < n; i += 1) ids.push(await pending());
    await fake.waitFor(
      'the cards',
      () => ids.every((id) => fake.posts('C0BENCH').some((m) => m.text.includes(id))),
      300_000,
    );
    const ack: number[] = [];
    const counted: number[] = [];
    for (const id of ids) {
      const card = fake.posts('C0BENCH').find((m) => m.text.includes(id));
      if (card === undefined) throw new Error(`no card for ${id}`);
      const payload = fake.clickPayload(card, 'countersign_approve', 'U0ALICE');
      const t0 = performance.now();
      const res = await fake.sendInteraction(url, payload);
      ack.push(performance.now() - t0);
      if (res.status !== 200) throw new Error(`click answered ${res.status}`);
      while (((await workflow.get(id))?.votes.length ?? 0) === 0) await new Promise((r) => setImmediate(r));
      counted.push(performance.now() - t0);
    }
    deployer.close();
    alice.close();

    const base = percentile(decide, 50);
    const row = (name: string, v: number[]) => ({
      measure: name,
      p50_ms: fmt(percentile(v, 50), 2),
      p99_ms: fmt(percentile(v, 99), 2),
      'p50 / Decide p50': fmt(percentile(v, 50) / base, 2),
    });
    process.stdout.write(`\nSlack click on loopback: ${n} votes per figure, one at a time (BENCH_SLACK_N to change)\n`);
    process.stdout.write(
      `${table([row('Approvals.Decide (gRPC, baseline)', decide), row('Slack click -> HTTP ack', ack), row('Slack click -> vote counted', counted)])}\n`,
    );
  } finally {
    await t?.close();
    await fake.close();
  }
}
