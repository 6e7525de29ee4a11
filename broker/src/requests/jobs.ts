// The BullMQ side of approvals: queues for work that must survive a crash and be
// retried. Jobs carry only ids; the worker reads the current state from Redis, so
// a late or repeated job acts on the truth, not on a stale copy. The exception is
// a break-glass notice: nothing about it is stored or can change, so it travels in
// the job.
import type { BreakGlassNotice } from '@countersign/approvers';
import { Queue, type JobsOptions } from 'bullmq';
import type { Clock } from '../clock.js';
import type { Redis } from '../redis/connection.js';

export const QUEUE_NAMES = { notify: 'notify', expiry: 'expiry', maintenance: 'maintenance' } as const;

export type NotifyEvent = 'created' | 'vote' | 'resolved' | 'break_glass';

export interface NotifyJobData {
  requestId: string;
  event: NotifyEvent;
  /** The ApproverChannel to call. */
  channel: string;
  /** For "vote": whose vote. */
  principal?: string;
  /** For "break_glass": what to announce. */
  notice?: BreakGlassNotice;
}

export interface ExpiryJobData {
  requestId: string;
}

export interface JobSettings {
  /** Attempts per notification before it is given up (and logged). */
  notifyAttempts: number;
  /** First retry delay; doubles each attempt. */
  notifyBackoffMs: number;
}

/** BullMQ job ids may not contain ":"; request ids, principal and channel names never do. */
const jobId = (...parts: string[]): string => parts.join('.');

export class ApprovalJobs {
  readonly notifyQueue: Queue<NotifyJobData>;
  readonly expiryQueue: Queue<ExpiryJobData>;
  readonly maintenanceQueue: Queue;

  constructor(
    connection: Redis,
    prefix: string,
    private readonly channels: readonly string[],
    private readonly clock: Clock,
    settings: JobSettings,
    onError: (queue: string, err: Error) => void = () => {},
  ) {
    // Completed jobs are kept for an hour so that a repeated enqueue of the same id is a no-op.
    const common = { connection, prefix, streams: { events: { maxLen: 1000 } } };
    this.notifyQueue = new Queue<NotifyJobData>(QUEUE_NAMES.notify, {
      ...common,
      defaultJobOptions: {
        attempts: settings.notifyAttempts,
        backoff: { type: 'exponential', delay: settings.notifyBackoffMs },
        removeOnComplete: { age: 3600 },
        removeOnFail: { age: 7 * 24 * 3600 },
      },
    });
    this.expiryQueue = new Queue<ExpiryJobData>(QUEUE_NAMES.expiry, {
      ...common,
      defaultJobOptions: { attempts: 10, backoff: { type: 'exponential', delay: 500 }, removeOnComplete: true, removeOnFail: { age: 7 * 24 * 3600 } },
    });
    this.maintenanceQueue = new Queue(QUEUE_NAMES.maintenance, {
      ...common,
      defaultJobOptions: { removeOnComplete: true, removeOnFail: { age: 3600 } },
    });
    // A queue reports connection trouble as 'error' events; unheard, one would end the process.
    for (const queue of [this.notifyQueue, this.expiryQueue, this.maintenanceQueue]) queue.on('error', (err) => onError(queue.name, err));
  }

  get channelNames(): readonly string[] {
    return this.channels;
  }

  /** One job per channel, so a failing channel is retried without repeating the others. */
  async notify(requestId: string, event: NotifyEvent, principal?: string): Promise<void> {
    if (this.channels.length === 0) return;
    await this.notifyQueue.addBulk(
      this.channels.map((channel) => {
        const data: NotifyJobData = principal === undefined ? { requestId, event, channel } : { requestId, event, channel, principal };
        const opts: JobsOptions = { jobId: jobId(requestId, event, ...(principal === undefined ? [] : [principal]), channel) };
        return { name: event, data, opts };
      }),
    );
  }

  /** Announces a break-glass use on every channel; returns how many jobs were queued (0: no channel configured). */
  async notifyBreakGlass(notice: BreakGlassNotice): Promise<number> {
    if (this.channels.length === 0) return 0;
    await this.notifyQueue.addBulk(
      this.channels.map((channel) => ({
        name: 'break_glass',
        data: { requestId: notice.requestId, event: 'break_glass' as const, channel, notice },
        opts: { jobId: jobId(notice.requestId, 'break_glass', channel) },
      })),
    );
    return this.channels.length;
  }

  /** A delayed job at the deadline; the sweeper covers a job that is lost. */
  async scheduleExpiry(requestId: string, expiresAt: number): Promise<void> {
    await this.expiryQueue.add('expire', { requestId }, { jobId: jobId(requestId, 'expire'), delay: Math.max(0, expiresAt - this.clock.now()) });
  }

  /** Drops the expiry job of a request that ended; a job already running finds it ended and does nothing. */
  async cancelExpiry(requestId: string): Promise<void> {
    const job = await this.expiryQueue.getJob(jobId(requestId, 'expire'));
    await job?.remove().catch(() => undefined);
  }

  /** Jobs per queue and state, for the queue depth metric. */
  async depth(): Promise<{ queue: string; state: string; count: number }[]> {
    const states = ['waiting', 'active', 'delayed', 'failed'] as const;
    const out: { queue: string; state: string; count: number }[] = [];
    for (const queue of [this.notifyQueue, this.expiryQueue, this.maintenanceQueue]) {
      const counts = await queue.getJobCounts(...states);
      for (const state of states) out.push({ queue: queue.name, state, count: counts[state] ?? 0 });
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all([this.notifyQueue.close(), this.expiryQueue.close(), this.maintenanceQueue.close()]);
  }
}
