// The audit trail. Every event is appended to a hash chain in Redis before the
// caller hears about what it records; a failed append means the caller gets
// UNAVAILABLE, never an unaudited answer.
//
// Appends are group-committed: events that arrive while a write is in flight go
// out together in the next one (each caller's events stay contiguous and in
// order), so the chain costs one Redis round trip per batch, not per event.
import { fileURLToPath } from 'node:url';
import type { Clock } from '../clock.js';
import { CountersignError, unavailable } from '../errors.js';
import type { Redis } from '../redis/connection.js';
import { nodeServing, redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { loadScripts, registerScripts, type ScriptRunner } from '../redis/scripts.js';
import type { Logger } from '../observability/logger.js';
import { chainNormalized, EMPTY_HEAD, parseRecord, type AuditRecord, type ChainHead } from './chain.js';
import { normalizeEventText, type AuditEvent, type NormalizedEvent } from './events.js';
import type { HeadSigner, StoredHead } from './head.js';
import type { AuditSink } from './sinks.js';

export type { AuditEvent } from './events.js';
export type { AuditRecord, ChainHead } from './chain.js';
export { MAX_AUDIT_EVENT_BYTES } from './events.js';

export interface AuditLog {
  append(event: AuditEvent): Promise<AuditRecord>;
  /** Appends several events atomically and in order (contiguous sequence numbers). */
  appendAll(events: AuditEvent[]): Promise<AuditRecord[]>;
}

/** What must be true before an append counts as done (see docs/audit.md, "Durability"). */
export type { AuditDurability } from '../redis/connection.js';
import type { AuditDurability } from '../redis/connection.js';

export const NO_DURABILITY_WAIT: AuditDurability = { waitReplicas: 0, waitLocalFsync: false, timeoutMs: 1000 };

export interface RedisAuditLogOptions {
  /** Signs every new head, and checks heads this process did not write before appending after them. */
  heads: HeadSigner;
  durability?: AuditDurability;
  /** Copies of every appended record (stdout, file). */
  sink?: AuditSink;
  /** Told the new head after every append (checkpoints). */
  onAppended?: (head: ChainHead) => void;
  /** Most events in one write. */
  maxBatchEvents?: number;
  /** Chain restarts are logged here (as errors). */
  logger?: Logger;
  /**
   * Refuse to append (UNAVAILABLE, ERR_AUDIT_CHAIN_FORK) rather than record a
   * chain_restart when records this process acknowledged are no longer in Redis.
   * Set when writes are confirmed by replicas (redis.durability): then their loss
   * means a failover promoted a replica without them, and carrying on would fork
   * the chain; an operator looks, and a restarted broker records the restart.
   */
  refuseFork?: boolean;
}

export const AUDIT_LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url));

/** How often an append is retried when another replica moved the head meanwhile. */
const MAX_CONTENTION_RETRIES = 50;

/** Where the broker last knew the chain to end, and how it knows. */
export interface KnownHead extends ChainHead {
  source: 'memory' | 'file' | 'checkpoint';
}

/** Why the chain did not continue where the broker knew it to end (the chain_restart event's reason). */
export type ChainRestartReason =
  'redis_empty' | 'head_behind' | 'head_diverged' | 'head_unsigned' | 'head_signature_invalid';

interface Pending {
  events: NormalizedEvent[];
  resolve(records: AuditRecord[]): void;
  reject(error: unknown): void;
}

/** A head as read from Redis, with the hash of the record at the seq the reader expected (when asked). */
interface FoundHead extends StoredHead {
  hashAtExpected?: string | undefined;
}

const EMPTY_STORED: FoundHead = { ...EMPTY_HEAD, sig: undefined, checkpointSeq: 0, firstSeq: 1 };

