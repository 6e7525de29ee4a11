// One-time sign-in links: `countersign-broker principals link NAME`, the dev
// banner, and (with Slack on) "Sign in to approve" sent to one person. The token
// travels in the URL fragment (#t=...), which browsers never send to servers, so
// it stays out of access logs and Referer headers; Redis keeps only its SHA-256.
// Single use (consumeOnce), short-lived, audited when issued.
import { randomBytes } from 'node:crypto';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { PasskeyStore } from '../passkeys/store.js';
import { normalizePrincipalName } from '../policy/principal-name.js';
import type { Keys } from '../redis/keys.js';
import { sha256, type SignInMethod } from './sessions.js';

interface LinkRecord {
  principal: string;
  /** The request page to open after signing in, if any. */
  request_id: string;
  method: SignInMethod;
  expires_at: number;
}

export type LinkUse =
  | { ok: true; principal: string; requestId: string | undefined; method: SignInMethod }
  | {
      ok: false;
      code: 'ERR_SIGN_IN_LINK_USED' | 'ERR_SIGN_IN_LINK_UNKNOWN' | 'ERR_SIGN_IN_LINK_EXPIRED';
      message: string;
    };

export const LINK_PATH = '/sign-in/link';
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

export class SignInLinks {
  constructor(
    private readonly deps: { store: PasskeyStore; keys: Keys; audit: AuditLog; clock: Clock },
    private readonly options: { publicUrl: () => string; ttlMs: number },
  ) {}

  /** A new link for this principal (its issue is audited first); the URL is only ever shown to whoever asked. */
  async issue(given: {
    principal: string;
    requestId?: string | undefined;
    by: string;
    method: SignInMethod;
    ttlMs?: number | undefined;
  }): Promise<{ url: string; expiresAt: number }> {
    // The one spelling of the name: the session the link opens, its passkeys and its votes all use it.
    const input = { ...given, principal: normalizePrincipalName(given.principal, 'principal') };
    const ttl = input.ttlMs ?? this.options.ttlMs;
    const token = randomBytes(32).toString('base64url');
    const expiresAt = this.deps.clock.now() + ttl;
    await this.deps.audit.append({
      type: 'console_link_issued',
      principal: input.principal,
      by: input.by,
      method: input.method,
      request_id: input.requestId || undefined,
      expires_at: expiresAt,
    });
    const record: LinkRecord = {
      principal: input.principal,
      request_id: input.requestId ?? '',
      method: input.method,
      expires_at: expiresAt,
    };
    await this.deps.store.putOnce(this.deps.keys.consoleLink(sha256(token)), JSON.stringify(record), ttl);
    return { url: `${this.options.publicUrl()}${LINK_PATH}#t=${token}`, expiresAt };
  }

  /** Uses a link: once, before it expires. */
  async consume(token: string): Promise<LinkUse> {
    if (!TOKEN.test(token))
      return {
        ok: false,
        code: 'ERR_SIGN_IN_LINK_UNKNOWN',
        message: 'this is not a sign-in link (copy the whole link)',
      };
    const hash = sha256(token);
    const taken = await this.deps.store.consumeOnce(
      this.deps.keys.consoleLink(hash),
      this.deps.keys.consoleLinkUsed(hash),
      7 * 24 * 3600_000,
    );
    if (taken.status === 'used')
      return {
        ok: false,
        code: 'ERR_SIGN_IN_LINK_USED',
        message: 'this sign-in link was used already; each link works once: ask for a new one',
      };
    if (taken.status === 'unknown')
      return {
        ok: false,
        code: 'ERR_SIGN_IN_LINK_UNKNOWN',
        message: 'this sign-in link is unknown or expired: ask for a new one',
      };
    const record = JSON.parse(taken.value) as LinkRecord;
    if (this.deps.clock.now() >= record.expires_at) {
      return {
        ok: false,
        code: 'ERR_SIGN_IN_LINK_EXPIRED',
        message: `this sign-in link expired at ${new Date(record.expires_at).toISOString()}: ask for a new one`,
      };
    }
    return { ok: true, principal: record.principal, requestId: record.request_id || undefined, method: record.method };
  }
}
