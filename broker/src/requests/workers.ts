// BullMQ workers: they call approver channels (notifications and message updates,
// retried with exponential backoff), end requests at their deadline (delayed
// jobs), and run the sweeper. They run in every broker replica (role "all") or
// in separate `countersign-broker serve --role worker` processes. A replica
// takes only the notifications of channels it has: each channel has its own
// queue, and a replica without Slack never opens Slack's.
import type { ApproverChannel } from '@countersign/approvers';
import { DelayedError, Worker, type Job } from 'bullmq';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Redis } from '../redis/connection.js';
import {
  EXPIRY_WORKER_KEEP,
  notifyQueueName,
  QUEUE_NAMES,
  type ApprovalJobs,
  type ExpiryJobData,
  type NotifyJobData,
} from './jobs.js';
import { ScriptCode } from './script-codes.js';
import type { Sweeper } from './sweeper.js';
import type { BrokerApprovalWorkflow } from './workflow.js';

export interface WorkerSettings {
  sweepIntervalMs: number;
  notifyConcurrency?: number;
  expiryConcurrency?: number;
}

/** A channel may throw an error carrying retryAfterMs (e.g. Slack's 429 Retry-After) to be retried after exactly that long. */
const retryAfterOf = (e: unknown): number | undefined => {
  const ms = (e as { retryAfterMs?: unknown } | null)?.retryAfterMs;
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? ms : undefined;
};

async function closeWithin(worker: Worker, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    worker.close().then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), ms))),
  ]);
  clearTimeout(timer);
  if (timedOut) await worker.close(true).catch(() => undefined);
}

/** The part of a BullMQ notification job its processor uses. */
export interface NotifyJob {
  id?: string | undefined;
  data: NotifyJobData;
  attemptsMade: number;
  opts: { attempts?: number | undefined };
  moveToDelayed(timestamp: number, token?: string): Promise<void>;
}

/** Calls the channel for one notification job; false when there was nothing to tell. */
async function deliver(
  channel: ApproverChannel,
  data: NotifyJobData,
  workflow: Pick<BrokerApprovalWorkflow, 'get'>,
  logger: Logger,
): Promise<boolean> {
  if (data.event === 'break_glass') {
    if (data.notice === undefined) return false;
    if (channel.breakGlassUsed === undefined) {
      logger.warn(
        { requestId: data.requestId, channel: channel.name },
        'this channel cannot announce break-glass uses; not announced there',
      );
      return false;
    }
    await channel.breakGlassUsed(data.notice);
    return true;
  }
  const view = await workflow.get(data.requestId);
  if (view === undefined) return false;
  if (data.event === 'created') await channel.requestCreated(view);
  else if (data.event === 'resolved') await channel.requestResolved(view);
  else {
    const vote = view.votes.find((v) => v.principal === data.principal);
    if (vote === undefined) return false;
    await channel.voteRecorded(view, vote);
  }
  return true;
}

/**
 * Runs one notification job of a channel: calls the channel, then records
 * notification_sent. A channel error is thrown for BullMQ to retry (attempts,
 * exponential backoff: ApprovalJobs); one carrying retryAfterMs delays the job by
 * exactly that long instead, without spending an attempt.
 */
export function notificationProcessor(
  channel: ApproverChannel,
  deps: { workflow: Pick<BrokerApprovalWorkflow, 'get'>; audit: AuditLog; logger: Logger; now?: () => number },
): (job: NotifyJob, token?: string) => Promise<void> {
  const now = deps.now ?? Date.now;
  return async (job, token) => {
    const { requestId, event, principal } = job.data;
    try {
      if (!(await deliver(channel, job.data, deps.workflow, deps.logger))) return;
    } catch (e) {
      const retryAfter = retryAfterOf(e);
      if (retryAfter === undefined) throw e;
      await job.moveToDelayed(now() + retryAfter, token);
      throw new DelayedError();
    }
    // At least once: a job retried after this append (but before it completed) records it again, with the same job id.
    await deps.audit.append({
      type: 'notification_sent',
      request_id: requestId,
      channel: channel.name,
      event,
      principal,
      job_id: job.id,
    });
  };
}

