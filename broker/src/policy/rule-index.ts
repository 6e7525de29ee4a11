// Which rules could match a request, found without looking at most of them:
// rules are bucketed by literal operation and pinned trust domain. The candidate
// list for an (operation, trust domain) pair is built once and cached, in file
// order, so evaluation touches only rules that name that operation (or any
// operation) and that trust domain (or any).
import type { CompiledRule } from './compile.js';

/** Distinct (operation, trust domain) pairs remembered; past this the cache starts over. */
export const MAX_CACHED_PAIRS = 4096;

export class RuleIndex {
  private readonly byOperation = new Map<string, CompiledRule[]>();
  private readonly anyOperation: CompiledRule[] = [];
  private readonly cache = new Map<string, readonly CompiledRule[]>();

  constructor(readonly rules: readonly CompiledRule[]) {
    for (const rule of rules) {
      if (rule.operations === undefined) {
        this.anyOperation.push(rule);
        continue;
      }
      for (const op of new Set(rule.operations)) {
        const bucket = this.byOperation.get(op);
        if (bucket === undefined) this.byOperation.set(op, [rule]);
        else bucket.push(rule);
      }
    }
  }

  /** Rules that may match a request for this operation from this trust domain, in file order. */
  candidates(operation: string, trustDomain: string): readonly CompiledRule[] {
    const key = `${operation}\n${trustDomain}`;
    const cached = this.cache.get(key);
    if (cached !== undefined) return cached;
    const named = this.byOperation.get(operation) ?? [];
    const merged: CompiledRule[] = [];
    let i = 0;
    let j = 0;
    while (i < named.length || j < this.anyOperation.length) {
      const a = named[i];
      const b = this.anyOperation[j];
      const next = b === undefined || (a !== undefined && a.index < b.index) ? (i++, a) : (j++, b);
      if (next !== undefined && (next.trustDomains === undefined || next.trustDomains.includes(trustDomain))) merged.push(next);
    }
    if (this.cache.size >= MAX_CACHED_PAIRS) this.cache.clear();
    this.cache.set(key, merged);
    return merged;
  }
}
