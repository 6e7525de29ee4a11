// The broker's JWKS, fetched over HTTP and cached. A credential signed by a kid
// the cache does not know triggers one refresh (at most once per cooldown, so a
// stream of forged kids cannot make this server hammer the broker); keys the
// broker stops publishing disappear at the next refresh.
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { CredentialVerificationError } from './errors.js';

export interface RemoteJwksOptions {
  /** Refetch after this long even when every kid is known (default 5 min). */
  maxAgeMs?: number;
  /** Least time between two fetches triggered by unknown kids (default 10 s). */
  cooldownMs?: number;
  /** Per-fetch deadline (default 5 s). */
  timeoutMs?: number;
  /** Keep using the last good set this long when the broker cannot be reached (default 1 h). */
  staleIfErrorMs?: number;
  /** Largest JWKS document accepted (default 64 KiB). */
  maxBytes?: number;
  /** Injected for tests. */
  fetch?: typeof fetch;
  now?: () => number;
}

interface Cached {
  getKey: ReturnType<typeof createLocalJWKSet>;
  kids: Set<string>;
  fetchedAt: number;
}

export class RemoteJwks {
  private cached: Cached | undefined;
  private inFlight: Promise<Cached> | undefined;
  private lastAttempt = -Infinity;
  private readonly maxAgeMs: number;
  private readonly cooldownMs: number;
  private readonly timeoutMs: number;
  private readonly staleIfErrorMs: number;
  private readonly maxBytes: number;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => number;
  /** Fetches so far (for tests and metrics). */
  fetches = 0;

  constructor(
    readonly url: string,
    options: RemoteJwksOptions = {},
  ) {
    if (!/^https?:\/\//.test(url)) throw new TypeError(`JWKS URL must be http(s): ${url}`);
    this.maxAgeMs = options.maxAgeMs ?? 5 * 60_000;
    this.cooldownMs = options.cooldownMs ?? 10_000;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.staleIfErrorMs = options.staleIfErrorMs ?? 3_600_000;
    this.maxBytes = options.maxBytes ?? 64 * 1024;
    this.fetchImpl = options.fetch ?? fetch;
    this.now = options.now ?? Date.now;
  }

  private async load(): Promise<Cached> {
    this.lastAttempt = this.now();
    this.fetches += 1;
    let doc: JSONWebKeySet;
    try {
      const res = await this.fetchImpl(this.url, {
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: { accept: 'application/json' },
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const text = await res.text();
      if (text.length > this.maxBytes) throw new Error(`document is ${text.length} bytes, at most ${this.maxBytes}`);
      doc = JSON.parse(text) as JSONWebKeySet;
      if (doc === null || typeof doc !== 'object' || !Array.isArray(doc.keys))
        throw new Error('not a JWKS document (no "keys" array)');
    } catch (e) {
      throw new CredentialVerificationError(
        'ERR_JWKS_UNAVAILABLE',
        `credential: cannot fetch the broker's JWKS from ${this.url}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const cached: Cached = {
      getKey: createLocalJWKSet(doc),
      kids: new Set(doc.keys.map((k) => k.kid).filter((k): k is string => typeof k === 'string')),
      fetchedAt: this.now(),
    };
    this.cached = cached;
    return cached;
  }

  private refresh(): Promise<Cached> {
    this.inFlight ??= this.load().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async current(kid: string | undefined): Promise<Cached> {
    const cached = this.cached;
    const now = this.now();
    if (cached === undefined) return this.refresh();
    if (now - cached.fetchedAt >= this.maxAgeMs) {
      try {
        return await this.refresh();
      } catch (e) {
        if (now - cached.fetchedAt < this.maxAgeMs + this.staleIfErrorMs) return cached;
        throw e;
      }
    }
    if (kid !== undefined && !cached.kids.has(kid) && now - this.lastAttempt >= this.cooldownMs) {
      try {
        return await this.refresh();
      } catch {
        return cached;
      }
    }
    return cached;
  }

  /** A jose key getter: pass it as `jwks` to verifyCredential. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const cached = await this.current(header.kid);
    return cached.getKey(header, token);
  };
}