/** A notification attempt failed: counted, and logged as an error once it was the last attempt. */
export function notificationFailed(deps: {
  metrics: Metrics;
  logger: Logger;
}): (job: NotifyJob | undefined, err: Error) => void {
  return (job, err) => {
    if (job === undefined) return;
    deps.metrics.notificationFailures.inc({ channel: job.data.channel });
    const final = job.attemptsMade >= (job.opts.attempts ?? 1);
    deps.logger[final ? 'error' : 'warn'](
      {
        requestId: job.data.requestId,
        channel: job.data.channel,
        event: job.data.event,
        attempt: job.attemptsMade,
        err,
      },
      final ? 'notification failed for good' : 'notification failed; will retry',
    );
  };
}

export class ApprovalWorkers {
  private constructor(private readonly workers: Worker[]) {}

  static async start(
    connection: Redis,
    prefix: string,
    deps: {
      jobs: ApprovalJobs;
      workflow: BrokerApprovalWorkflow;
      sweeper: Sweeper;
      channels: readonly ApproverChannel[];
      audit: AuditLog;
      clock: Clock;
      logger: Logger;
      metrics: Metrics;
    },
    settings: WorkerSettings,
  ): Promise<ApprovalWorkers> {
    const { workflow, sweeper, audit, clock, logger, metrics } = deps;
    const channels = new Map(deps.channels.map((c) => [c.name, c]));
    const common = { connection, prefix };

    /** Notifications of one channel this replica has, from that channel's own queue. */
    const notifyWorker = (channel: ApproverChannel) =>
      new Worker<NotifyJobData>(
        notifyQueueName(channel.name),
        notificationProcessor(channel, { workflow, audit, logger }),
        {
          ...common,
          concurrency: settings.notifyConcurrency ?? 8,
        },
      );
    const notifyWorkers = [...channels.values()].map(notifyWorker);
    const failed = notificationFailed({ metrics, logger });
    for (const notify of notifyWorkers) notify.on('failed', failed);
    // Jobs queued by a broker of an earlier version in the shared queue go to their channel's queue, whoever takes them.
    const legacyNotify = new Worker<NotifyJobData>(
      QUEUE_NAMES.legacyNotify,
      async (job: Job<NotifyJobData>) => {
        await deps.jobs.enqueue(job.data, job.id ?? `${job.data.requestId}.${job.data.event}.${job.data.channel}`);
      },
      { ...common, concurrency: 1 },
    );

    const expiry = new Worker<ExpiryJobData>(
      QUEUE_NAMES.expiry,
      async (job: Job<ExpiryJobData>, token?: string) => {
        const result = await workflow.expire(job.data.requestId);
        if (result.code === ScriptCode.NotDue && result.expiresAt !== undefined) {
          // Fired before the deadline by this broker's clock (clock skew between hosts): try again then.
          await job.moveToDelayed(Date.now() + Math.max(20, result.expiresAt - clock.now()), token);
          throw new DelayedError();
        }
      },
      { ...common, ...EXPIRY_WORKER_KEEP, concurrency: settings.expiryConcurrency ?? 16 },
    );

    const maintenance = new Worker(
      QUEUE_NAMES.maintenance,
      async () => {
        await sweeper.sweep();
      },
      { ...common, concurrency: 1 },
    );

    const workers = [...notifyWorkers, legacyNotify, expiry, maintenance];
    for (const w of workers) {
      w.on('error', (err) => logger.warn({ err: err.message, queue: w.name }, 'queue worker error (retrying)'));
    }
    await deps.jobs.maintenanceQueue.upsertJobScheduler(
      'sweep',
      { every: settings.sweepIntervalMs },
      { name: 'sweep' },
    );
    return new ApprovalWorkers(workers);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => closeWithin(w, 5000)));
  }
}
