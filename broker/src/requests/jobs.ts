// The BullMQ side of approvals: queues for work that must survive a crash and be
// retried. Jobs carry only ids; the worker reads the current state from Redis, so
// a late or repeated job acts on the truth, not on a stale copy. The exception is
// a break-glass notice: nothing about it is stored or can change, so it travels in
// the job. Notifications go to one queue per approver channel ("notify.slack"),
// consumed only by replicas that have that channel (channels.ts).
import type { BreakGlassNotice } from '@countersign/approvers';
import { Queue, type JobsOptions } from 'bullmq';
import type { Clock } from '../clock.js';
import type { Redis } from '../redis/connection.js';
import type { ChannelRegistry } from './channels.js';

/** What the expiry worker keeps of the jobs it ran (the jobs themselves carry no such option). */
export const EXPIRY_WORKER_KEEP = { removeOnComplete: { count: 0 }, removeOnFail: { age: 7 * 24 * 3600 } } as const;

export const QUEUE_NAMES = {
  /** Before notifications had a queue per channel, they shared this one; its jobs are moved to theirs. */
  legacyNotify: 'notify',
  expiry: 'expiry',
  maintenance: 'maintenance',
} as const;

/** The queue of one approver channel's notifications. */
export const notifyQueueName = (channel: string): string => `notify.${channel}`;

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
  private readonly notifyQueues = new Map<string, Queue<NotifyJobData>>();
  readonly legacyNotifyQueue: Queue<NotifyJobData>;
  readonly expiryQueue: Queue<ExpiryJobData>;
  readonly maintenanceQueue: Queue;
  private readonly common: { connection: Redis; prefix: string; streams: { events: { maxLen: number } } };
  private readonly notifyOptions: JobsOptions;

  constructor(
    connection: Redis,
    prefix: string,
    private readonly channels: ChannelRegistry,
    private readonly clock: Clock,
    settings: JobSettings,
    private readonly onError: (queue: string, err: Error) => void = () => {},
  ) {
    // Completed jobs are kept for an hour so that a repeated enqueue of the same id is a no-op.
    this.common = { connection, prefix, streams: { events: { maxLen: 1000 } } };
    const common = this.common;
    this.notifyOptions = {
      attempts: settings.notifyAttempts,
      backoff: { type: 'exponential', delay: settings.notifyBackoffMs },
      removeOnComplete: { age: 3600 },
      removeOnFail: { age: 7 * 24 * 3600 },
    };
    this.legacyNotifyQueue = new Queue<NotifyJobData>(QUEUE_NAMES.legacyNotify, {
      ...common,
      defaultJobOptions: this.notifyOptions,
    });
    // One expiry job per pending request: its options are stored with it (BullMQ's job hash
    // field "opts"), so they are kept to what fits a compact (listpack) hash, at most 64 bytes:
    // the delay and the job id. What to keep once it ran is the worker's (EXPIRY_WORKER_KEEP),
    // and a failed expiry is not retried by BullMQ: the sweeper ends the request within
    // requests.sweep_interval, as it does for a job that was lost (docs/approvals.md, "Expiry").
    this.expiryQueue = new Queue<ExpiryJobData>(QUEUE_NAMES.expiry, common);
    this.maintenanceQueue = new Queue(QUEUE_NAMES.maintenance, {
      ...common,
      defaultJobOptions: { removeOnComplete: true, removeOnFail: { age: 3600 } },
    });
    // A queue reports connection trouble as 'error' events; unheard, one would end the process.
    for (const queue of [this.legacyNotifyQueue, this.expiryQueue, this.maintenanceQueue])
      queue.on('error', (err) => onError(queue.name, err));
  }

  /** The notification queue of one channel. */
  notifyQueue(channel: string): Queue<NotifyJobData> {
    let queue = this.notifyQueues.get(channel);
    if (queue === undefined) {
      const name = notifyQueueName(channel);
      queue = new Queue<NotifyJobData>(name, { ...this.common, defaultJobOptions: this.notifyOptions });
      queue.on('error', (err) => this.onError(name, err));
      this.notifyQueues.set(channel, queue);
    }
    return queue;
  }

  /** Queues one job on its channel's queue (a job id already there is not added twice). */
  async enqueue(job: NotifyJobData, id: string): Promise<void> {
    await this.notifyQueue(job.channel).add(job.event, job, { jobId: id });
  }

  /**
   * One job per channel of the deployment, on that channel's queue, so a failing
   * channel is retried without repeating the others and a replica without the
   * channel never sees its jobs.
   */
  async notify(requestId: string, event: NotifyEvent, principal?: string): Promise<void> {
    const channels = await this.channels.all();
    await Promise.all(
      channels.map((channel) => {
        const data: NotifyJobData =
          principal === undefined ? { requestId, event, channel } : { requestId, event, channel, principal };
        return this.enqueue(data, jobId(requestId, event, ...(principal === undefined ? [] : [principal]), channel));
      }),
    );
  }

  /** Announces a break-glass use on every channel; returns how many jobs were queued (0: no channel configured). */
  async notifyBreakGlass(notice: BreakGlassNotice): Promise<number> {
    const channels = await this.channels.all();
    await Promise.all(
      channels.map((channel) =>
        this.enqueue(
          { requestId: notice.requestId, event: 'break_glass', channel, notice },
          jobId(notice.requestId, 'break_glass', channel),
        ),
      ),
    );
    return channels.length;
  }

  /** A delayed job at the deadline; the sweeper covers a job that is lost. */
  async scheduleExpiry(requestId: string, expiresAt: number): Promise<void> {
    // The job id is the request id (the queue says what it is for), so its options fit 64 bytes.
    await this.expiryQueue.add(
      'expire',
      { requestId },
      { jobId: requestId, delay: Math.max(0, expiresAt - this.clock.now()) },
    );
  }

  /** Drops the expiry job of a request that ended; a job already running finds it ended and does nothing. */
  async cancelExpiry(requestId: string): Promise<void> {
    // Jobs scheduled before the compact format were named <request id>.expire.
    for (const id of [requestId, jobId(requestId, 'expire')]) {
      const job = await this.expiryQueue.getJob(id);
      await job?.remove().catch(() => undefined);
    }
  }

  /** Jobs per queue and state, for the queue depth metric (every channel's notifications, also those this replica cannot send). */
  async depth(): Promise<{ queue: string; state: string; count: number }[]> {
    const states = ['waiting', 'active', 'delayed', 'failed'] as const;
    const out: { queue: string; state: string; count: number }[] = [];
    const notify = (await this.channels.all()).map((channel) => this.notifyQueue(channel));
    for (const queue of [...notify, this.legacyNotifyQueue, this.expiryQueue, this.maintenanceQueue]) {
      const counts = await queue.getJobCounts(...states);
      for (const state of states) out.push({ queue: queue.name, state, count: counts[state] ?? 0 });
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.notifyQueues.values(), this.legacyNotifyQueue, this.expiryQueue, this.maintenanceQueue].map((q) =>
        q.close(),
      ),
    );
  }
}
