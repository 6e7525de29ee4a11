// Wiring of the approval machinery, for the composition root (app.ts): the
// store and its scripts, the outbox, BullMQ queues (every role enqueues) and
// workers (roles "all" and "worker"), and, where requesters are served, the
// pub/sub subscription and the credential collector. Two steps, in construction
// order: openApprovals builds the workflow (approver channels such as Slack need
// it), startWorkers then runs the queue workers with those channels.
import type { ApproverChannel, PrincipalDirectory } from '@countersign/approvers';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { BrokerConfig } from '../config/config.js';
import type { CredentialMinter } from '../credentials/mint.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Passkeys } from '../passkeys/passkeys.js';
import { duplicateConnection, type Redis } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { CredentialCollector } from './collector.js';
import { RequestDelivery } from './delivery.js';
import { RequestEvents } from './events.js';
import { CHANNEL_ANNOUNCE_INTERVAL_MS, ChannelRegistry } from './channels.js';
import { ApprovalJobs } from './jobs.js';
import { PollGate, RequestRateLimiter, type RateLimit } from './limits.js';
import { Outbox } from './outbox.js';
import type { ScriptRunner } from './scripts.js';
import { RequestStore } from './store.js';
import { Sweeper } from './sweeper.js';
import type { SizeLimits } from './validate.js';
import { ApprovalWorkers } from './workers.js';
import { BrokerApprovalWorkflow } from './workflow.js';

/** Which parts of the broker a process runs. */
export type BrokerRole = 'all' | 'api' | 'worker';

export interface ApprovalSettings {
  pollIntervalMs: number;
  collectionWindowMs: number;
  retentionMs: number;
  sweepIntervalMs: number;
  maxPendingPerWorkload: number;
  rate: RateLimit;
  sizeLimits: SizeLimits;
  notifyAttempts: number;
  notifyBackoffMs: number;
  defaultTtlMs: number;
  /** A watch re-reads its request this often even without an announcement. */
  watchRecheckMs: number;
  /** An outbox entry this old is finished by the sweeper. */
  outboxGraceMs: number;
}

export function approvalSettings(config: BrokerConfig): ApprovalSettings {
  const r = config.requests;
  return {
    pollIntervalMs: r.poll_interval,
    collectionWindowMs: r.collection_window,
    retentionMs: r.retention,
    sweepIntervalMs: r.sweep_interval,
    maxPendingPerWorkload: r.limits.max_pending_per_workload,
    rate: { perSecond: r.limits.requests_per_second, burst: r.limits.burst },
    sizeLimits: { parametersBytes: r.limits.max_parameters_bytes, reasonLength: r.limits.max_reason_length },
    notifyAttempts: r.notifications.attempts,
    notifyBackoffMs: r.notifications.backoff,
    defaultTtlMs: config.credentials.default_ttl,
    watchRecheckMs: 10_000,
    outboxGraceMs: 30_000,
  };
}

export interface ApprovalsDeps {
  redis: Redis;
  keys: Keys;
  scripts: ScriptRunner;
  audit: AuditLog;
  directory: PrincipalDirectory;
  /** The names of the approver channels this process will run (announced before anything is enqueued). */
  channelNames: readonly string[];
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** The approver console, when on: passkey proofs for step-up webauthn, and each request's page. */
  console?:
    { passkeys: Pick<Passkeys, 'verifyVote'> | undefined; requestUrl: (requestId: string) => string } | undefined;
}

export interface Approvals {
  store: RequestStore;
  outbox: Outbox;
  jobs: ApprovalJobs;
  workflow: BrokerApprovalWorkflow;
  sweeper: Sweeper;
  limiter: RequestRateLimiter;
  /** Present when this process serves requesters (roles "all" and "api"). */
  delivery: RequestDelivery | undefined;
  /**
   * Starts the queue workers (roles "all" and "worker") with the approver channels the
   * notification jobs call. The channels are built after the workflow (Slack takes clicks
   * through it), so they come here rather than to openApprovals; their names must be the
   * channelNames announced there.
   */
  startWorkers(channels: readonly ApproverChannel[]): Promise<void>;
  close(): Promise<void>;
}

