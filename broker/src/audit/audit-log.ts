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
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { loadScripts, registerScripts, type ScriptRunner } from '../requests/scripts.js';
import { chainRecords, EMPTY_HEAD, type AuditRecord, type ChainHead } from './chain.js';
import { normalizeEvent, type AuditEvent } from './events.js';
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
export interface AuditDurability {
  /** Replicas that must have the write (Redis WAIT / WAITAOF); 0 = do not wait. */
  waitReplicas: number;
  /** Wait until the primary has fsynced its AOF (WAITAOF, Redis 7.2+). */
  waitLocalFsync: boolean;
  timeoutMs: number;
}

export const NO_DURABILITY_WAIT: AuditDurability = { waitReplicas: 0, waitLocalFsync: false, timeoutMs: 1000 };

export interface RedisAuditLogOptions {
  durability?: AuditDurability;
  /** Copies of every appended record (stdout, file). */
  sink?: AuditSink;
  /** Told the new head after every append (checkpoints). */
  onAppended?: (head: ChainHead) => void;
  /** Most events in one write. */
  maxBatchEvents?: number;
}

export const AUDIT_LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url));

/** How often an append is retried when another replica moved the head meanwhile. */
const MAX_CONTENTION_RETRIES = 50;

interface Pending {
  events: AuditEvent[];
  resolve(records: AuditRecord[]): void;
  reject(error: unknown): void;
}

export class RedisAuditLog implements AuditLog {
  private readonly scripts: ScriptRunner;
  private readonly durability: AuditDurability;
  private readonly maxBatch: number;
  private queue: Pending[] = [];
  private writing = false;
  /** The head as last seen; undefined when unknown (start, or after a failed write). */
  private head: ChainHead | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly clock: Clock,
    private readonly options: RedisAuditLogOptions = {},
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
        await this.redis.call('WAITAOF', 1, waitReplicas, 1);
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
    let normalized: AuditEvent[];
    try {
      normalized = events.map(normalizeEvent);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ events: normalized, resolve, reject });
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        const batch: Pending[] = [];
        let count = 0;
        while (this.queue.length > 0 && (batch.length === 0 || count + (this.queue[0] as Pending).events.length <= this.maxBatch)) {
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

  private async readHead(): Promise<ChainHead> {
    const [seq, hash] = await redisCall('audit head', () => this.redis.hmget(this.keys.auditHead(), 'seq', 'hash'));
    return seq == null || hash == null ? EMPTY_HEAD : { seq: Number(seq), hash };
  }

  private async write(events: AuditEvent[]): Promise<AuditRecord[]> {
    try {
      let head = this.head ?? (await this.readHead());
      for (let attempt = 0; attempt <= MAX_CONTENTION_RETRIES; attempt++) {
        const chained = chainRecords(head, events, this.clock.now());
        const records = chained.map((c) => c.record);
        const last = records[records.length - 1] as AuditRecord;
        const reply = (await redisCall('audit append', () =>
          this.scripts(
            'auditAppend',
            [this.keys.auditChain(), this.keys.auditHead()],
            [head.seq, head.hash, last.seq, last.hash, last.at, ...chained.map((c) => c.line)],
          ),
        )) as [number, number, string?];
        if (reply[0] === 1) {
          this.head = { seq: last.seq, hash: last.hash };
          await this.waitDurable();
          for (const c of chained) this.options.sink?.write(c.line);
          this.options.onAppended?.(this.head);
          return records;
        }
        if (reply[0] === -1) {
          throw new CountersignError(
            'internal',
            'ERR_AUDIT_HEAD_MISSING',
            `audit chain ${this.keys.auditChain()} holds ${reply[1]} records but its head ${this.keys.auditHead()} is gone; refusing to start a second chain (run countersign-broker audit verify)`,
          );
        }
        head = { seq: reply[1], hash: reply[2] as string };
      }
      throw unavailable('ERR_AUDIT_CONTENTION', `audit append: the chain head moved ${MAX_CONTENTION_RETRIES} times in a row; try again`);
    } catch (e) {
      // The write may or may not have happened; read the head again next time.
      this.head = undefined;
      throw e;
    }
  }

  /** Blocks until the configured replicas / AOF fsync have the write, or fails closed. */
  private async waitDurable(): Promise<void> {
    const { waitReplicas, waitLocalFsync, timeoutMs } = this.durability;
    if (waitLocalFsync) {
      const [local, replicas] = (await redisCall('audit WAITAOF', () =>
        this.redis.call('WAITAOF', waitLocalFsync ? 1 : 0, waitReplicas, timeoutMs),
      )) as [number, number];
      if (local < 1 || replicas < waitReplicas) {
        throw unavailable(
          'ERR_AUDIT_NOT_DURABLE',
          `audit append: not fsynced in time (local AOF ${local >= 1 ? 'yes' : 'no'}, ${replicas}/${waitReplicas} replicas within ${timeoutMs} ms)`,
        );
      }
    } else if (waitReplicas > 0) {
      const acked = (await redisCall('audit WAIT', () => this.redis.call('WAIT', waitReplicas, timeoutMs))) as number;
      if (acked < waitReplicas) {
        throw unavailable('ERR_AUDIT_NOT_DURABLE', `audit append: ${acked}/${waitReplicas} replicas acknowledged within ${timeoutMs} ms`);
      }
    }
  }
}
