// CEL conditions (`when:`), compiled and type-checked once when the policy loads.
// The library is @marcbachmann/cel-js: it type-checks a parsed expression against
// declared variable types, reports errors with source offsets, and evaluates a
// checked expression in a few hundred nanoseconds (see the commit that added it).
//
// Variables:
//   request  operation, resource, parameters (map), reason, ticket, on_behalf_of
//   caller   spiffe_id, trust_domain, path, svid_age_seconds, svid_remaining_seconds
//   workload issuer (the OIDC issuer's name when the SVID was exchanged for a token, else ""),
//            claims (that token's claims, a map; empty for any other SVID)
//   context  now (timestamp), time_zone, hour, minute, weekday ("Mon".."Sun"),
//            time ("HH:MM"), date ("YYYY-MM-DD"), in_freeze, freezes (names),
//            request_rate (the caller's requests within settings.rate_window)
import { Environment } from '@marcbachmann/cel-js';
import type { JsonValue } from '@countersign/proto';

export const MAX_CEL_AST_NODES = 2000;
export const MAX_CEL_DEPTH = 48;

/** Parameters are converted (celMap) only if a condition reads them. */
export class CelRequest {
  private converted: Map<string, unknown> | undefined;

  constructor(
    readonly operation: string,
    readonly resource: string,
    private readonly rawParameters: { [key: string]: JsonValue },
    readonly reason: string,
    readonly ticket: string,
    readonly on_behalf_of: string,
  ) {}

  get parameters(): Map<string, unknown> {
    return (this.converted ??= celMap(this.rawParameters));
  }
}

export class CelCaller {
  constructor(
    readonly spiffe_id: string,
    readonly trust_domain: string,
    readonly path: string,
    readonly svid_age_seconds: bigint,
    readonly svid_remaining_seconds: bigint,
  ) {}
}

/** The caller as an exchanged OIDC token described it (Identity.ExchangeToken); empty for any other SVID. */
export class CelWorkload {
  private converted: Map<string, unknown> | undefined;

  constructor(
    readonly issuer: string,
    private readonly rawClaims: { [key: string]: JsonValue },
  ) {}

  get claims(): Map<string, unknown> {
    return (this.converted ??= celMap(this.rawClaims));
  }
}

/** Local wall-clock facts, as CelContext needs them. */
export interface LocalTimeFacts {
  hour: number;
  minute: number;
  weekday: string;
  time: string;
  date: string;
}

/** Each fact is worked out on first read: most conditions never look at the clock. */
export class CelContext {
  private local: LocalTimeFacts | undefined;
  private activeFreezes: string[] | undefined;

  constructor(
    private readonly nowMs: number,
    private readonly clock: { readonly timeZone: string; at(ms: number): LocalTimeFacts },
    private readonly windows: readonly { name: string; start: number; end: number }[],
    private readonly requestRate: number | undefined,
  ) {}

  private get wallClock(): LocalTimeFacts {
    return (this.local ??= this.clock.at(this.nowMs));
  }
  get time_zone(): string {
    return this.clock.timeZone;
  }
  get now(): Date {
    return new Date(this.nowMs);
  }
  get hour(): bigint {
    return BigInt(this.wallClock.hour);
  }
  get minute(): bigint {
    return BigInt(this.wallClock.minute);
  }
  get weekday(): string {
    return this.wallClock.weekday;
  }
  get time(): string {
    return this.wallClock.time;
  }
  get date(): string {
    return this.wallClock.date;
  }
  get freezes(): string[] {
    if (this.activeFreezes === undefined) {
      this.activeFreezes = [];
      for (const w of this.windows) if (w.start <= this.nowMs && this.nowMs < w.end) this.activeFreezes.push(w.name);
    }
    return this.activeFreezes;
  }
  get in_freeze(): boolean {
    return this.freezes.length > 0;
  }
  /** Read only by conditions that use it; the broker counts in Redis only for policies that do. */
  get request_rate(): bigint {
    if (this.requestRate === undefined) throw new Error('context.request_rate is not known for this evaluation');
    return BigInt(this.requestRate);
  }
}

