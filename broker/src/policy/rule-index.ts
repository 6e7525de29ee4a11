// Which rules could match a request, found without looking at most of them.
// Rules are bucketed on three keys: the literal operation, and the literal part
// (cut after a "/") of their workload and resource patterns:
//   workload spiffe://example.org/ci/svc3/*  ->  "spiffe://example.org/ci/svc3/"
//   trust_domain example.org (no workload)   ->  "spiffe://example.org/"
//   resource prod/payments/**                ->  "prod/payments/"
//   no constraint, or a leading wildcard     ->  ""
// A request's SPIFFE ID and resource have only a handful of such prefixes, so its
// candidates take a few map lookups, cached per (operation, caller, resource).
// Candidates come back in file order, and each is still checked in full: the
// index only ever skips rules that cannot match.
import type { CompiledRule } from './compiled-rule.js';

/** Requests remembered; past this the cache starts over. */
export const MAX_CACHED_REQUESTS = 4096;
const ANY = '';

/** A pattern's index key: itself when it has no wildcard, else its literal part up to the last "/" before one. */
export function literalKey(pattern: string): string {
  const wildcard = pattern.search(/[*?]/);
  if (wildcard === -1) return pattern;
  return pattern.slice(0, pattern.lastIndexOf('/', wildcard) + 1);
}

/** Every key a value's rules can be filed under: "", each prefix ending in "/", and the value itself. */
function keysOf(value: string): string[] {
  const keys = [ANY, value];
  for (let i = value.indexOf('/'); i !== -1 && i < value.length - 1; i = value.indexOf('/', i + 1))
    keys.push(value.slice(0, i + 1));
  return keys;
}

type Buckets = Map<string, Map<string, Map<string, CompiledRule[]>>>;

export class RuleIndex {
  private readonly buckets: Buckets = new Map();
  /** operation -> caller -> resource -> candidates; nested so lookups hash strings the request already holds. */
  private readonly cache = new Map<string, Map<string, Map<string, readonly CompiledRule[]>>>();
  private cached = 0;

  constructor(readonly rules: readonly CompiledRule[]) {
    for (const rule of rules) {
      const callers = rule.workloadKeys ?? rule.trustDomains?.map((td) => `spiffe://${td}/`) ?? [ANY];
      const resources = rule.resourceKeys ?? [ANY];
      for (const op of new Set(rule.operations ?? [ANY])) {
        for (const caller of new Set(callers)) {
          for (const resource of new Set(resources)) this.file(op, caller, resource, rule);
        }
      }
    }
  }

  private file(op: string, caller: string, resource: string, rule: CompiledRule): void {
    let byCaller = this.buckets.get(op);
    if (byCaller === undefined) this.buckets.set(op, (byCaller = new Map<string, Map<string, CompiledRule[]>>()));
    let byResource = byCaller.get(caller);
    if (byResource === undefined) byCaller.set(caller, (byResource = new Map<string, CompiledRule[]>()));
    const bucket = byResource.get(resource);
    if (bucket === undefined) byResource.set(resource, [rule]);
    else bucket.push(rule);
  }

  /** Rules that may match this request, in file order. */
  candidates(operation: string, spiffeId: string, resource: string): readonly CompiledRule[] {
    const cached = this.cache.get(operation)?.get(spiffeId)?.get(resource);
    if (cached !== undefined) return cached;
    const found = new Set<CompiledRule>();
    const callerKeys = keysOf(spiffeId);
    const resourceKeys = keysOf(resource);
    for (const op of operation === ANY ? [ANY] : [operation, ANY]) {
      const byCaller = this.buckets.get(op);
      if (byCaller === undefined) continue;
      for (const caller of callerKeys) {
        const byResource = byCaller.get(caller);
        if (byResource === undefined) continue;
        for (const key of resourceKeys) for (const rule of byResource.get(key) ?? []) found.add(rule);
      }
    }
    const list = [...found].sort((a, b) => a.index - b.index);
    this.remember(operation, spiffeId, resource, list);
    return list;
  }

  private remember(operation: string, spiffeId: string, resource: string, list: readonly CompiledRule[]): void {
    if (this.cached >= MAX_CACHED_REQUESTS) {
      this.cache.clear();
      this.cached = 0;
    }
    let byCaller = this.cache.get(operation);
    if (byCaller === undefined)
      this.cache.set(operation, (byCaller = new Map<string, Map<string, readonly CompiledRule[]>>()));
    let byResource = byCaller.get(spiffeId);
    if (byResource === undefined) byCaller.set(spiffeId, (byResource = new Map<string, readonly CompiledRule[]>()));
    byResource.set(resource, list);
    this.cached++;
  }
}
