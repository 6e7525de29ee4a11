// Console sessions in Redis. The cookie holds a random id; Redis holds only its
// SHA-256, so a copy of Redis cannot be replayed as a cookie. A session ends
// after console.session.idle_timeout without a request or console.session.max_age
// after sign-in, judged by the injected clock (Redis expiry only cleans up).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../clock.js';
import { normalizePrincipalName } from '../policy/principal-name.js';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';

/**
 * How the person signed in. oidc and link (an operator's `principals link`) may
 * register passkeys; slack_link (a link Slack delivered) may not: a stolen Slack
 * session must not be enough to enrol a passkey (docs/console.md, "Threat model").
 */
export type SignInMethod = 'oidc' | 'link' | 'slack_link';
export const ENROLLING_METHODS: readonly SignInMethod[] = ['oidc', 'link'];

export interface Session {
  principal: string;
  method: SignInMethod;
  createdAt: number;
  lastSeen: number;
  /** Synchronizer token: every state-changing request carries it. */
  csrf: string;
  /** The latest passkey sign-in (rules with step_up_max_age): its id and time. */
  passkeySignIn?: { id: string; at: number } | undefined;
}

export const sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('base64url');
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export type LoadedSession =
  { ok: true; id: string; session: Session } | { ok: false; why: 'none' | 'expired' | 'idle' };

export class SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly clock: Clock,
    private readonly options: { idleTimeoutMs: number; maxAgeMs: number },
  ) {}

  private key(id: string): string {
    return this.keys.consoleSession(sha256(id));
  }

  private async save(id: string, s: Session): Promise<void> {
    const left = Math.max(
      1000,
      Math.min(s.createdAt + this.options.maxAgeMs, s.lastSeen + this.options.idleTimeoutMs) - this.clock.now(),
    );
    await redisCall('save session', () => this.redis.set(this.key(id), JSON.stringify(s), 'PX', left));
  }

  async create(name: string, method: SignInMethod): Promise<{ id: string; session: Session }> {
    const id = randomBytes(32).toString('base64url');
    const now = this.clock.now();
    // A session is one person under their one spelling: votes, passkeys and separation of duties compare it.
    const session: Session = {
      principal: normalizePrincipalName(name, 'principal'),
      method,
      createdAt: now,
      lastSeen: now,
      csrf: randomBytes(32).toString('base64url'),
    };
    await this.save(id, session);
    return { id, session };
  }

  /** The session of this cookie value, touched; or why there is none. */
  async load(id: string | undefined): Promise<LoadedSession> {
    if (id === undefined || !SESSION_ID.test(id)) return { ok: false, why: 'none' };
    const text = await redisCall('read session', () => this.redis.get(this.key(id)));
    if (text === null) return { ok: false, why: 'none' };
    const session = JSON.parse(text) as Session;
    const now = this.clock.now();
    if (now - session.createdAt >= this.options.maxAgeMs) {
      await this.destroy(id);
      return { ok: false, why: 'expired' };
    }
    if (now - session.lastSeen >= this.options.idleTimeoutMs) {
      await this.destroy(id);
      return { ok: false, why: 'idle' };
    }
    session.lastSeen = now;
    await this.save(id, session);
    return { ok: true, id, session };
  }

  async update(id: string, session: Session): Promise<void> {
    await this.save(id, session);
  }

  async destroy(id: string): Promise<void> {
    await redisCall('end session', () => this.redis.del(this.key(id)));
  }
}
