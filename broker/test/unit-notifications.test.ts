// Notification jobs (requests/workers.ts: notificationProcessor, notificationFailed)
// on fakes: what the channel is told for each event, notification_sent recorded
// only after the channel took it, a channel's Retry-After honoured exactly, other
// errors handed to BullMQ's retries with backoff, and the last attempt logged as
// given up. BullMQ itself is played by a small loop with its attempt semantics;
// the e2e counterparts are approvals-faults.test.ts and slack-approvals.test.ts.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type { ApprovalRequestView, ApproverChannel, BreakGlassNotice, VoteView } from '@countersign/approvers';
import { DelayedError } from 'bullmq';
import pino from 'pino';
import type { NotifyJobData } from '../src/requests/jobs.js';
import { notificationFailed, notificationProcessor, type NotifyJob } from '../src/requests/workers.js';
import { approvalsHarness, type Harness } from './support/approvals-harness.js';

class FakeChannel implements ApproverChannel {
  readonly name = 'slack';
  readonly calls: string[] = [];
  /** Errors to throw on the next calls, in order. */
  readonly failures: Error[] = [];

  private async call(what: string): Promise<void> {
    await Promise.resolve();
    const failure = this.failures.shift();
    if (failure !== undefined) throw failure;
    this.calls.push(what);
  }
  requestCreated(r: ApprovalRequestView) {
    return this.call(`created ${r.id} ${r.state}`);
  }
  voteRecorded(r: ApprovalRequestView, v: VoteView) {
    return this.call(`vote ${r.id} ${v.principal} ${v.decision}`);
  }
  requestResolved(r: ApprovalRequestView) {
    return this.call(`resolved ${r.id} ${r.state}`);
  }
}

class FakeJob implements NotifyJob {
  attemptsMade = 0;
  delayedUntil: number | undefined;
  constructor(
    readonly data: NotifyJobData,
    readonly id = [data.requestId, data.event, ...(data.principal ? [data.principal] : []), data.channel].join('.'),
    readonly opts = { attempts: 3 },
  ) {}
  moveToDelayed(timestamp: number): Promise<void> {
    this.delayedUntil = timestamp;
    return Promise.resolve();
  }
}

/** Log lines, as objects. */
function capturingLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as (typeof lines)[number]);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

async function setup() {
  const h = await approvalsHarness();
  const channel = new FakeChannel();
  const { logger, lines } = capturingLogger();
  const NOW = 1_000_000;
  const process = notificationProcessor(channel, { workflow: h.workflow, audit: h.audit, logger, now: () => NOW });
  const failed = notificationFailed({ metrics: h.metrics, logger });
  /** What BullMQ does with a job: run it until it completes, is delayed, or runs out of attempts. */
  async function runLikeBullMQ(job: FakeJob): Promise<'completed' | 'delayed' | 'failed'> {
    while (job.attemptsMade < job.opts.attempts) {
      try {
        await process(job, 'lock-token');
        return 'completed';
      } catch (e) {
        if (e instanceof DelayedError) return 'delayed';
        job.attemptsMade++;
        failed(job, e as Error);
      }
    }
    return 'failed';
  }
  const sent = (h: Harness) => h.audit.events.filter((e) => e.type === 'notification_sent');
  return { h, channel, lines, NOW, process, runLikeBullMQ, sent: () => sent(h) };
}