export interface CelActivation {
  request: CelRequest;
  caller: CelCaller;
  workload: CelWorkload;
  context: CelContext;
}

const environment = new Environment({
  limits: {
    maxAstNodes: MAX_CEL_AST_NODES,
    maxDepth: MAX_CEL_DEPTH,
    maxListElements: 256,
    maxMapEntries: 256,
    maxCallArguments: 8,
  },
})
  .registerType('countersign.Request', {
    ctor: CelRequest,
    fields: {
      operation: 'string',
      resource: 'string',
      parameters: 'map<string, dyn>',
      reason: 'string',
      ticket: 'string',
      on_behalf_of: 'string',
    },
  })
  .registerType('countersign.Caller', {
    ctor: CelCaller,
    fields: {
      spiffe_id: 'string',
      trust_domain: 'string',
      path: 'string',
      svid_age_seconds: 'int',
      svid_remaining_seconds: 'int',
    },
  })
  .registerType('countersign.Workload', { ctor: CelWorkload, fields: { issuer: 'string', claims: 'map<string, dyn>' } })
  .registerType('countersign.Context', {
    ctor: CelContext,
    fields: {
      now: 'google.protobuf.Timestamp',
      time_zone: 'string',
      hour: 'int',
      minute: 'int',
      weekday: 'string',
      time: 'string',
      date: 'string',
      in_freeze: 'bool',
      freezes: 'list<string>',
      request_rate: 'int',
    },
  })
  .registerVariable('request', 'countersign.Request')
  .registerVariable('caller', 'countersign.Caller')
  .registerVariable('workload', 'countersign.Workload')
  .registerVariable('context', 'countersign.Context');

export interface CompiledCondition {
  readonly source: string;
  /** Whether it reads context.request_rate (then every decision counts the caller's requests). */
  readonly usesRequestRate: boolean;
  /** True or false; throws when the expression fails at run time (a missing key, say). */
  evaluate(activation: CelActivation): boolean;
}

export interface CelProblem {
  /** Offset into the expression where the problem is. */
  offset: number;
  message: string;
}

/** Compiles and type-checks a condition, or says where and why it cannot be. */
export function compileCondition(source: string): CompiledCondition | CelProblem {
  let program: ReturnType<typeof environment.parse>;
  try {
    program = environment.parse(source);
  } catch (e) {
    return celProblem(e, 'does not parse');
  }
  const checked = program.check();
  if (!checked.valid) return celProblem(checked.error, 'does not type-check');
  if (checked.type !== 'bool') {
    return {
      offset: 0,
      message: `a condition must be a bool, this one is ${checked.type}${checked.type === 'dyn' ? ' (a parameter? compare it, e.g. request.parameters.force == true)' : ''}`,
    };
  }
  const run = program as unknown as (activation: CelActivation) => unknown;
  return {
    source,
    // Textual on purpose: any mention counts, so a condition can never read a rate that was not counted.
    usesRequestRate: source.includes('request_rate'),
    evaluate(activation) {
      const value = run(activation);
      if (typeof value !== 'boolean') throw new Error(`condition returned ${typeof value}, not bool`);
      return value;
    },
  };
}

export const isCelProblem = (c: CompiledCondition | CelProblem): c is CelProblem => 'offset' in c;

function celProblem(error: unknown, what: string): CelProblem {
  const e = error as { range?: { start?: number }; message?: string };
  // cel-js appends a source excerpt after a blank line; the position is reported separately.
  const message = (e.message ?? String(error)).split('\n')[0] ?? what;
  return { offset: e.range?.start ?? 0, message: `CEL condition ${what}: ${message}` };
}

/**
 * JSON as CEL sees it: whole numbers become int (so `replicas + 1` works), objects
 * become Maps (so a "__proto__" key is just a key).
 */
export function celValue(value: JsonValue): unknown {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map(celValue);
  if (value !== null && typeof value === 'object') return celMap(value);
  return value;
}

export function celMap(object: { [key: string]: JsonValue }): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(object)) out.set(k, celValue(v));
  return out;
}
