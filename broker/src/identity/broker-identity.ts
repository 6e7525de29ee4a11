// The broker's identity while it runs: its own X.509-SVID and the trust bundles
// it validates callers against, kept current from files (cert-manager,
// trust-manager, csi-driver-spiffe, a Secret) and/or a SPIFFE Workload API.
//
// A new SVID or bundle is checked before it is put in service; one that fails
// keeps the previous one in force and is reported (log + reload-failures
// metric). Whoever serves TLS listens with onChange() and swaps its secure
// context, so live connections are never dropped.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { WorkloadApiClient, type BackoffOptions, type X509Context } from '@countersign/proto/workload-api';
import type { Clock } from '../clock.js';
import { CountersignError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import {
  BundleSet,
  bundleFromDer,
  parseBundle,
  type BundleFormat,
  type SpiffeBundleNotes,
  type TrustBundle,
} from './bundle.js';
import { BundleStore } from './bundle-store.js';
import { svidFromPem, type BrokerSvid } from './svid.js';
import { verifySvid } from './x509-svid.js';

export type SvidSourceSettings =
  | { source: 'files'; certFile: string; keyFile: string }
  | {
      source: 'workload_api';
      /** unix:///path or tcp://IP:port; undefined means SPIFFE_ENDPOINT_SOCKET. */
      address: string | undefined;
      /** Which SVID to use when several are offered; undefined means the first. */
      spiffeId: string | undefined;
      timeoutMs: number;
      /** Also trust the bundles the Workload API sends. */
      trustBundles: boolean;
    };

export interface IdentitySettings {
  svid: SvidSourceSettings;
  bundles: { trustDomain: string; file: string; format: BundleFormat }[];
  reloadIntervalMs: number;
  /** Workload API reconnect backoff (tests shorten it). */
  workloadApiBackoff?: BackoffOptions;
  env?: NodeJS.ProcessEnv;
}

export interface IdentityDeps {
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
}

/** What the TLS listener needs; changes on every rotation. */
export interface TlsMaterial {
  certChainPem: string;
  keyPem: string;
  authoritiesPem: string;
}

/** A set of files read and applied together (an SVID is a certificate and a key). */
interface FileGroup {
  kind: 'svid' | 'bundle';
  label: string;
  paths: string[];
  apply(contents: string[]): void | Promise<void>;
  /** Hash of the contents in force. */
  applied?: string;
  /** Contents that failed once; reported if still there at the next check (writers are not atomic). */
  suspect?: string;
  /** Contents that failed and were reported; not reported again. */
  reported?: string;
}

/** Polling never goes faster than this, whatever a bundle's refresh hint says. */
const MIN_POLL_MS = 100;

const hashOf = (parts: string[]): string => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
};

const fingerprint = (bundle: TrustBundle): string =>
  bundle.x509Authorities.map((a) => a.certificate.fingerprint256).join(',');

export class BrokerIdentity {
  readonly bundles: BundleStore;
  private currentSvid: BrokerSvid | undefined;
  private readonly fileBundles = new Map<string, TrustBundle>();
  private apiBundles = new Map<string, TrustBundle>();
  private readonly groups: FileGroup[] = [];
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private pollMs: number;
  private polling = false;
  /** Workload API updates, applied one after another. */
  private applyingContext: Promise<void> = Promise.resolve();
  private workloadApi: WorkloadApiClient | undefined;
  private stopWatching: (() => void) | undefined;
  private closed = false;

  private constructor(
    private readonly settings: IdentitySettings,
    private readonly deps: IdentityDeps,
  ) {
    this.bundles = new BundleStore(new BundleSet([]));
    this.pollMs = settings.reloadIntervalMs;
  }

  /** Loads the SVID and bundles; throws a coded error when the first ones are unusable. */
  static async start(settings: IdentitySettings, deps: IdentityDeps): Promise<BrokerIdentity> {
    const identity = new BrokerIdentity(settings, deps);
    try {
      await identity.init();
    } catch (e) {
      identity.close();
      throw e;
    }
    return identity;
  }

