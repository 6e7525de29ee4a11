// Every Slack Web API call the channel makes (except views.open, whose trigger
// expires in 3 s) runs as a BullMQ job: it survives a crash, is retried with
// capped exponential backoff, and a 429 pauses the whole queue, on every
// replica, for exactly the Retry-After Slack asked for. Jobs carry ids only and
// render from the request's current state, so a late job shows the truth.
import { createHash } from 'node:crypto';
import { Queue, UnrecoverableError, Worker, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { ApprovalRequestView, ApprovalWorkflow, BreakGlassNotice } from '../port.js';
import {
  buildBreakGlassNotice,
  buildOutcomeNotice,
  buildRequestCard,
  buildVoteReply,
  type SlackMessage,
} from './card.js';
import type { AuditSink } from './audit-sink.js';
import type { SlackKeys } from './keys.js';
import type { SlackLogger } from './logger.js';
import type { MessageRef, MessageRefs } from './message-refs.js';
import { targetChannel, targetKey, type Target } from './targets.js';
import { classifySlackError, type WebClient } from './web-api.js';

export const SLACK_QUEUE = 'slack';
const MAX_BACKOFF_MS = 5 * 60_000;

export type SlackJobData =
  /** Post the card at a target, or update it there if it was posted before. */
  | { kind: 'card'; requestId: string; target: Target }
  /** A reply in the card's thread: a vote ("vote.<principal>") or the end ("end"). */
  | { kind: 'reply'; requestId: string; target: Target; about: string }
  /** The announcement of a break-glass use at one target; the notice travels in the job (nothing is stored). */
  | { kind: 'break_glass'; notice: BreakGlassNotice; target: Target }
  /** A direct message telling someone (the human an agent acted for) the outcome. */
  | { kind: 'notice'; requestId: string; user: string }
  /** An answer only `user` sees, next to the card (`channel`), or in a DM when the channel is unknown. */
  | { kind: 'ephemeral'; channel: string | undefined; user: string; text: string };

export interface DeliverySettings {
  attempts: number;
  backoffMs: number;
  concurrency?: number;
  /** Most Slack calls per second across all replicas (Slack's own limits are per method; 429s pause the queue). */
  callsPerSecond?: number;
}

/** The card's thread is not known yet (the post is still being retried): retry the reply later. */
class CardNotPostedYet extends Error {
  override readonly name = 'CardNotPostedYet';
}

const hash = (text: string): string => createHash('sha256').update(text).digest('base64url').slice(0, 16);
/** BullMQ job ids may not contain ":"; request ids and hashes never do. */
const jobId = (...parts: string[]): string => parts.join('.');

/** What a card shows that can change: its state and votes. */
export const cardFingerprint = (r: ApprovalRequestView): string =>
  `${r.state}|${r.resolvedAt ?? ''}|${r.votes.map((v) => `${v.principal}:${v.decision}`).join(',')}`;

export class SlackDelivery {
  readonly queue: Queue<SlackJobData>;
  private worker: Worker<SlackJobData> | undefined;

  constructor(
    private readonly deps: {
      connection: Redis;
      keys: SlackKeys;
      client: WebClient;
      workflow: ApprovalWorkflow;
      refs: MessageRefs;
      logger: SlackLogger;
      /** Records where each card was posted (notification_sent). */
      audit?: AuditSink;
      /** Called for each failed Slack call: rate_limited, transient (retried) or permanent (given up). */
      onCallFailure?: (kind: 'rate_limited' | 'transient' | 'permanent') => void;
    },
    private readonly settings: DeliverySettings,
  ) {
    this.queue = new Queue<SlackJobData>(SLACK_QUEUE, {
      connection: deps.connection,
      prefix: deps.keys.bullmqPrefix(),
      streams: { events: { maxLen: 1000 } },
      defaultJobOptions: {
        attempts: settings.attempts,
        backoff: { type: 'capped' },
        // Kept a day so that enqueueing the same job id again is a no-op.
        removeOnComplete: { age: 24 * 3600 },
        removeOnFail: { age: 7 * 24 * 3600 },
      },
    });
  }

  /** Starts processing jobs in this process (every replica may). */
  start(): void {
    if (this.worker !== undefined) return;
    const { connection, keys, logger } = this.deps;
    const base = this.settings.backoffMs;
    this.worker = new Worker<SlackJobData>(SLACK_QUEUE, (job) => this.process(job), {
      connection,
      prefix: keys.bullmqPrefix(),
      concurrency: this.settings.concurrency ?? 4,
      limiter: { max: this.settings.callsPerSecond ?? 10, duration: 1000 },
      settings: {
        backoffStrategy: (attemptsMade: number) =>
          Math.round(Math.min(base * 2 ** Math.max(0, attemptsMade - 1), MAX_BACKOFF_MS) * (0.8 + 0.4 * Math.random())),
      },
    });
    this.worker.on('failed', (job, err) => {
      if (job === undefined) return;
      const final =
        err instanceof UnrecoverableError ||
        err.name === 'UnrecoverableError' ||
        job.attemptsMade >= (job.opts.attempts ?? 1);
      logger[final ? 'error' : 'warn'](
        {
          job: job.name,
          requestId: 'requestId' in job.data ? job.data.requestId : undefined,
          attempt: job.attemptsMade,
          err: err.message,
        },
        final ? 'Slack call failed for good' : 'Slack call failed; will retry',
      );
    });
    this.worker.on('error', (err) => logger.warn({ err: err.message }, 'Slack queue worker error (retrying)'));
  }

  /** Jobs in the Slack queue per state, for the queue depth metric. */
  async depth(): Promise<{ queue: string; state: string; count: number }[]> {
    const states = ['waiting', 'active', 'delayed', 'failed'] as const;
    const counts = await this.queue.getJobCounts(...states);
    return states.map((state) => ({ queue: SLACK_QUEUE, state, count: counts[state] ?? 0 }));
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.queue.close();
  }

  // ---- enqueueing ----

  private add(name: string, data: SlackJobData, opts: JobsOptions): Promise<unknown> {
    return this.queue.add(name, data, opts);
  }

  /** Posts or updates the card at each target; `why` makes the job distinct per event. */
  async cards(requestId: string, targets: Target[], why: string): Promise<void> {
    if (targets.length === 0) return;
    await this.queue.addBulk(
      targets.map((target) => ({
        name: 'card',
        data: { kind: 'card' as const, requestId, target },
        opts: { jobId: jobId('card', requestId, hash(targetKey(target)), hash(why)) },
      })),
    );
  }

  async replies(requestId: string, targets: Target[], about: string): Promise<void> {
    if (targets.length === 0) return;
    await this.queue.addBulk(
      targets.map((target) => ({
        name: 'reply',
        data: { kind: 'reply' as const, requestId, target, about },
        opts: { jobId: jobId('reply', requestId, hash(targetKey(target)), hash(about)) },
      })),
    );
  }

  async breakGlass(notice: BreakGlassNotice, targets: Target[]): Promise<void> {
    if (targets.length === 0) return;
    await this.queue.addBulk(
      targets.map((target) => ({
        name: 'break_glass',
        data: { kind: 'break_glass' as const, notice, target },
        opts: { jobId: jobId('bg', notice.requestId, hash(targetKey(target))) },
      })),
    );
  }

  async notice(requestId: string, user: string): Promise<void> {
    await this.add('notice', { kind: 'notice', requestId, user }, { jobId: jobId('notice', requestId, hash(user)) });
  }

  /** An ephemeral reply to one person; `dedupKey` (the interaction) makes a redelivered interaction answer once. */
  async ephemeral(channel: string | undefined, user: string, text: string, dedupKey: string): Promise<void> {
    // Late answers are noise: few attempts.
    await this.add(
      'ephemeral',
      { kind: 'ephemeral', channel, user, text },
      { jobId: jobId('eph', hash(dedupKey)), attempts: 3 },
    );
  }

  // ---- processing ----

  private async process(job: Job<SlackJobData>): Promise<void> {
    try {
      await this.run(job.data);
    } catch (e) {
      if (e instanceof CardNotPostedYet) throw e;
      const failure = classifySlackError(e);
      this.deps.onCallFailure?.(failure.kind);
      if (failure.kind === 'rate_limited') {
        // Pauses this queue in every replica, and puts the job back without using up an attempt.
        this.deps.logger.info(
          { job: job.name, retryAfterMs: failure.retryAfterMs },
          'Slack rate limit: pausing Slack calls',
        );
        await this.queue.rateLimit(failure.retryAfterMs);
        throw Worker.RateLimitError();
      }
      if (failure.kind === 'permanent') throw new UnrecoverableError(`${job.name}: ${failure.message}`);
      throw new Error(`${job.name}: ${failure.message}`);
    }
  }

  private async run(data: SlackJobData): Promise<void> {
    switch (data.kind) {
      case 'card':
        return this.card(data.requestId, data.target);
      case 'reply':
        return this.reply(data.requestId, data.target, data.about);
      case 'notice':
        return this.sendNotice(data.requestId, data.user);
      case 'break_glass':
        return this.announceBreakGlass(data.notice, data.target);
      case 'ephemeral':
        if (data.channel === undefined)
          await this.deps.client.chat.postMessage({ channel: data.user, text: data.text });
        else await this.deps.client.chat.postEphemeral({ channel: data.channel, user: data.user, text: data.text });
        return;
    }
  }

  private async post(channel: string, message: SlackMessage, threadTs?: string): Promise<MessageRef> {
    const result = await this.deps.client.chat.postMessage({
      channel,
      text: message.text,
      blocks: message.blocks,
      unfurl_links: false,
      unfurl_media: false,
      ...(threadTs === undefined ? {} : { thread_ts: threadTs }),
    });
    if (typeof result.channel !== 'string' || typeof result.ts !== 'string')
      throw new Error('chat.postMessage answered without channel and ts');
    return { channel: result.channel, ts: result.ts };
  }

  private async card(requestId: string, target: Target): Promise<void> {
    const { workflow, refs } = this.deps;
    const view = await workflow.get(requestId);
    if (view === undefined) return;
    const key = targetKey(target);
    let ref = await refs.card(requestId, key);
    let shown: ApprovalRequestView | undefined;
    if (ref === undefined) {
      ref = await this.post(targetChannel(target), buildRequestCard(view));
      await refs.setCard(requestId, key, ref, view.expiresAt);
      shown = view;
      await this.deps.audit
        ?.append({
          type: 'notification_sent',
          request_id: requestId,
          channel: 'slack',
          event: 'card_posted',
          target: targetKey(target),
          slack_channel: ref.channel,
          message_ts: ref.ts,
        })
        .catch((e: unknown) =>
          this.deps.logger.warn({ requestId, err: (e as Error).message }, 'could not audit a posted Slack card'),
        );
    }
    await this.updateUntilCurrent(requestId, ref, shown);
  }

  /**
   * Updates a card until it shows the request's current state. Two replicas
   * updating one card can finish in either order; re-reading after each update
   * means the last writer always writes the newest state.
   */
  private async updateUntilCurrent(
    requestId: string,
    ref: MessageRef,
    shown: ApprovalRequestView | undefined,
  ): Promise<void> {
    for (let round = 0; round < 4; round += 1) {
      const latest = await this.deps.workflow.get(requestId);
      if (latest === undefined) return;
      if (shown !== undefined && cardFingerprint(shown) === cardFingerprint(latest)) return;
      const message = buildRequestCard(latest);
      await this.deps.client.chat.update({
        channel: ref.channel,
        ts: ref.ts,
        text: message.text,
        blocks: message.blocks,
      });
      shown = latest;
    }
  }

  private async reply(requestId: string, target: Target, about: string): Promise<void> {
    const { workflow, refs } = this.deps;
    const marker = `reply:${targetKey(target)}:${about}`;
    if (await refs.sent(requestId, marker)) return;
    const ref = await refs.card(requestId, targetKey(target));
    if (ref === undefined) throw new CardNotPostedYet(`no card for ${requestId} at ${targetKey(target)} yet`);
    const view = await workflow.get(requestId);
    if (view === undefined) return;
    let message: SlackMessage;
    if (about === 'end') {
      if (view.state === 'PENDING_APPROVAL') return;
      message = buildOutcomeNotice(view);
    } else {
      const vote = about.startsWith('vote.') ? view.votes.find((v) => `vote.${v.principal}` === about) : undefined;
      if (vote === undefined) return;
      message = buildVoteReply(view, vote);
    }
    const posted = await this.post(ref.channel, message, ref.ts);
    await refs.markSent(requestId, marker, posted.ts, view.expiresAt);
  }

  private async announceBreakGlass(notice: BreakGlassNotice, target: Target): Promise<void> {
    const { refs } = this.deps;
    const marker = `break_glass:${targetKey(target)}`;
    if (await refs.sent(notice.requestId, marker)) return;
    const posted = await this.post(targetChannel(target), buildBreakGlassNotice(notice));
    await refs.markSent(notice.requestId, marker, posted.ts, notice.credentialExpiresAt);
    await this.deps.audit
      ?.append({
        type: 'notification_sent',
        request_id: notice.requestId,
        channel: 'slack',
        event: 'break_glass_posted',
        target: targetKey(target),
        slack_channel: posted.channel,
        message_ts: posted.ts,
      })
      .catch((e: unknown) =>
        this.deps.logger.warn(
          { requestId: notice.requestId, err: (e as Error).message },
          'could not audit a posted break-glass notice',
        ),
      );
  }

  private async sendNotice(requestId: string, user: string): Promise<void> {
    const { workflow, refs } = this.deps;
    const marker = `notice:${user}`;
    if (await refs.sent(requestId, marker)) return;
    const view = await workflow.get(requestId);
    if (view === undefined || view.state === 'PENDING_APPROVAL') return;
    const posted = await this.post(user, buildOutcomeNotice(view));
    await refs.markSent(requestId, marker, posted.ts, view.expiresAt);
  }
}
