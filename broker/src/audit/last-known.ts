// Where the chain had got to, according to what lives outside the chain list:
// the file sink's last lines, and the newest checkpoints in Redis. A broker
// starting up compares these with the chain in Redis (RedisAuditLog.recover),
// so a Redis that lost its data, or had its chain cut, does not go unnoticed.
import { open } from 'node:fs/promises';
import { decodeJwt, type JWTVerifyGetKey } from 'jose';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import type { KnownHead } from './audit-log.js';
import { parseRecord } from './chain.js';
import { verifyCheckpoint } from './checkpoints.js';
import { MAX_AUDIT_EVENT_BYTES } from './events.js';

const FIRST_READ = 64 * 1024;
/** A record line is at most an event plus its envelope; read that much (twice over) before giving up. */
const MAX_READ = 4 * MAX_AUDIT_EVENT_BYTES;

/** The furthest position named by the last complete lines of an audit JSON-lines file (records or checkpoints). */
export function furthestInLines(lines: string[]): KnownHead | undefined {
  let best: KnownHead | undefined;
  for (const line of lines) {
    let position: { seq: number; hash: string } | undefined = parseRecord(line);
    if (position === undefined) {
      try {
        const checkpoint = (JSON.parse(line) as { checkpoint?: unknown }).checkpoint;
        if (typeof checkpoint === 'string') {
          const claims = decodeJwt(checkpoint);
          if (Number.isSafeInteger(claims.seq) && typeof claims.hash === 'string')
            position = { seq: claims.seq as number, hash: claims.hash };
        }
      } catch {
        // a torn last line (the broker died mid-write): skip it
      }
    }
    if (position !== undefined && (best === undefined || position.seq > best.seq))
      best = { seq: position.seq, hash: position.hash, source: 'file' };
  }
  return best;
}

/** The last position the file sink recorded; undefined when the file is missing or holds none. */
export async function lastHeadInFile(file: string): Promise<KnownHead | undefined> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const { size } = await handle.stat();
    for (let want = FIRST_READ; ; want *= 4) {
      const length = Math.min(size, want);
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, size - length);
      const lines = buffer.toString('utf8').split('\n');
      // The first piece may be the end of a line that started before what was read.
      const complete = length === size ? lines : lines.slice(1);
      const found = furthestInLines(complete.map((l) => l.trim()).filter((l) => l !== ''));
      if (found !== undefined || length === size || want >= MAX_READ) return found;
    }
  } finally {
    await handle.close();
  }
}

/** The furthest position covered by the newest checkpoints in Redis that verify with the given keys. */
export async function lastCheckpointedHead(
  redis: Redis,
  keys: Keys,
  getKey: JWTVerifyGetKey,
): Promise<KnownHead | undefined> {
  const newest = await redisCall('audit read', () => redis.lrange(keys.auditCheckpoints(), -4, -1));
  let best: KnownHead | undefined;
  for (const jws of newest) {
    const checked = await verifyCheckpoint(jws, getKey);
    if (checked.ok && (best === undefined || checked.claims.seq > best.seq))
      best = { seq: checked.claims.seq, hash: checked.claims.hash, source: 'checkpoint' };
  }
  return best;
}