/** Builds the approval machinery; the queue workers start with startWorkers once the channels exist. */
export async function openApprovals(
  deps: ApprovalsDeps,
  settings: ApprovalSettings,
  options: { role: BrokerRole; minter?: CredentialMinter },
): Promise<Approvals> {
  const { redis, keys, scripts, audit, clock, logger, metrics } = deps;
  const store = new RequestStore(redis, keys, scripts, clock, {
    maxPendingPerWorkload: settings.maxPendingPerWorkload,
    retentionMs: settings.retentionMs,
  });
  // BullMQ gets connections of its own: a fail-fast one for enqueueing (a request
  // never waits on a dead Redis) and a patient one for workers, which must block.
  const quiet = (connection: Redis): Redis =>
    connection.on('error', () => {
      // Connection errors surface on the commands (and BullMQ events) that fail; ioredis keeps reconnecting.
    });
  const queueConnection = quiet(duplicateConnection(redis));
  const channels = new ChannelRegistry(redis, keys, clock, deps.channelNames);
  // Before anything is enqueued: replicas without these channels enqueue their notifications from now on.
  await channels.announce();
  const announcer = setInterval(() => {
    channels
      .announce()
      .catch((err: unknown) => logger.warn({ err }, "could not announce this replica's approver channels; will retry"));
  }, CHANNEL_ANNOUNCE_INTERVAL_MS);
  announcer.unref();
  const jobs = new ApprovalJobs(
    queueConnection,
    keys.bullmqPrefix(),
    channels,
    clock,
    { notifyAttempts: settings.notifyAttempts, notifyBackoffMs: settings.notifyBackoffMs },
    (queue, err) =>
      logger.warn({ queue, err: err.message }, 'queue connection error (enqueueing fails until Redis is back)'),
  );
  const outbox = new Outbox({ redis, keys, store, audit, jobs, clock, logger });
  const workflow = new BrokerApprovalWorkflow(
    { store, outbox, directory: deps.directory, audit, clock, logger, metrics, passkeys: deps.console?.passkeys },
    { maxReasonLength: settings.sizeLimits.reasonLength, consoleUrl: deps.console?.requestUrl },
  );
  const sweeper = new Sweeper(
    { store, workflow, outbox, clock, metrics, logger },
    { outboxGraceMs: settings.outboxGraceMs },
  );
  const limiter = new RequestRateLimiter(keys, scripts, clock, settings.rate);

  // Closed in reverse order: workers first (they finish their jobs), queues last.
  const closers: (() => Promise<void> | void)[] = [
    async () => {
      clearInterval(announcer);
      await jobs.close();
      queueConnection.disconnect();
    },
  ];
  try {
    let delivery: RequestDelivery | undefined;
    if (options.role !== 'worker') {
      if (options.minter === undefined) throw new Error('serving requesters needs a credential minter');
      const subscriber = quiet(duplicateConnection(redis));
      const events = await RequestEvents.start(subscriber, keys.requestEvents(), logger);
      closers.push(() => events.close());
      const collector = new CredentialCollector(
        { store, outbox, minter: options.minter, audit, clock, metrics, logger },
        { collectionWindowMs: settings.collectionWindowMs, defaultTtlMs: settings.defaultTtlMs },
      );
      delivery = new RequestDelivery(
        { store, collector, events, pollGate: new PollGate(redis, keys, settings.pollIntervalMs) },
        { watchRecheckMs: settings.watchRecheckMs },
      );
    }
    let workersStarted = false;
    const startWorkers = async (approverChannels: readonly ApproverChannel[]): Promise<void> => {
      if (workersStarted) throw new Error('the approval workers are already started');
      workersStarted = true;
      const names = approverChannels.map((c) => c.name);
      if (names.length !== channels.local.length || names.some((name, i) => name !== channels.local[i])) {
        throw new Error(
          `approver channels [${names.join(', ')}] are not the ones announced [${channels.local.join(', ')}]`,
        );
      }
      if (options.role === 'api') return;
      const workerConnection = quiet(
        duplicateConnection(redis, {
          maxRetriesPerRequest: null,
          enableOfflineQueue: true,
          enableAutoPipelining: false,
        }),
      );
      closers.push(() => workerConnection.disconnect());
      const workers = await ApprovalWorkers.start(
        workerConnection,
        keys.bullmqPrefix(),
        { jobs, workflow, sweeper, channels: approverChannels, audit: deps.audit, clock, logger, metrics },
        { sweepIntervalMs: settings.sweepIntervalMs },
      );
      closers.push(() => workers.close());
    };
    return {
      store,
      outbox,
      jobs,
      workflow,
      sweeper,
      limiter,
      delivery,
      startWorkers,
      async close() {
        for (const close of [...closers].reverse()) await close();
      },
    };
  } catch (e) {
    for (const close of [...closers].reverse()) await Promise.resolve(close()).catch(() => undefined);
    throw e;
  }
}
