// The hash chain. Record n carries its sequence number, the hash of record n-1
// and the SHA-256 of its own canonical form, so changing, removing, inserting or
// reordering any record breaks the chain at a sequence number that can be named.
//
//   hash(n) = hex(SHA-256(JCS({ seq, at, prev: hash(n-1), event })))   (RFC 8785)
//   hash(0) = 64 zeros (the genesis "previous hash" of record 1)
import { sha256 } from '../digest.js';
import { jcs } from './canonical.js';
import type { AuditEvent, NormalizedEvent } from './events.js';

export const GENESIS_HASH = '0'.repeat(64);

/** One record of the chain, exactly as stored in Redis and exported (JSON). */
export interface AuditRecord {
  seq: number;
  /** When it was appended (ms since the epoch, broker clock). */
  at: number;
  /** hash of the previous record (GENESIS_HASH for seq 1). */
  prev: string;
  hash: string;
  event: AuditEvent;
}

/** Where the chain ends: the last record's seq and hash (seq 0 = empty chain). */
export interface ChainHead {
  seq: number;
  hash: string;
}

export const EMPTY_HEAD: ChainHead = { seq: 0, hash: GENESIS_HASH };

/** The hash a record must carry, computed from its other fields. */
export function recordHash(record: Pick<AuditRecord, 'seq' | 'at' | 'prev' | 'event'>): string {
  return sha256(jcs({ seq: record.seq, at: record.at, prev: record.prev, event: record.event }), 'hex');
}

/** A chained record and its stored text (the same bytes serializeRecord gives, built without a second JCS pass). */
export interface ChainedRecord {
  record: AuditRecord;
  line: string;
}

const sha256hex = (text: string): string => sha256(text, 'hex');

/** Chains already-normalized events after `head`, all stamped `at` (an integer, ms), canonicalising each. */
export function chainRecords(head: ChainHead, events: AuditEvent[], at: number): ChainedRecord[] {
  return chainNormalized(
    head,
    events.map((event) => ({ event, text: jcs(event) })),
    at,
  );
}

/** chainRecords for events given with their canonical text (events.ts normalizeEventText). */
export function chainNormalized(head: ChainHead, events: NormalizedEvent[], at: number): ChainedRecord[] {
  if (!Number.isSafeInteger(at)) throw new TypeError('audit record time must be an integer (ms)');
  const out: ChainedRecord[] = [];
  let prev = head.hash;
  let seq = head.seq;
  for (const { event, text: canonicalEvent } of events) {
    seq += 1;
    // JCS sorts keys: at < event < hash < prev < seq; integers and hex strings serialize as in JSON.
    const hash = sha256hex(`{"at":${at},"event":${canonicalEvent},"prev":"${prev}","seq":${seq}}`);
    out.push({
      record: { seq, at, prev, hash, event },
      line: `{"at":${at},"event":${canonicalEvent},"hash":"${hash}","prev":"${prev}","seq":${seq}}`,
    });
    prev = hash;
  }
  return out;
}

/** The stored text of a record: canonical JSON, so the same record is always the same bytes. */
export const serializeRecord = (record: AuditRecord): string => jcs(record);

const HEX64 = /^[0-9a-f]{64}$/;

/** Parses a stored or exported record; undefined when it is not one (the verifier reports it). */
export function parseRecord(text: string): AuditRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const r = value as Record<string, unknown>;
  if (!Number.isSafeInteger(r.seq) || (r.seq as number) < 1) return undefined;
  if (typeof r.at !== 'number' || typeof r.prev !== 'string' || typeof r.hash !== 'string') return undefined;
  if (!HEX64.test(r.prev) || !HEX64.test(r.hash)) return undefined;
  const event = r.event as Record<string, unknown> | null;
  if (event === null || typeof event !== 'object' || Array.isArray(event) || typeof event.type !== 'string')
    return undefined;
  return { seq: r.seq as number, at: r.at, prev: r.prev, hash: r.hash, event: event as AuditEvent };
}
