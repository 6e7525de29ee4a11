// Reading the audit trail back: from Redis (by sequence or time range) for
// `audit export` and `audit verify`, and from an exported JSON-lines file.
import { readFile } from 'node:fs/promises';
import { decodeJwt } from 'jose';
import { CountersignError } from '../errors.js';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { parseRecord, type ChainHead } from './chain.js';

export interface AuditRange {
  fromSeq?: number | undefined;
  toSeq?: number | undefined;
  /** ms since the epoch: from the first record at or after this time. */
  since?: number | undefined;
  /** ms since the epoch: up to the last record at or before this time. */
  until?: number | undefined;
}

export interface AuditSnapshot {
  /** Record lines, in chain order. */
  records: string[];
  /** Checkpoints covering the records (compact JWS). */
  checkpoints: string[];
  /** Redis's head, when the snapshot reaches the end of the chain. */
  head: ChainHead | undefined;
  /** Whether the snapshot starts at the first record (seq 1). */
  fromGenesis: boolean;
}

const CHUNK = 1000;

const seqOf = (line: string): number | undefined => parseRecord(line)?.seq;
const atOf = (line: string): number | undefined => parseRecord(line)?.at;

function checkpointSeq(jws: string): number | undefined {
  try {
    const seq = decodeJwt(jws).seq;
    return Number.isSafeInteger(seq) ? (seq as number) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads a contiguous part of the chain. Sequence ranges address list positions
 * (position = seq - 1 in an intact chain, so a damaged one is exported as is and
 * the verifier reports it); time ranges run from the first record at or after
 * `since` to the last at or before `until`.
 */
export async function readAuditSnapshot(redis: Redis, keys: Keys, range: AuditRange = {}): Promise<AuditSnapshot> {
  // Read in this order while the broker keeps appending: checkpoints, then the head, then the
  // records up to that head. Every checkpoint read then covers a position at or before the
  // head, so one beyond the records means records were cut off, never a race.
  const allCheckpoints = await redisCall('audit read', () => redis.lrange(keys.auditCheckpoints(), 0, -1));
  const [seq, hash] = await redisCall('audit read', () => redis.hmget(keys.auditHead(), 'seq', 'hash'));
  const length = seq != null ? Number(seq) : await redisCall('audit read', () => redis.llen(keys.auditChain()));
  let start = Math.max(0, (range.fromSeq ?? 1) - 1);
  let end = Math.min(length - 1, (range.toSeq ?? length) - 1);
  const lines: string[] = [];
  for (let i = start; i <= end; i += CHUNK) {
    const chunk = await redisCall('audit read', () => redis.lrange(keys.auditChain(), i, Math.min(end, i + CHUNK - 1)));
    lines.push(...chunk);
  }
  let records = lines;
  if (range.since !== undefined || range.until !== undefined) {
    const from = range.since === undefined ? 0 : lines.findIndex((l) => (atOf(l) ?? -Infinity) >= (range.since as number));
    let to = lines.length - 1;
    if (range.until !== undefined) while (to >= 0 && (atOf(lines[to] as string) ?? Infinity) > range.until) to--;
    records = from === -1 || to < from ? [] : lines.slice(from, to + 1);
    start += from === -1 ? lines.length : from;
    end = start + records.length - 1;
  }
  const reachesEnd = end >= length - 1;
  const first = records.length > 0 ? seqOf(records[0] as string) : undefined;
  const last = records.length > 0 ? seqOf(records[records.length - 1] as string) : undefined;
  const checkpoints = allCheckpoints.filter((jws) => {
    const s = checkpointSeq(jws);
    // Keep unreadable ones: the verifier reports them.
    if (s === undefined) return true;
    if (reachesEnd && start === 0) return true;
    return (first === undefined || s >= first) && (last === undefined || s <= last || reachesEnd);
  });
  return {
    records,
    checkpoints,
    head: reachesEnd && seq != null && hash != null ? { seq: Number(seq), hash } : undefined,
    fromGenesis: start === 0,
  };
}

export const MAX_EXPORT_LINE_BYTES = 1024 * 1024;

/** Parses an exported JSON-lines file: record lines and {"checkpoint": JWS} lines. */
export async function readAuditExport(file: string): Promise<AuditSnapshot> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new CountersignError('invalid_argument', 'ERR_AUDIT_FILE', `audit file ${file}: cannot read: ${(e as Error).message}`);
  }
  const records: string[] = [];
  const checkpoints: string[] = [];
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '') continue;
    if (trimmed.length > MAX_EXPORT_LINE_BYTES) {
      records.push(trimmed.slice(0, 64)); // unparseable: reported at its position
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch {
      records.push(trimmed);
      continue;
    }
    const cp = (value as { checkpoint?: unknown } | null)?.checkpoint;
    if (typeof cp === 'string') checkpoints.push(cp);
    else records.push(trimmed);
  }
  const first = records.length > 0 ? seqOf(records[0] as string) : undefined;
  return { records, checkpoints, head: undefined, fromGenesis: first === 1 || records.length === 0 };
}
