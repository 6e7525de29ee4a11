// Audits each change of the key that signs credentials, once across replicas:
// the last signing kid lives in Redis and SET ... GET tells exactly one replica
// that it saw the change first.
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import type { Keyring } from './keys.js';

export class KeyRotationRecorder {
  private lastKid: string | undefined;

  constructor(
    private readonly deps: {
      redis: Redis;
      keys: Keys;
      keyring: Keyring;
      audit: AuditLog;
      clock: Clock;
      logger: Logger;
    },
  ) {}

  /** Records a key_rotation event when the signing key differs from the last one recorded. */
  async check(kid: string = this.deps.keyring.signingKey(this.deps.clock.now()).kid): Promise<void> {
    if (kid === this.lastKid) return;
    await redisCall('key rotation', () =>
      this.deps.redis.hsetnx(this.deps.keys.signingSince(), kid, String(this.deps.clock.now())),
    );
    const key = this.deps.keys.signingKid();
    const previous = await redisCall('key rotation', () => this.deps.redis.set(key, kid, 'GET'));
    if (previous === kid) {
      this.lastKid = kid;
      return;
    }
    const now = this.deps.clock.now();
    const status = this.deps.keyring.status(now);
    const appended = this.deps.audit.append({
      type: 'key_rotation',
      signing_kid: kid,
      previous_kid: previous,
      published: status.filter((s) => s.state !== 'expired').map((s) => s.kid),
      keys: status.map((s) => ({
        kid: s.kid,
        alg: s.alg,
        state: s.state,
        activate_at: s.activateAt,
        published_until: s.publishedUntil,
      })),
    });
    try {
      await appended;
    } catch (e) {
      // Put the previous kid back so that this change is recorded on the next try.
      await (previous === null ? this.deps.redis.del(key) : this.deps.redis.set(key, previous)).catch(() => undefined);
      throw e;
    }
    this.lastKid = kid;
    this.deps.logger.info(
      { kid, previousKid: previous },
      previous === null ? 'signing key recorded' : 'signing key rotated',
    );
  }

  /** The signing key and since when it signs: its schedule's activate_at, else when a broker first saw it sign. */
  async signingSince(): Promise<{ kid: string; since: number } | undefined> {
    const now = this.deps.clock.now();
    const kid = this.deps.keyring.signingKey(now).kid;
    const activateAt = this.deps.keyring.status(now).find((s) => s.kid === kid)?.activateAt;
    if (activateAt !== undefined) return { kid, since: activateAt };
    const since = await redisCall('signing key age', () => this.deps.redis.hget(this.deps.keys.signingSince(), kid));
    return since === null ? undefined : { kid, since: Number(since) };
  }

  /** For the minting hot path: a cheap comparison, the rare change recorded in the background. */
  noteKeyUsed(kid: string): void {
    if (kid === this.lastKid) return;
    this.check(kid).catch((err: unknown) => {
      this.deps.logger.warn({ err, kid }, 'could not audit a signing key rotation; will retry on the next credential');
    });
  }
}
