// Who may redeem (Broker.RedeemCredential) a credential: a workload listed for
// the credential's audience in credentials.redeemers. Redemption uses a
// credential up, so it is an act of the resource server that accepts it, not of
// anyone who has seen a copy (the requester, a log reader, another service).
// Deny by default: with no redeemers configured nobody may redeem, and the
// refusal says which configuration would allow this caller.
import { CountersignError } from '../errors.js';
import { compileGlob, type GlobMatcher } from '../policy/glob.js';

/** One entry of credentials.redeemers. */
export interface RedeemerRule {
  /** A credential "aud", exactly; "*" for every audience. */
  audience: string;
  /** SPIFFE IDs or globs ("*" one path segment, "**" any depth, "?" one character). */
  workloads: string[];
}

export const ANY_AUDIENCE = '*';

export class Redeemers {
  private readonly rules: { audience: string; matches: GlobMatcher[] }[];

  constructor(rules: readonly RedeemerRule[] | undefined) {
    this.rules = (rules ?? []).map((r) => ({ audience: r.audience, matches: r.workloads.map(compileGlob) }));
  }

  get configured(): boolean {
    return this.rules.length > 0;
  }

  /** Throws PERMISSION_DENIED unless `caller` may redeem a credential for one of `audiences`. */
  check(caller: string, audiences: readonly string[]): void {
    const shown = audiences.map((a) => JSON.stringify(a)).join(', ') || '(none)';
    if (!this.configured) {
      throw new CountersignError(
        'permission_denied',
        'ERR_REDEMPTION_NOT_CONFIGURED',
        `${caller} may not redeem this credential: no workload may redeem credentials until credentials.redeemers lists who may, per audience ` +
          `(for this one: credentials.redeemers: [{ audience: ${JSON.stringify(audiences[0] ?? ANY_AUDIENCE)}, workloads: [${JSON.stringify(caller)}] }]; see docs/credentials.md)`,
        { key: 'credentials.redeemers', audiences },
      );
    }
    const allowed = this.rules.some(
      (r) => (r.audience === ANY_AUDIENCE || audiences.includes(r.audience)) && r.matches.some((m) => m(caller)),
    );
    if (!allowed) {
      throw new CountersignError(
        'permission_denied',
        'ERR_REDEEMER_NOT_ALLOWED',
        `${caller} may not redeem credentials for audience ${shown}: credentials.redeemers does not list it for that audience`,
        { key: 'credentials.redeemers', audiences },
      );
    }
  }
}