export class RedisAuditLog implements AuditLog {
  private readonly scripts: ScriptRunner;
  private readonly durability: AuditDurability;
  private readonly maxBatch: number;
  private queue: Pending[] = [];
  private writing = false;
  /** The head as last written or verified by this process; undefined when unknown (start, or after a failed write). */
  private head: StoredHead | undefined;
  /** The furthest head this process knows the chain reached; never forgotten, so a chain cut behind it is noticed. */
  private lastKnown: KnownHead | undefined;
  /** A restart decided at start-up (recover) for a chain that ends past the known head but no longer holds it. */
  private divergedAtStart = false;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly clock: Clock,
    private readonly options: RedisAuditLogOptions,
  ) {
    this.scripts = registerScripts(redis, loadScripts(AUDIT_LUA_DIR));
    this.durability = options.durability ?? NO_DURABILITY_WAIT;
    this.maxBatch = options.maxBatchEvents ?? 512;
  }

  /**
   * Checks at start-up that Redis can give the durability configured, and says
   * what it cannot: returns warnings, throws when a configured wait is impossible.
   */
  async preflight(): Promise<string[]> {
    const warnings: string[] = [];
    const { waitReplicas, waitLocalFsync } = this.durability;
    if (waitLocalFsync) {
      try {
        await (await nodeServing(this.redis, this.keys.auditChain())).call('WAITAOF', 1, waitReplicas, 1);
      } catch (e) {
        if ((e as Error).name !== 'ReplyError') throw e;
        throw new CountersignError(
          'failed_precondition',
          'ERR_AUDIT_DURABILITY_UNSUPPORTED',
          `audit.durability.wait_local_fsync needs Redis 7.2+ with appendonly yes; Redis said: ${(e as Error).message}`,
        );
      }
    } else {
      try {
        const reply = (await this.redis.call('CONFIG', 'GET', 'appendonly')) as string[];
        if (reply[1] === 'no') {
          warnings.push(
            'Redis runs without AOF (appendonly no): an audit record is in memory when acknowledged and a Redis crash can lose the latest ones; see docs/audit.md, "Durability"',
          );
        }
      } catch {
        // CONFIG is often disabled on managed Redis; nothing to say then.
      }
    }
    return warnings;
  }

  async append(event: AuditEvent): Promise<AuditRecord> {
    return (await this.appendAll([event]))[0] as AuditRecord;
  }

  appendAll(events: AuditEvent[]): Promise<AuditRecord[]> {
    if (events.length === 0) return Promise.resolve([]);
    let normalized: NormalizedEvent[];
    try {
      normalized = events.map(normalizeEventText);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    return this.enqueue(normalized);
  }

  private enqueue(events: NormalizedEvent[]): Promise<AuditRecord[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ events, resolve, reject });
      if (this.writing) return;
      // The first write waits for the end of this turn of the event loop, so the events of
      // the calls that arrived together (one socket read) go in one write, instead of the
      // first call's alone and the others' a round trip later.
      this.writing = true;
      setImmediate(() => void this.drain());
    });
  }

  /**
   * At start-up, before anything is appended: compares the chain in Redis with
   * the last heads known from outside it (the file sink's last line, the newest
   * checkpoint) and, when Redis no longer holds the furthest of them, records a
   * chain_restart linked to it (and logs an error) instead of carrying on as if
   * nothing happened. On an empty Redis the numbering continues after it.
   */
  async recover(candidates: KnownHead[]): Promise<void> {
    const known = candidates.reduce<KnownHead | undefined>(
      (a, b) => (a === undefined || b.seq > a.seq ? b : a),
      undefined,
    );
    if (known === undefined || known.seq === 0) return;
    if (this.lastKnown === undefined || known.seq > this.lastKnown.seq) this.lastKnown = known;
    const head = await this.readHead();
    const length = await redisCall('audit head', () => this.redis.llen(this.keys.auditChain()));
    if (head.seq === 0 && length > 0) return; // appends refuse (ERR_AUDIT_HEAD_MISSING) until an operator looks
    if (head.seq >= known.seq && !(await this.holds(known, head))) this.divergedAtStart = true;
    await this.enqueue([]); // appends the restart when one is due, nothing otherwise
  }

  /** Whether the chain still holds the known record, or a restart already recorded its loss. */
  private async holds(known: ChainHead, head: StoredHead): Promise<boolean> {
    const chain = this.keys.auditChain();
    if (known.seq >= head.firstSeq) {
      const line = await redisCall('audit head', () => this.redis.lindex(chain, known.seq - head.firstSeq));
      return line != null && parseRecord(line)?.hash === known.hash;
    }
    const first = await redisCall('audit head', () => this.redis.lindex(chain, 0));
    const event = first == null ? undefined : parseRecord(first)?.event;
    return (
      event?.type === 'chain_restart' && typeof event.last_known_seq === 'number' && event.last_known_seq >= known.seq
    );
  }

  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        const batch: Pending[] = [];
        let count = 0;
        while (
          this.queue.length > 0 &&
          (batch.length === 0 || count + (this.queue[0] as Pending).events.length <= this.maxBatch)
        ) {
          const next = this.queue.shift() as Pending;
          batch.push(next);
          count += next.events.length;
        }
        try {
          const records = await this.write(batch.flatMap((p) => p.events));
          let offset = 0;
          for (const p of batch) {
            p.resolve(records.slice(offset, offset + p.events.length));
            offset += p.events.length;
          }
        } catch (e) {
          for (const p of batch) p.reject(e);
        }
      }
    } finally {
      this.writing = false;
    }
  }

  private async readHead(): Promise<FoundHead> {
    const [seq, hash, sig, checkpointSeq, firstSeq] = await redisCall('audit head', () =>
      this.redis.hmget(this.keys.auditHead(), 'seq', 'hash', 'sig', 'checkpoint_seq', 'first_seq'),
    );
    if (seq == null || hash == null) return EMPTY_STORED;
    return {
      seq: Number(seq),
      hash,
      sig: sig ?? undefined,
      checkpointSeq: Number(checkpointSeq ?? 0),
      firstSeq: Number(firstSeq ?? 1),
    };
  }

  /**
   * Whether a head this process did not write can be continued: it must not be
   * behind (or beside) the furthest head known, and it must carry a valid
   * signature. Anything else is recorded as a chain restart, never blessed by
   * signing a new head over it in silence.
   */
  private async assess(head: FoundHead): Promise<ChainRestartReason | undefined> {
    const known = this.lastKnown;
    if (this.divergedAtStart) return 'head_diverged';
    if (head.seq === 0) return known !== undefined && known.seq > 0 ? 'redis_empty' : undefined;
    if (known !== undefined) {
      if (head.seq < known.seq) return 'head_behind';
      if (head.seq === known.seq && head.hash !== known.hash) return 'head_diverged';
      if (head.hashAtExpected !== undefined && head.hashAtExpected !== known.hash) return 'head_diverged';
    }
    const verified = await this.options.heads.verify(head.sig, head);
    if (!verified.ok) return verified.code === 'ERR_AUDIT_HEAD_UNSIGNED' ? 'head_unsigned' : 'head_signature_invalid';
    return undefined;
  }

  private restartEvent(reason: ChainRestartReason, head: FoundHead): NormalizedEvent {
    const known = this.lastKnown;
    const event = normalizeEventText({
      type: 'chain_restart',
      reason,
      found_seq: head.seq,
      found_hash: head.seq === 0 ? null : head.hash,
      last_known_seq: known?.seq ?? null,
      last_known_hash: known?.hash ?? null,
      source: known?.source ?? null,
    });
    this.options.logger?.error(
      {
        reason,
        foundSeq: head.seq,
        lastKnownSeq: known?.seq,
        lastKnownSource: known?.source,
        chain: this.keys.auditChain(),
      },
      `audit chain restart (${reason}): the chain in Redis ends at seq ${head.seq}, not where this broker knew it to be` +
        `${known === undefined ? '' : ` (seq ${known.seq}, from ${known.source})`}; recorded as chain_restart. Records may have been lost or altered: run countersign-broker audit verify --against the file sink`,
    );
    return event;
  }

  private async write(events: NormalizedEvent[]): Promise<AuditRecord[]> {
    try {
      let head: FoundHead = this.head ?? (await this.readHead());
      let trusted = this.head !== undefined;
      for (let attempt = 0; attempt <= MAX_CONTENTION_RETRIES; attempt++) {
        const reason = trusted ? undefined : await this.assess(head);
        if (
          this.options.refuseFork &&
          reason !== undefined &&
          this.lastKnown?.source === 'memory' &&
          reason !== 'head_unsigned' &&
          reason !== 'head_signature_invalid'
        ) {
          const known = this.lastKnown;
          this.options.logger?.error(
            { reason, foundSeq: head.seq, lastAcknowledgedSeq: known.seq, chain: this.keys.auditChain() },
            `audit chain fork refused (${reason}): Redis ends at seq ${head.seq}, but this broker acknowledged seq ${known.seq}; writes stop until an operator checks the failover (restarting the broker records a chain_restart)`,
          );
          throw unavailable(
            'ERR_AUDIT_CHAIN_FORK',
            `audit append refused: the chain in Redis ends at seq ${head.seq}${head.seq === 0 ? '' : ` (${head.hash.slice(0, 16)}…)`}, not at seq ${known.seq} that this broker acknowledged (${reason}); a failover lost acknowledged records`,
          );
        }
        if (reason === undefined && events.length === 0) {
          this.head = head;
          return [];
        }
        const restart = reason === undefined ? [] : [this.restartEvent(reason, head)];
        // On an empty Redis the chain goes on after the last known head, so copies outside Redis stay one chain.
        const continueAfterLoss = reason === 'redis_empty' && this.lastKnown !== undefined;
        const base: ChainHead = continueAfterLoss ? (this.lastKnown as KnownHead) : head;
        const now = this.clock.now();
        const chained = chainNormalized(base, [...restart, ...events], now);
        const records = chained.map((c) => c.record);
        const last = records[records.length - 1] as AuditRecord;
        const sig = this.options.heads.sign(last, head.checkpointSeq, now);
        const reply = (await redisCall('audit append', () =>
          this.scripts(
            'auditAppend',
            [this.keys.auditChain(), this.keys.auditHead()],
            [
              base.seq,
              base.hash,
              last.seq,
              last.hash,
              last.at,
              sig,
              continueAfterLoss ? '1' : '0',
              ...chained.map((c) => c.line),
            ],
          ),
        )) as [number, number, ...(string | number)[]];
        if (reply[0] === 1) {
          const firstSeq = continueAfterLoss ? base.seq + 1 : head.firstSeq;
          this.head = { seq: last.seq, hash: last.hash, sig, checkpointSeq: Number(reply[2] ?? 0), firstSeq };
          this.divergedAtStart = false;
          await this.waitDurable();
          // Known (acknowledged) only once durable: a record a failover took before its WAIT is not missed later.
          this.lastKnown = { seq: last.seq, hash: last.hash, source: 'memory' };
          for (const c of chained) this.options.sink?.write(c.line);
          this.options.onAppended?.(this.head);
          return records.slice(restart.length);
        }
        if (reply[0] === -1) {
          throw new CountersignError(
            'internal',
            'ERR_AUDIT_HEAD_MISSING',
            `audit chain ${this.keys.auditChain()} holds ${reply[1]} records but its head ${this.keys.auditHead()} is gone; refusing to start a second chain (run countersign-broker audit verify)`,
          );
        }
        const [, seq, hash, foundSig, checkpointSeq, firstSeq, hashAtExpected] = reply as [
          number,
          number,
          string,
          string,
          number,
          number,
          string,
        ];
        head = {
          seq,
          hash,
          sig: foundSig === '' ? undefined : foundSig,
          checkpointSeq: Number(checkpointSeq),
          firstSeq: Number(firstSeq),
        };
        if (trusted && hashAtExpected !== '') head.hashAtExpected = hashAtExpected;
        trusted = false;
      }
      throw unavailable(
        'ERR_AUDIT_CONTENTION',
        `audit append: the chain head moved ${MAX_CONTENTION_RETRIES} times in a row; try again`,
      );
    } catch (e) {
      // The write may or may not have happened; read the head again next time.
      this.head = undefined;
      throw e;
    }
  }

  /** Blocks until the configured replicas / AOF fsync have the write, or fails closed. */
  private async waitDurable(): Promise<void> {
    const { waitReplicas, waitLocalFsync, timeoutMs } = this.durability;
    if (!waitLocalFsync && waitReplicas === 0) return;
    // On a Cluster: the node that took the write, on the connection it went over.
    const node = await redisCall('audit WAIT', () => nodeServing(this.redis, this.keys.auditChain()));
    if (waitLocalFsync) {
      const [local, replicas] = (await redisCall('audit WAITAOF', () =>
        node.call('WAITAOF', waitLocalFsync ? 1 : 0, waitReplicas, timeoutMs),
      )) as [number, number];
      if (local < 1 || replicas < waitReplicas) {
        throw unavailable(
          'ERR_AUDIT_NOT_DURABLE',
          `audit append: not fsynced in time (local AOF ${local >= 1 ? 'yes' : 'no'}, ${replicas}/${waitReplicas} replicas within ${timeoutMs} ms)`,
        );
      }
    } else if (waitReplicas > 0) {
      const acked = (await redisCall('audit WAIT', () => node.call('WAIT', waitReplicas, timeoutMs))) as number;
      if (acked < waitReplicas) {
        throw unavailable(
          'ERR_AUDIT_NOT_DURABLE',
          `audit append: ${acked}/${waitReplicas} replicas acknowledged within ${timeoutMs} ms`,
        );
      }
    }
  }
}
