// Policy hot reload. The file is watched (and polled, for filesystems where
// watching is unreliable, such as Kubernetes ConfigMap volumes); a changed file is
// validated, its own tests run, the change is audited with the new digest, and
// only then is it swapped in whole. A file that fails any of this leaves the
// previous policy in force, is logged and counted in
// countersign_reload_failures_total{kind="policy"}.
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { YamlValidationError } from '../config/yaml-file.js';
import { isCountersignError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { Policy, policyDigest } from './policy.js';
import { assertPolicyTestsPass } from './policy-tests.js';
import type { Principals } from './principals.js';
import type { RequestRateCounter } from './request-rate.js';

export interface PolicySourceOptions {
  file: string;
  principals: Principals | undefined;
  clock: Clock;
}

/** Loads, validates and tests a policy file: what the broker accepts at start and on reload. */
export async function loadPolicyFile(options: PolicySourceOptions): Promise<Policy> {
  const policy = await Policy.load(options.file, { principals: options.principals });
  assertPolicyTestsPass(policy, options.clock.now());
  return policy;
}

export type ReloadTrigger = 'watch' | 'poll' | 'signal' | 'manual';

export type ReloadOutcome =
  | { status: 'unchanged'; digest: string }
  | { status: 'reloaded'; digest: string; previousDigest: string }
  | { status: 'rejected'; error: Error };

export interface PolicyReloaderOptions extends PolicySourceOptions {
  requestRate: RequestRateCounter;
  audit: AuditLog;
  logger: Logger;
  metrics: Metrics;
  /** How often the file is re-read even without a watch event (ms); 0 disables polling. */
  pollIntervalMs: number;
  /** Whether to react to file system events. */
  watch: boolean;
}

export class PolicyReloader {
  private policy: Policy;
  /** The last file rejected, so an unchanged bad file is neither recompiled nor reported on every poll. */
  private lastRejection: { digest: string; error: Error } | undefined;
  private lastReported: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly options: PolicyReloaderOptions,
    initial: Policy,
  ) {
    this.policy = initial.withRequestRate(options.requestRate);
  }

  /** The policy in force. Callers take it once per decision, so a swap never splits one. */
  get current(): Policy {
    return this.policy;
  }

  start(): void {
    if (this.options.pollIntervalMs > 0) {
      this.timer = setInterval(() => void this.reload('poll'), this.options.pollIntervalMs);
      this.timer.unref();
    }
    if (this.options.watch) {
      // The directory, not the file: editors and ConfigMaps replace the file by rename.
      const name = basename(this.options.file);
      try {
        this.watcher = watch(dirname(this.options.file), { persistent: false }, (_event, changed) => {
          if (changed !== null && changed !== name && !String(changed).startsWith('..')) return;
          clearTimeout(this.debounce);
          this.debounce = setTimeout(() => void this.reload('watch'), 100);
          this.debounce.unref();
        });
        this.watcher.on('error', (err) =>
          this.options.logger.warn({ err, file: this.options.file }, 'policy file watch failed; polling continues'),
        );
      } catch (err) {
        this.options.logger.warn({ err, file: this.options.file }, 'cannot watch the policy file; polling continues');
      }
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    this.watcher?.close();
  }

  /** Re-reads the file and swaps it in when it changed and is valid. Reloads run one at a time. */
  reload(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const next = this.queue.then(() => this.reloadNow(trigger));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async reloadNow(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const { logger, metrics, audit, file } = this.options;
    const previous = this.policy;
    let candidate: Policy;
    try {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (e) {
        throw new YamlValidationError('ERR_POLICY_INVALID', file, [
          { where: file, path: '', message: `cannot read: ${(e as Error).message}` },
        ]);
      }
      // Compiling is the expensive part; an unchanged file (the usual poll) skips it.
      const digest = policyDigest(text);
      if (digest === previous.digest) {
        this.lastRejection = undefined;
        return { status: 'unchanged', digest };
      }
      if (digest === this.lastRejection?.digest) return { status: 'rejected', error: this.lastRejection.error };
      try {
        candidate = Policy.parse(text, file, { principals: this.options.principals });
        assertPolicyTestsPass(candidate, this.options.clock.now());
      } catch (e) {
        this.lastRejection = { digest, error: e as Error };
        throw e;
      }
    } catch (e) {
      const error = e as Error;
      if (this.lastReported !== error.message && !this.closed) {
        this.lastReported = error.message;
        metrics.reloadFailures.inc({ kind: 'policy' });
        logger.error(
          { file, trigger, code: isCountersignError(e) ? e.code : undefined, policyDigest: previous.digest },
          `policy reload rejected, keeping the previous policy:\n${error.message}`,
        );
      }
      return { status: 'rejected', error };
    }
    try {
      // Fail closed: no policy is in force without a durable record of it.
      await audit.append({
        type: 'policy_reload',
        outcome: 'applied',
        policy_digest: candidate.digest,
        previous_digest: previous.digest,
        file: this.options.file,
        rules: candidate.ruleCount,
        tests: candidate.document.tests.length,
        trigger,
      });
    } catch (e) {
      metrics.reloadFailures.inc({ kind: 'policy' });
      logger.error(
        { err: e, file: this.options.file, policyDigest: previous.digest },
        'policy reload not applied: could not audit it; will retry',
      );
      return { status: 'rejected', error: e as Error };
    }
    this.policy = candidate.withRequestRate(this.options.requestRate);
    this.lastRejection = undefined;
    this.lastReported = undefined;
    logger.info(
      {
        file: this.options.file,
        trigger,
        policyDigest: candidate.digest,
        previousDigest: previous.digest,
        rules: candidate.ruleCount,
      },
      'policy reloaded',
    );
    return { status: 'reloaded', digest: candidate.digest, previousDigest: previous.digest };
  }
}
