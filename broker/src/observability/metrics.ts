// Prometheus metrics (prom-client), served at GET /metrics on the HTTP listener.
// One registry per broker instance, so tests and several brokers in one process
// never share counters. Add a metric here, then increment it where it happens.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const SUMMED_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Values read at scrape time from the parts that own them (set by the composition root). */
export interface MetricSources {
  queueDepth?: () => Promise<{ queue: string; state: string; count: number }[]>;
  /** The key signing credentials now, and since when (ms). */
  signingKey?: () => Promise<{ kid: string; since: number } | undefined>;
  now?: () => number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly sources: MetricSources = {};

  readonly requests = new Counter({
    name: 'countersign_requests_total',
    help: 'Operation requests by decision (allow, deny, approve, break_glass, invalid) and policy rule.',
    labelNames: ['decision', 'rule'] as const,
    registers: [this.registry],
  });

  readonly credentialsIssued = new Counter({
    name: 'countersign_credentials_issued_total',
    help: 'Credentials issued.',
    registers: [this.registry],
  });

  readonly identityRefusals = new Counter({
    name: 'countersign_identity_refusals_total',
    help: 'Connections whose client certificate was refused, by error code.',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  readonly reloadFailures = new Counter({
    name: 'countersign_reload_failures_total',
    help: 'Files (policy, bundle, SVID, principals) whose new version was invalid and kept the previous one.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly identityUpdates = new Counter({
    name: 'countersign_identity_updates_total',
    help: 'New broker SVIDs and trust bundles put in service (rotation, reload), by kind (svid, bundle).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly svidExpiry = new Gauge({
    name: 'countersign_svid_expiry_timestamp_seconds',
    help: "When the broker's own X.509-SVID in service expires (Unix seconds); alert when rotation stops moving it.",
    registers: [this.registry],
  });

  readonly decisionSeconds = new Histogram({
    name: 'countersign_request_operation_seconds',
    help: 'Time to answer RequestOperation, by decision.',
    labelNames: ['decision'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });

  readonly pending = new Gauge({
    name: 'countersign_pending_requests',
    help: 'Requests waiting for approval (sampled from Redis).',
    registers: [this.registry],
  });

  readonly votes = new Counter({
    name: 'countersign_votes_total',
    help: 'Votes counted, by decision (approve, deny) and channel.',
    labelNames: ['decision', 'channel'] as const,
    registers: [this.registry],
  });

  readonly votesRefused = new Counter({
    name: 'countersign_votes_refused_total',
    help: 'Votes refused, by error code (ERR_SELF_APPROVAL, ERR_REQUEST_RESOLVED, ...) and channel.',
    labelNames: ['code', 'channel'] as const,
    registers: [this.registry],
  });

  readonly resolutions = new Counter({
    name: 'countersign_requests_resolved_total',
    help: 'Approval requests that ended, by end state.',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });

  readonly notificationFailures = new Counter({
    name: 'countersign_notification_failures_total',
    help: 'Failed attempts to notify an approver channel (each is retried with backoff).',
    labelNames: ['channel'] as const,
    registers: [this.registry],
  });

  readonly slackRequestsRefused = new Counter({
    name: 'countersign_slack_requests_refused_total',
    help: 'Requests to /slack/events refused before reaching anything, by code (ERR_SLACK_SIGNATURE_INVALID, ERR_SLACK_TIMESTAMP_STALE, ...).',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  readonly slackCallFailures = new Counter({
    name: 'countersign_slack_call_failures_total',
    help: 'Failed Slack Web API calls made by Slack jobs: rate_limited (waits Retry-After), transient (retried), permanent (given up).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly expiryLatenessSeconds = new Histogram({
    name: 'countersign_expiry_lateness_seconds',
    help: 'How long after its deadline a request was ended EXPIRED.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly rpcErrors = new Counter({
    name: 'countersign_rpc_errors_total',
    help: 'gRPC calls answered with an error, by method and error code (ERR_REDIS_UNAVAILABLE, ERR_SVID_EXPIRED, ...).',
    labelNames: ['method', 'code'] as const,
    registers: [this.registry],
  });

  readonly timeToDecisionSeconds = new Histogram({
    name: 'countersign_time_to_decision_seconds',
    help: 'From a request needing approval to its end, by end state (APPROVED, DENIED, EXPIRED, CANCELLED).',
    labelNames: ['state'] as const,
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 14400, 86400],
    registers: [this.registry],
  });

  readonly redemptions = new Counter({
    name: 'countersign_credential_redemptions_total',
    help: 'RedeemCredential calls, by outcome (redeemed, refused: already redeemed).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly queueJobs = new Gauge({
    name: 'countersign_queue_jobs',
    help: 'BullMQ jobs (notifications, expiry, maintenance) by queue and state (waiting, active, delayed, failed).',
    labelNames: ['queue', 'state'] as const,
    registers: [this.registry],
    collect: async () => {
      const depth = await this.sources.queueDepth?.().catch(() => undefined);
      if (depth === undefined) return;
      this.queueJobs.reset();
      for (const d of depth) this.queueJobs.set({ queue: d.queue, state: d.state }, d.count);
    },
  });

  readonly signingKeyAge = new Gauge({
    name: 'countersign_signing_key_age_seconds',
    help: 'How long the key that signs credentials has been signing them, by kid.',
    labelNames: ['kid'] as const,
    registers: [this.registry],
    collect: async () => {
      const key = await this.sources.signingKey?.().catch(() => undefined);
      if (key === undefined) return;
      this.signingKeyAge.reset();
      const now = this.sources.now?.() ?? Date.now();
      this.signingKeyAge.set({ kid: key.kid }, Math.max(0, now - key.since) / 1000);
    },
  });

  readonly watchStreams = new Gauge({
    name: 'countersign_watch_streams',
    help: 'WatchRequest streams open on this broker.',
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) {
      // Unprefixed, as every exporter names them, so stock dashboards find process_* and nodejs_*.
      collectDefaultMetrics({ register: this.registry });
      // prom-client also sums these by-type gauges into gauges named like counters (*_total),
      // which promtool rejects; sum(nodejs_active_handles) gives the same number.
      for (const name of SUMMED_GAUGES) this.registry.removeSingleMetric(name);
    }
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
