// Rate limits of the approver console: a token bucket per client address and one
// per signed-in principal, in Redis (the same bucket script as the workloads'
// request rate, requests/lua/ratelimit-1.lua), so every replica shares them. They
// guard what an attacker would hammer: sign-in link redemption, the OIDC
// callback, passkey registration and assertion options and verification, votes.
// A refusal is 429 with Retry-After (docs/console.md, "Threat model").
import { createHash } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { addProxy } from '../config/ip-range.js';
import type { IncomingMessage } from 'node:http';
import type { Clock } from '../clock.js';
import { CountersignError } from '../errors.js';
import { redisCall, type Redis } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { ScriptCode, scriptReply } from '../requests/script-codes.js';
import { loadScripts, registerScripts, type ScriptRunner } from '../requests/scripts.js';

export interface Bucket {
  /** Sustained requests per minute. */
  perMinute: number;
  /** Requests at once after a quiet spell. */
  burst: number;
}

export interface ConsoleRateSettings {
  perIp: Bucket;
  perPrincipal: Bucket;
  /** Addresses or CIDR ranges of proxies (the ingress) whose X-Forwarded-For is believed. */
  trustedProxies: string[];
}

/** The configuration key of each bucket, named in refusals. */
const CONFIG_KEY = { ip: 'console.rate_limits.per_ip', principal: 'console.rate_limits.per_principal' } as const;

const familyOf = (address: string): 'ipv4' | 'ipv6' => (isIP(address) === 6 ? 'ipv6' : 'ipv4');
/** "::ffff:10.0.0.1" is 10.0.0.1. */
const plain = (address: string): string => address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');

export class ConsoleRateLimiter {
  private readonly scripts: ScriptRunner;
  private readonly proxies = new BlockList();
  private readonly anyProxy: boolean;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    private readonly clock: Clock,
    private readonly settings: ConsoleRateSettings,
  ) {
    this.scripts = registerScripts(
      redis,
      loadScripts().filter((s) => s.name === 'ratelimit'),
    );
    for (const p of settings.trustedProxies) {
      if (!addProxy(this.proxies, p))
        throw new CountersignError(
          'invalid_argument',
          'ERR_CONFIG_INVALID',
          `console.rate_limits.trusted_proxies: ${JSON.stringify(p)} is not an IP address or CIDR range`,
        );
    }
    this.anyProxy = settings.trustedProxies.length > 0;
  }

  private trusted(address: string): boolean {
    return this.anyProxy && isIP(address) !== 0 && this.proxies.check(address, familyOf(address));
  }

  /**
   * The client's address: the peer's, or when the peer is a trusted proxy, the
   * right-most address in X-Forwarded-For that is not a trusted proxy (entries to
   * its left are whatever the client wrote).
   */
  clientAddress(req: IncomingMessage): string {
    let address = plain(req.socket.remoteAddress ?? 'unknown');
    if (!this.trusted(address)) return address;
    const header = req.headers['x-forwarded-for'];
    const hops = (Array.isArray(header) ? header.join(',') : (header ?? ''))
      .split(',')
      .map((h) => plain(h.trim()))
      .filter((h) => h !== '');
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i] as string;
      if (isIP(hop) === 0) return address; // garbage: the last address known good
      address = hop;
      if (!this.trusted(hop)) return hop;
    }
    return address;
  }

  /** Takes a token from the bucket of this client address, or refuses with 429 (ERR_RATE_LIMITED). */
  async takeForAddress(req: IncomingMessage): Promise<void> {
    await this.take('ip', this.clientAddress(req), this.settings.perIp);
  }

  /** Takes a token from the bucket of this principal (canonical name). */
  async takeForPrincipal(principal: string): Promise<void> {
    await this.take('principal', principal, this.settings.perPrincipal);
  }

  private async take(kind: 'ip' | 'principal', who: string, bucket: Bucket): Promise<void> {
    const hash = createHash('sha256').update(who).digest('base64url').slice(0, 32);
    const [code, retryAfter = '0'] = scriptReply(
      await redisCall('console rate limit', () =>
        this.scripts(
          'ratelimit',
          [this.keys.consoleRateLimit(kind, hash)],
          [this.clock.now(), bucket.perMinute / 60, bucket.burst],
        ),
      ),
    );
    if (code === ScriptCode.Allowed) return;
    const retryAfterMs = Math.max(1, Number(retryAfter));
    const seconds = Math.ceil(retryAfterMs / 1000);
    throw new CountersignError(
      'resource_exhausted',
      'ERR_RATE_LIMITED',
      `too many attempts from ${kind === 'ip' ? 'this address' : 'this account'} (limit ${CONFIG_KEY[kind]}: ${bucket.perMinute} per minute, burst ${bucket.burst}); retry in ${seconds}s`,
      { limit: CONFIG_KEY[kind], retryAfterMs },
    );
  }
}
