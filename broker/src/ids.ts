// Random identifiers (request ids, credential jti). Small randomBytes() calls are
// costly on the hot path, so bytes are drawn from a pool refilled 4 KiB at a time.
import { randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let offset = POOL_SIZE;

export function randomId(bytes = 16): string {
  if (offset + bytes > POOL_SIZE) {
    randomFillSync(pool);
    offset = 0;
  }
  const id = pool.toString('base64url', offset, offset + bytes);
  offset += bytes;
  return id;
}

/** Request ids: "req_" and 96 random bits. */
export const newRequestId = (): string => `req_${randomId(12)}`;