describe('notification jobs (unit, fakes)', () => {
  it('tells the channel about each event of a request, then records notification_sent', async () => {
    const t = await setup();
    const r = await t.h.create();
    await t.h.vote(r, 'alice', 'approve');
    for (const [event, principal] of [['created'], ['vote', 'alice'], ['resolved']] as const) {
      const job = new FakeJob({ requestId: r.id, event, channel: 'slack', ...(principal ? { principal } : {}) });
      assert.equal(await t.runLikeBullMQ(job), 'completed');
    }
    // The view is read when the job runs: a late "created" shows the request as it is now.
    assert.deepEqual(t.channel.calls, [
      `created ${r.id} APPROVED`,
      `vote ${r.id} alice approve`,
      `resolved ${r.id} APPROVED`,
    ]);
    assert.deepEqual(
      t.sent().map((e) => [e.event, e.principal, e.channel, e.job_id]),
      [
        ['created', undefined, 'slack', `${r.id}.created.slack`],
        ['vote', 'alice', 'slack', `${r.id}.vote.alice.slack`],
        ['resolved', undefined, 'slack', `${r.id}.resolved.slack`],
      ],
    );
  });

  it('does nothing, and records nothing, for a request or vote that is not there', async () => {
    const t = await setup();
    const r = await t.h.create();
    assert.equal(
      await t.runLikeBullMQ(new FakeJob({ requestId: 'req_gone', event: 'created', channel: 'slack' })),
      'completed',
    );
    assert.equal(
      await t.runLikeBullMQ(new FakeJob({ requestId: r.id, event: 'vote', principal: 'bob', channel: 'slack' })),
      'completed',
    );
    assert.deepEqual(t.channel.calls, []);
    assert.deepEqual(t.sent(), []);
  });

  it("waits exactly the channel's Retry-After, without spending an attempt", async () => {
    const t = await setup();
    const r = await t.h.create();
    t.channel.failures.push(Object.assign(new Error('429 rate limited'), { retryAfterMs: 1500 }));
    const job = new FakeJob({ requestId: r.id, event: 'created', channel: 'slack' });
    assert.equal(await t.runLikeBullMQ(job), 'delayed');
    assert.equal(job.delayedUntil, t.NOW + 1500);
    assert.equal(job.attemptsMade, 0);
    assert.deepEqual(t.sent(), []);
    assert.equal(await t.runLikeBullMQ(job), 'completed', 'then it runs again');
    assert.equal(t.sent().length, 1);
  });

  it('retries a failing channel, logging each failure, and succeeds within the attempts', async () => {
    const t = await setup();
    const r = await t.h.create();
    t.channel.failures.push(new Error('slack 500'), new Error('slack 502'));
    const job = new FakeJob({ requestId: r.id, event: 'created', channel: 'slack' });
    assert.equal(await t.runLikeBullMQ(job), 'completed');
    assert.equal(job.attemptsMade, 2);
    assert.deepEqual(
      t.lines.map((l) => [l.level, l.msg, l.attempt]),
      [
        [40, 'notification failed; will retry', 1],
        [40, 'notification failed; will retry', 2],
      ],
    );
    assert.equal(t.sent().length, 1, 'recorded once, after the channel took it');
    assert.equal((await t.h.metrics.notificationFailures.get()).values[0]?.value, 2);
  });

  it('gives up after the last attempt, says so as an error, and records no notification_sent', async () => {
    const t = await setup();
    const r = await t.h.create();
    t.channel.failures.push(new Error('a'), new Error('b'), new Error('c'), new Error('never reached'));
    const job = new FakeJob({ requestId: r.id, event: 'created', channel: 'slack' });
    assert.equal(await t.runLikeBullMQ(job), 'failed');
    assert.deepEqual(
      t.lines.map((l) => [l.level, l.msg, l.attempt, l.requestId, l.event]),
      [
        [40, 'notification failed; will retry', 1, r.id, 'created'],
        [40, 'notification failed; will retry', 2, r.id, 'created'],
        [50, 'notification failed for good', 3, r.id, 'created'],
      ],
    );
    assert.deepEqual(t.sent(), []);
    assert.equal(t.channel.failures.length, 1, 'no fourth attempt');
  });

  it('retries when notification_sent cannot be recorded (the channel may be told twice: at least once)', async () => {
    const t = await setup();
    const r = await t.h.create();
    t.h.audit.faults.fail('audit append');
    const job = new FakeJob({ requestId: r.id, event: 'created', channel: 'slack' });
    assert.equal(await t.runLikeBullMQ(job), 'completed');
    assert.deepEqual(t.channel.calls, [`created ${r.id} PENDING_APPROVAL`, `created ${r.id} PENDING_APPROVAL`]);
    assert.equal(t.sent().length, 1);
  });

  it('announces break-glass uses on channels that can, and only logs it on those that cannot', async () => {
    const t = await setup();
    const notice = { requestId: 'req_glass', rule: 'glass', reason: 'site down' } as BreakGlassNotice;
    const job = new FakeJob({ requestId: 'req_glass', event: 'break_glass', channel: 'slack', notice });
    assert.equal(await t.runLikeBullMQ(job), 'completed');
    assert.deepEqual(t.sent(), []);
    assert.equal(t.lines[0]?.msg, 'this channel cannot announce break-glass uses; not announced there');

    const announced: BreakGlassNotice[] = [];
    const able = Object.assign(new FakeChannel(), {
      breakGlassUsed: (n: BreakGlassNotice) => Promise.resolve(void announced.push(n)),
    });
    const run = notificationProcessor(able, {
      workflow: t.h.workflow,
      audit: t.h.audit,
      logger: pino({ level: 'silent' }),
    });
    await run(new FakeJob({ requestId: 'req_glass', event: 'break_glass', channel: 'slack', notice }));
    assert.deepEqual(announced, [notice]);
    assert.deepEqual(
      t.sent().map((e) => [e.request_id, e.event]),
      [['req_glass', 'break_glass']],
    );
  });
});