  /** The SVID in service (start() resolves only once there is one). */
  get svid(): BrokerSvid {
    if (this.currentSvid === undefined) throw new Error('BrokerIdentity used before start() finished');
    return this.currentSvid;
  }

  tls(): TlsMaterial {
    return {
      certChainPem: this.svid.certChainPem,
      keyPem: this.svid.keyPem,
      authoritiesPem: this.bundles.current.allAuthoritiesPem(),
    };
  }

  /** Called after the SVID or the bundles changed. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Checks the files now instead of at the next tick (tests, SIGHUP). */
  async reloadFiles(): Promise<void> {
    await this.poll(false);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.stopWatching?.();
    this.workloadApi?.close();
  }

  private async init(): Promise<void> {
    const { settings } = this;
    for (const entry of settings.bundles) {
      const notes: SpiffeBundleNotes = { ignored: [] };
      this.groups.push({
        kind: 'bundle',
        label: `bundle ${entry.file} (${entry.trustDomain})`,
        paths: [entry.file],
        apply: ([text]) =>
          this.applyFileBundle(
            entry.trustDomain,
            parseBundle(entry.trustDomain, text as string, entry.format, entry.file, notes),
            notes,
          ),
      });
    }
    if (settings.svid.source === 'files') {
      const { certFile, keyFile } = settings.svid;
      this.groups.push({
        kind: 'svid',
        label: `SVID ${certFile}`,
        paths: [certFile, keyFile],
        apply: ([cert, key]) =>
          this.applySvid(svidFromPem(cert as string, key as string, `SVID ${certFile} / ${keyFile}`)),
      });
    }
    await this.poll(true);
    if (settings.svid.source === 'workload_api') await this.startWorkloadApi(settings.svid);
    this.publishBundles();
    this.deps.metrics.svidExpiry.set(Math.floor(this.svid.notAfter / 1000));
    if (this.groups.length > 0) this.schedule();
  }

