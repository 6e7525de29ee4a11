// Reading the audit trail back: from Redis (by sequence or time range) for
// `audit export` and `audit verify`, and from an exported JSON-lines file.
import { readFile } from 'node:fs/promises';
import { decodeJwt } from 'jose';
import { CountersignError } from '../errors.js';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { parseRecord } from './chain.js';

export interface AuditRange {
  fromSeq?: number | undefined;
  toSeq?: number | undefined;
  /** ms since the epoch: from the first record at or after this time. */
  since?: number | undefined;
  /** ms since the epoch: up to the last record at or before this time. */
  until?: number | undefined;
}

/** The chain's head as a snapshot saw it: from Redis's head hash, or from an export's {"head": JWS} line. */
export interface SnapshotHead {
  seq: number;
  hash: string;
  /** Its signature (compact JWS); undefined when the head carries none. */
  sig: string | undefined;
  /** The newest checkpoint the head hash says was stored (0: none, or not known). */
  checkpointSeq: number;
}

export interface AuditSnapshot {
  /** Record lines, in chain order. */
  records: string[];
  /** Checkpoints covering the records (compact JWS). */
  checkpoints: string[];
  /** The head, when the snapshot reaches the end of the chain and one exists. */
  head: SnapshotHead | undefined;
  /** Redis holds records but no head (deleted): the end of the chain cannot be checked. */
  headMissing: boolean;
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

/** An export's head line: what it claims (audit verify checks the signature and that the records end there). */
function headFromJws(jws: string): SnapshotHead {
  try {
    const claims = decodeJwt(jws);
    const seq = Number.isSafeInteger(claims.seq) ? (claims.seq as number) : -1;
    return { seq, hash: typeof claims.hash === 'string' ? claims.hash : '', sig: jws, checkpointSeq: 0 };
  } catch {
    return { seq: -1, hash: '', sig: jws, checkpointSeq: 0 };
  }
}

/** The line an export ends with when it reaches the end of the chain: the signed head. */
export const headLine = (jws: string): string => JSON.stringify({ head: jws });

/**
 * Reads a contiguous part of the chain. Sequence ranges address list positions
 * (position = seq - first_seq in an intact chain, first_seq being 1 unless the
 * chain restarted on an empty Redis, so a damaged one is exported as is and the
 * verifier reports it); time ranges run from the first record at or after
 * `since` to the last at or before `until`.
 */
export async function readAuditSnapshot(redis: Redis, keys: Keys, range: AuditRange = {}): Promise<AuditSnapshot> {
  // The head, the chain's length and the checkpoints in one atomic read, while the broker keeps
  // appending: every checkpoint then covers a position at or before the head, records past the
  // head were appended around the broker, and anything appended later is simply not read.
  const replies = await redisCall('audit read', () =>
    redis
      .multi()
      .hmget(keys.auditHead(), 'seq', 'hash', 'sig', 'checkpoint_seq', 'first_seq')
      .llen(keys.auditChain())
      .lrange(keys.auditCheckpoints(), 0, -1)
      .exec(),
  );
  const failed = replies?.find(([e]) => e !== null)?.[0];
  if (replies == null || failed) throw failed ?? new Error('audit read: transaction aborted');
  const [seq, hash, sig, headCheckpointSeq, firstSeqText] = replies[0]?.[1] as (string | null)[];
  const length = replies[1]?.[1] as number;
  const allCheckpoints = replies[2]?.[1] as string[];
  // The list's first element holds seq first_seq (1, or more after a restart on an empty Redis).
  const firstSeq = Number(firstSeqText ?? 1);
  let start = Math.max(0, (range.fromSeq ?? firstSeq) - firstSeq);
  let end = Math.min(length - 1, (range.toSeq ?? firstSeq + length - 1) - firstSeq);
  const lines: string[] = [];
  for (let i = start; i <= end; i += CHUNK) {
    const chunk = await redisCall('audit read', () => redis.lrange(keys.auditChain(), i, Math.min(end, i + CHUNK - 1)));
    lines.push(...chunk);
  }
  let records = lines;
  if (range.since !== undefined || range.until !== undefined) {
    const from =
      range.since === undefined ? 0 : lines.findIndex((l) => (atOf(l) ?? -Infinity) >= (range.since as number));
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
  const headKnown = seq != null && hash != null;
  return {
    records,
    checkpoints,
    head:
      reachesEnd && headKnown
        ? { seq: Number(seq), hash, sig: sig ?? undefined, checkpointSeq: Number(headCheckpointSeq ?? 0) }
        : undefined,
    headMissing: !headKnown && length > 0,
    fromGenesis: start === 0 && firstSeq === 1,
  };
}

export const MAX_EXPORT_LINE_BYTES = 1024 * 1024;

/** Parses an exported JSON-lines file: record lines, {"checkpoint": JWS} lines and a last {"head": JWS} line. */
export async function readAuditExport(file: string): Promise<AuditSnapshot> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new CountersignError(
      'invalid_argument',
      'ERR_AUDIT_FILE',
      `audit file ${file}: cannot read: ${(e as Error).message}`,
    );
  }
  const records: string[] = [];
  const checkpoints: string[] = [];
  let head: SnapshotHead | undefined;
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
    const signedHead = (value as { head?: unknown } | null)?.head;
    if (typeof cp === 'string') checkpoints.push(cp);
    else if (typeof signedHead === 'string') head = headFromJws(signedHead);
    else records.push(trimmed);
  }
  const first = records.length > 0 ? seqOf(records[0] as string) : undefined;
  return { records, checkpoints, head, headMissing: false, fromGenesis: first === 1 || records.length === 0 };
}
