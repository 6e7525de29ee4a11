// Passkeys and WebAuthn challenges in Redis. A principal's passkeys live in one
// hash (credential id -> JSON), so every change is one single-key script; a
// challenge is single use (consumeOnce). This module only moves data; what is
// allowed is decided in passkeys.ts.
import { fileURLToPath } from 'node:url';
import { normalizePrincipalName } from '../policy/principal-name.js';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { loadScripts, registerScripts, type ScriptRunner } from '../redis/scripts.js';

const canonical = (principal: string): string => normalizePrincipalName(principal, 'principal');

export const PASSKEY_LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url));

/** One registered passkey, as stored. */
export interface StoredPasskey {
  credential_id: string;
  /** COSE_Key, base64url. */
  public_key: string;
  counter: number;
  /** Comma-separated transports the browser reported (usb, internal, hybrid ...). */
  transports: string;
  aaguid: string;
  /** singleDevice or multiDevice (synced). */
  device_type: string;
  backed_up: boolean;
  /** A label the approver chose. */
  name: string;
  created_at: number;
  last_used_at: number;
  rp_id: string;
  origin: string;
}

export type ConsumeResult = { status: 'taken'; value: string } | { status: 'used' } | { status: 'unknown' };

export class PasskeyStore {
  private readonly scripts: ScriptRunner;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {
    this.scripts = registerScripts(redis, loadScripts(PASSKEY_LUA_DIR));
  }

  // Keyed by the principal's canonical name (normalizePrincipalName): "Alice" and "alice" are one person with one set of passkeys.
  async list(principal: string): Promise<StoredPasskey[]> {
    const all = await redisCall('read passkeys', () => this.redis.hvals(this.keys.passkeys(canonical(principal))));
    return all.map((text) => JSON.parse(text) as StoredPasskey).sort((a, b) => a.created_at - b.created_at);
  }

  async get(principal: string, credentialId: string): Promise<StoredPasskey | undefined> {
    const text = await redisCall('read passkey', () =>
      this.redis.hget(this.keys.passkeys(canonical(principal)), credentialId),
    );
    return text === null ? undefined : (JSON.parse(text) as StoredPasskey);
  }

  /** The principal's WebAuthn user handle, created on first use. */
  async userHandle(principal: string, fresh: () => string): Promise<string> {
    const key = this.keys.passkeyUser(canonical(principal));
    await redisCall('passkey user', () => this.redis.set(key, fresh(), 'NX'));
    return (await redisCall('passkey user', () => this.redis.get(key))) as string;
  }

  async register(
    principal: string,
    passkey: StoredPasskey,
    maxPerPrincipal: number,
  ): Promise<'registered' | 'exists' | 'too_many'> {
    const [code] = (await redisCall('register passkey', () =>
      this.scripts(
        'passkeyRegister',
        [this.keys.passkeys(canonical(principal))],
        [passkey.credential_id, JSON.stringify(passkey), maxPerPrincipal],
      ),
    )) as [number];
    return code === 1 ? 'registered' : code === -1 ? 'exists' : 'too_many';
  }

  async remove(principal: string, credentialId: string): Promise<StoredPasskey | undefined> {
    const [code, text] = (await redisCall('remove passkey', () =>
      this.scripts('passkeyRemove', [this.keys.passkeys(canonical(principal))], [credentialId]),
    )) as [number, string];
    return code === 1 ? (JSON.parse(text) as StoredPasskey) : undefined;
  }

  /** Records a verified assertion's counter; refuses one that did not go up. */
  async use(
    principal: string,
    credentialId: string,
    counter: number,
    now: number,
  ): Promise<{ status: 'recorded' } | { status: 'gone' } | { status: 'regressed'; stored: number }> {
    const [code, detail] = (await redisCall('record passkey use', () =>
      this.scripts('passkeyUse', [this.keys.passkeys(canonical(principal))], [credentialId, counter, now]),
    )) as [number, string];
    if (code === 1) return { status: 'recorded' };
    if (code === -1) return { status: 'gone' };
    return { status: 'regressed', stored: Number(detail) };
  }

  /** Stores a single-use item (challenge, sign-in link) for ttlMs. */
  async putOnce(key: string, value: string, ttlMs: number): Promise<void> {
    await redisCall('store single-use item', () => this.redis.set(key, value, 'PX', ttlMs));
  }

  /** Takes a single-use item: its value once, then "used"; "unknown" when it never existed or expired. */
  async consumeOnce(key: string, usedKey: string, usedTtlMs: number): Promise<ConsumeResult> {
    const [code, value] = (await redisCall('take single-use item', () =>
      this.scripts('consumeOnce', [key, usedKey], [usedTtlMs]),
    )) as [number, string];
    if (code === 1) return { status: 'taken', value };
    return code === -1 ? { status: 'used' } : { status: 'unknown' };
  }

  async putJson(key: string, value: unknown, ttlMs: number): Promise<void> {
    await redisCall('store', () => this.redis.set(key, JSON.stringify(value), 'PX', ttlMs));
  }

  async getJson<T>(key: string): Promise<T | undefined> {
    const text = await redisCall('read', () => this.redis.get(key));
    return text === null ? undefined : (JSON.parse(text) as T);
  }
}