  // ----- files -----

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.poll(false)
        .catch((err: unknown) => this.deps.logger.error({ err }, 'identity file check failed'))
        .finally(() => this.schedule());
    }, this.pollMs);
    this.timer.unref();
  }

  private async poll(strict: boolean): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    let bundlesChanged = false;
    let svidChanged = false;
    try {
      for (const group of this.groups) {
        const contents = await Promise.all(
          group.paths.map((p) => readFile(p, 'utf8').catch((e: NodeJS.ErrnoException) => new ReadFailure(p, e))),
        );
        const failure = contents.find((c): c is ReadFailure => c instanceof ReadFailure);
        const key = failure ? `unreadable:${failure.message}` : hashOf(contents as string[]);
        if (key === group.applied) {
          group.suspect = undefined;
          continue;
        }
        if (key === group.reported) continue;
        try {
          if (failure)
            throw new CountersignError('invalid_argument', 'ERR_IDENTITY_FILE', failure.message, {
              file: failure.path,
            });
          await group.apply(contents as string[]);
          group.applied = key;
          group.suspect = group.reported = undefined;
          if (group.kind === 'svid') svidChanged = true;
          else bundlesChanged = true;
          if (!strict) this.deps.logger.info({ what: group.label }, `reloaded ${group.label}`);
        } catch (e) {
          if (strict) throw e;
          if (group.suspect !== key) {
            group.suspect = key; // maybe caught mid-write; judge at the next check
            continue;
          }
          group.suspect = undefined;
          group.reported = key;
          this.reportFailure(group.kind, `${group.label}: ${(e as Error).message}`, e);
        }
      }
    } finally {
      this.polling = false;
    }
    if (!strict && (bundlesChanged || svidChanged)) {
      if (bundlesChanged) this.publishBundles();
      this.changed(svidChanged ? 'svid' : 'bundle');
    }
  }

  private applyFileBundle(trustDomain: string, bundle: TrustBundle, notes: SpiffeBundleNotes): void {
    const previous = this.fileBundles.get(trustDomain);
    if (previous?.sequence !== undefined && bundle.sequence !== undefined && bundle.sequence < previous.sequence) {
      throw new CountersignError(
        'invalid_argument',
        'ERR_BUNDLE_SEQUENCE_ROLLBACK',
        `spiffe_sequence went back from ${previous.sequence} to ${bundle.sequence}; an older bundle is not put back in service`,
      );
    }
    if (notes.ignored.length > 0)
      this.deps.logger.info(
        { trustDomain, ignored: notes.ignored },
        `bundle of ${trustDomain}: ${notes.ignored.length} JWK entries ignored`,
      );
    notes.ignored.length = 0;
    this.fileBundles.set(trustDomain, bundle);
    // A bundle's refresh hint asks to be checked that often (SPIFFE bundle spec 4.1.2).
    const hints = [...this.fileBundles.values()].map((b) =>
      b.refreshHintSeconds === undefined ? Infinity : b.refreshHintSeconds * 1000,
    );
    this.pollMs = Math.max(MIN_POLL_MS, Math.min(this.settings.reloadIntervalMs, ...hints));
  }

  // ----- the SVID -----

  /** Checks a new SVID against the one in force and against its own trust domain's bundle. */
  private async applySvid(svid: BrokerSvid): Promise<void> {
    const bundles = this.mergedBundles();
    const previous = this.currentSvid;
    if (previous !== undefined) {
      if (svid.spiffeId !== previous.spiffeId) {
        throw new CountersignError(
          'invalid_argument',
          'ERR_IDENTITY_SVID',
          `the new SVID is ${svid.spiffeId}, the broker is ${previous.spiffeId}; restart to change the broker's identity`,
        );
      }
      if (svid.serial === previous.serial && svid.certChainPem === previous.certChainPem) return;
      // Only a working SVID replaces a working one: it must validate, now, against its trust domain.
      if (bundles.getBundle(svid.trustDomain) !== undefined) {
        await verifySvid(svid.chainDer, bundles, { now: this.deps.clock.now(), role: 'server' });
      }
    } else if (bundles.getBundle(svid.trustDomain) !== undefined) {
      try {
        await verifySvid(svid.chainDer, bundles, { now: this.deps.clock.now(), role: 'server' });
      } catch (e) {
        this.deps.logger.warn(
          { code: (e as CountersignError).code },
          `the broker's own SVID does not validate against its trust bundle: ${(e as Error).message}`,
        );
      }
    }
    this.currentSvid = svid;
    this.deps.metrics.svidExpiry.set(Math.floor(svid.notAfter / 1000));
    if (previous !== undefined) {
      this.deps.logger.info(
        { spiffeId: svid.spiffeId, serial: svid.serial, notAfter: new Date(svid.notAfter).toISOString() },
        'broker SVID rotated',
      );
    }
  }

  // ----- the Workload API -----

  private async startWorkloadApi(settings: Extract<SvidSourceSettings, { source: 'workload_api' }>): Promise<void> {
    const { logger } = this.deps;
    let client: WorkloadApiClient;
    try {
      client = new WorkloadApiClient({
        address: settings.address,
        env: this.settings.env ?? process.env,
        ...(this.settings.workloadApiBackoff ? { backoff: this.settings.workloadApiBackoff } : {}),
        onRetry: (error, retryInMs) =>
          logger.warn({ reason: error.message, retryInMs }, 'workload api: stream lost, reconnecting'),
        onBadResponse: (error) => this.reportFailure('svid', error.message, error),
      });
    } catch (e) {
      throw new CountersignError('invalid_argument', 'ERR_IDENTITY_WORKLOAD_API', (e as Error).message);
    }
    this.workloadApi = client;
    let first: X509Context;
    try {
      first = await client.fetchX509Context(settings.timeoutMs);
    } catch (e) {
      throw new CountersignError('unavailable', 'ERR_IDENTITY_WORKLOAD_API', (e as Error).message);
    }
    await this.applyX509Context(first, true);
    logger.info(
      { endpoint: client.endpoint.address, spiffeId: this.svid.spiffeId },
      'broker SVID from the Workload API',
    );
    this.stopWatching = client.watchX509((context) => {
      if (context === first) return;
      // One update at a time, in the order the agent sent them.
      this.applyingContext = this.applyingContext.then(async () => {
        try {
          if (await this.applyX509Context(context, false)) this.changed('svid');
        } catch (e) {
          this.reportFailure('svid', (e as Error).message, e);
        }
      });
    });
  }

  /** Returns whether anything changed. Throws (start-up) or reports (later) what cannot be used. */
  private async applyX509Context(context: X509Context, strict: boolean): Promise<boolean> {
    const settings = this.settings.svid as Extract<SvidSourceSettings, { source: 'workload_api' }>;
    let bundlesChanged = false;
    if (settings.trustBundles) {
      const next = new Map<string, TrustBundle>();
      for (const [trustDomain, ders] of context.bundles) {
        try {
          next.set(trustDomain, bundleFromDer(trustDomain, ders, `Workload API bundle of ${trustDomain}`));
        } catch (e) {
          if (strict) throw e;
          const kept = this.apiBundles.get(trustDomain);
          if (kept) next.set(trustDomain, kept);
          this.reportFailure('bundle', (e as Error).message, e);
        }
      }
      bundlesChanged =
        next.size !== this.apiBundles.size ||
        [...next].some(
          ([td, b]) =>
            this.apiBundles.get(td) === undefined ||
            fingerprint(this.apiBundles.get(td) as TrustBundle) !== fingerprint(b),
        );
      this.apiBundles = next;
      if (bundlesChanged) this.publishBundles();
    }
    const chosen =
      settings.spiffeId === undefined ? context.svids[0] : context.svids.find((s) => s.spiffeId === settings.spiffeId);
    if (chosen === undefined) {
      throw new CountersignError(
        'invalid_argument',
        'ERR_IDENTITY_WORKLOAD_API',
        `workload api: no SVID for ${settings.spiffeId} among ${context.svids.map((s) => s.spiffeId).join(', ')}`,
      );
    }
    const before = this.currentSvid;
    await this.applySvid(svidFromPem(chosen.certChainPem, chosen.keyPem, `Workload API SVID ${chosen.spiffeId}`));
    return bundlesChanged || before?.serial !== this.svid.serial;
  }

  // ----- shared -----

  /** Workload API bundles and file bundles; a configured file wins for its trust domain. */
  private mergedBundles(): BundleSet {
    const merged = new Map(this.apiBundles);
    for (const [td, bundle] of this.fileBundles) merged.set(td, bundle);
    return new BundleSet(merged.values());
  }

  private publishBundles(): void {
    this.bundles.replace(this.mergedBundles());
  }

  private changed(kind: 'svid' | 'bundle'): void {
    this.deps.metrics.identityUpdates.inc({ kind });
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (err) {
        this.deps.logger.error({ err }, 'identity change listener failed');
      }
    }
  }

  private reportFailure(kind: 'svid' | 'bundle', message: string, error: unknown): void {
    this.deps.metrics.reloadFailures.inc({ kind });
    this.deps.logger.error(
      {
        kind,
        code:
          error instanceof CountersignError || error instanceof Error ? (error as { code?: string }).code : undefined,
      },
      `kept the previous ${kind}: ${message}`,
    );
  }
}

class ReadFailure {
  readonly message: string;
  constructor(
    readonly path: string,
    error: NodeJS.ErrnoException,
  ) {
    this.message = `${path}: cannot read: ${error.code === 'ENOENT' ? 'no such file' : error.message}`;
  }
}
