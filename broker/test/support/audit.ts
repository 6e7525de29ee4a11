// Reading what the broker audited, for assertions. One place that knows where
// the audit log keeps its events: a hash chain list (audit:chain, one record
// {seq, at, prev, hash, event} per element) or, before that, a stream (audit).
import { chainRecords, parseRecord, serializeRecord, type AuditRecord } from '../../src/audit/chain.js';
import { createLocalJWKSet } from 'jose';
import { KeyringHeadSigner } from '../../src/audit/head.js';
import type { AuditKeyring } from '../../src/audit/jws.js';
import type { Redis } from '../../src/redis/connection.js';

/** Signs and checks chain heads with a keyring, as the broker does (issuer: the dev broker's). */
export const testHeadSigner = (
  keyring: AuditKeyring,
  issuer = 'spiffe://example.org/countersign/broker',
): KeyringHeadSigner => new KeyringHeadSigner(keyring, issuer, createLocalJWKSet(keyring.allPublicJwks()));

export type AuditedEvent = { type: string; request_id?: string; [field: string]: unknown };

export async function auditEvents(redis: Redis, prefix: string): Promise<AuditedEvent[]> {
  const chain = `${prefix}audit:chain`;
  if ((await redis.type(chain)) === 'list') {
    return (await redis.lrange(chain, 0, -1)).map((line) => (JSON.parse(line) as { event: AuditedEvent }).event);
  }
  const entries = await redis.xrange(`${prefix}audit`, '-', '+');
  return entries.map(([, fields]) => JSON.parse(fields[1] as string) as AuditedEvent);
}

// What an attacker with write access to Redis (and without the signing key) can
// do to the chain: read it, edit records, recompute every hash after an edit,
// and write it all back, head included. Used by the tamper tests.

/** The chain's records, as parsed from Redis. */
export async function readChain(redis: Redis, prefix: string): Promise<AuditRecord[]> {
  return (await redis.lrange(`${prefix}audit:chain`, 0, -1)).map((line) => parseRecord(line) as AuditRecord);
}

/** The records with every hash from `fromSeq` on recomputed (each keeps its own time), after `edit` changed them. */
export function rechain(
  records: AuditRecord[],
  fromSeq: number,
  edit: (r: AuditRecord) => void = () => {},
): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (const original of records) {
    const r: AuditRecord = structuredClone(original);
    if (r.seq >= fromSeq) {
      edit(r);
      const before = out[out.length - 1];
      const head = before === undefined ? { seq: r.seq - 1, hash: r.prev } : { seq: before.seq, hash: before.hash };
      out.push((chainRecords(head, [r.event], r.at)[0] as { record: AuditRecord }).record);
    } else {
      out.push(r);
    }
  }
  return out;
}

/** Replaces the chain in Redis with these records. */
export async function writeChain(redis: Redis, prefix: string, records: AuditRecord[]): Promise<void> {
  await redis.del(`${prefix}audit:chain`);
  if (records.length > 0) await redis.rpush(`${prefix}audit:chain`, ...records.map(serializeRecord));
}

/** Points the head at a record, as the broker would have after appending it (other head fields are left alone). */
export async function setHead(redis: Redis, prefix: string, record: AuditRecord): Promise<void> {
  await redis.hset(`${prefix}audit:head`, 'seq', record.seq, 'hash', record.hash, 'at', record.at);
}

/** Copies the audit keys (chain, head, checkpoints) under another prefix, to tamper with a copy. */
export async function copyAudit(redis: Redis, from: string, to: string): Promise<void> {
  for (const name of ['audit:chain', 'audit:head', 'audit:checkpoints']) {
    await redis.del(`${to}${name}`);
    if ((await redis.exists(`${from}${name}`)) === 1) await redis.copy(`${from}${name}`, `${to}${name}`);
  }
}
