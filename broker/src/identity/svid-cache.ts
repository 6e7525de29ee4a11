// Remembers chains verifySvid accepted, so a workload that opens many
// connections with one SVID pays for path validation once. An entry answers only
// for the same chain bytes, role and length limit, judged against the very same
// bundle object of its trust domain (a reload makes new ones), and only while
// the injected time is inside every validity period of the path. Refusals are
// not remembered: they are cheap to redo, and some are about time.
import { createHash } from 'node:crypto';
import type { BundleSource, TrustBundle } from './bundle.js';
import type { SvidIdentity } from './svid-identity.js';

interface Entry {
  identity: SvidIdentity;
  bundle: TrustBundle;
  /** The path is valid from the latest notBefore to the earliest notAfter of its certificates (ms). */
  validFrom: number;
  validUntil: number;
}

export const DEFAULT_SVID_CACHE_ENTRIES = 1024;

export class SvidCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly maxEntries = DEFAULT_SVID_CACHE_ENTRIES) {}

  static key(chain: readonly Uint8Array[], role: string, maxChainLength: number): string {
    const hash = createHash('sha256').update(`${role}\0${maxChainLength}\0${chain.length}\0`);
    for (const der of chain) hash.update(`${der.byteLength}\0`).update(der);
    return hash.digest('hex');
  }

  get(key: string, bundles: BundleSource, now: number): SvidIdentity | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    if (
      bundles.getBundle(entry.identity.trustDomain) !== entry.bundle ||
      now < entry.validFrom ||
      now > entry.validUntil
    )
      return undefined;
    // Most recently used last, so the least recently used is dropped first.
    this.entries.set(key, entry);
    return entry.identity;
  }

  set(key: string, entry: Entry): void {
    this.entries.delete(key);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(key, entry);
  }

  get size(): number {
    return this.entries.size;
  }
}
