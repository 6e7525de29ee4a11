// The ports of the approval orchestrators (RequestService, BrokerApprovalWorkflow,
// Outbox, CredentialCollector, Sweeper): the narrow part of each Redis-backed
// class they call. The composition root (app.ts, through runtime.ts) passes the
// real classes; the unit tests pass the in-memory fakes of broker/test/support/fakes.ts,
// which keep the same replies, errors, limits and atomicity (docs/development.md, "Tests").
import type { CredentialMinter } from '../credentials/mint.js';
import type { Policy } from '../policy/policy.js';
import type { ApprovalJobs } from './jobs.js';
import type { RequestRateLimiter } from './limits.js';
import type { RequestStore } from './store.js';

/** The request store: every state change is one atomic step (a Lua script in Redis). */
export type RequestStorePort = Pick<
  RequestStore,
  | 'create'
  | 'get'
  | 'getWithVotes'
  | 'getMany'
  | 'pendingIds'
  | 'pendingCount'
  | 'vote'
  | 'expire'
  | 'cancel'
  | 'storeCredential'
  | 'credential'
  | 'noteApproved'
  | 'markCredentialAudited'
>;

/** What the outbox enqueues (BullMQ in production). */
export type ApprovalJobsPort = Pick<ApprovalJobs, 'scheduleExpiry' | 'cancelExpiry' | 'notify'>;

export type RateLimiterPort = Pick<RequestRateLimiter, 'take'>;

export type MinterPort = Pick<CredentialMinter, 'mint'>;

export type PolicyPort = Pick<Policy, 'decide' | 'digest'>;

/** The outbox hash, where the transition scripts write their entries (the Redis commands the outbox uses). */
export interface OutboxHash {
  hexists(key: string, field: string): Promise<number>;
  hmget(key: string, ...fields: string[]): Promise<(string | null)[]>;
  hdel(key: string, ...fields: string[]): Promise<number>;
  hscan(key: string, cursor: string, count: 'COUNT', n: number): Promise<[cursor: string, elements: string[]]>;
}

/**
 * Real time for waiting on another process (a peer finishing its audit records):
 * never the injected Clock, which tests freeze. Unit tests pass a fake that
 * advances its own time on every sleep.
 */
export interface Waiter {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realWaiter: Waiter = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};
