// The safety net behind the jobs: ends every pending request whose deadline has
// passed (an expiry job may have been lost), and finishes outbox entries that a
// crashed process left behind. Runs as a BullMQ repeatable job, so one worker
// runs it at a time however many replicas there are.
import type { Clock } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { RequestStorePort } from './ports.js';
import type { OutboxPort } from './outbox.js';
import { ScriptCode } from './script-codes.js';
import type { BrokerApprovalWorkflow } from './workflow.js';

export interface SweepResult {
  expired: number;
  outboxCompleted: number;
  pending: number;
}

export class Sweeper {
  constructor(
    private readonly deps: {
      store: RequestStorePort;
      workflow: Pick<BrokerApprovalWorkflow, 'expire'>;
      outbox: OutboxPort;
      clock: Clock;
      metrics: Metrics;
      logger: Logger;
    },
    private readonly options: { outboxGraceMs: number; batch?: number },
  ) {}

  async sweep(): Promise<SweepResult> {
    const { store, workflow, outbox, clock, metrics, logger } = this.deps;
    const due = await store.pendingIds({ dueBy: clock.now(), limit: this.options.batch ?? 1000 });
    let expired = 0;
    for (const id of due) {
      try {
        if ((await workflow.expire(id)).code === ScriptCode.Expired) expired++;
      } catch (err) {
        logger.warn({ err, requestId: id }, 'sweeper could not expire a request');
      }
    }
    if (expired > 0) logger.warn({ expired }, 'sweeper expired requests that no expiry job had ended');
    const outboxCompleted = await outbox.completeStale(this.options.outboxGraceMs, this.options.batch ?? 1000);
    const pending = await store.pendingCount();
    metrics.pending.set(pending);
    return { expired, outboxCompleted, pending };
  }
}
