// `audit verify`, passkey part: every passkey vote in the trail is verified again
// from the trail alone. The registration record gives the public key, the vote
// record the assertion and what its challenge was derived from, the decision
// record the request's parameters digest and step-up; a forged or altered vote
// is named by its sequence number. One of verify.ts's record checks: it sees
// every record that links into the chain, in chain order. A bad vote is an
// evidence problem (exit 6) with its own code, ERR_AUDIT_PASSKEY_INVALID; a
// credential of a webauthn rule without verified passkey votes behind it is
// ERR_AUDIT_EVIDENCE_MISSING, like any credential without its evidence.
import type { AuditRecord } from './chain.js';
import { checkPasskeyAssertion, describeChallenge, type PasskeyAssertion } from './passkey-assertion.js';
import type { AuditProblemCode, RecordCheck, VerifyContext } from './record-check.js';

interface PasskeyAuditProblem {
  code: AuditProblemCode;
  seq: number;
  message: string;
}

interface Registration {
  seq: number;
  principal: string;
  publicKey: string;
  rpId: string;
  origin: string;
  removedAt?: number;
}

interface RequestFacts {
  stepUp: string | undefined;
  maxAgeMs: number | undefined;
  parametersDigest: string | undefined;
  /** Approvers whose approve vote carries an assertion that verified. */
  passkeyApprovers: Set<string>;
  /** Approvers whose vote could not be checked (its registration is before the records given). */
  uncheckedApprovers: Set<string>;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

export class PasskeyEvidenceCheck implements RecordCheck {
  private readonly registrations = new Map<string, Registration>();
  private readonly requests = new Map<string, RequestFacts>();
  /** Last counter seen per credential, and the assertions already used (a per-vote assertion counts once). */
  private readonly counters = new Map<string, number>();
  private readonly usedAssertions = new Map<string, number>();
  /** Passkeys of an earlier console origin already warned about. */
  private readonly movedWarned = new Set<string>();
  private readonly pending: Promise<void>[] = [];
  /** Reported at finish(), in sequence order (signature checks end in any order). */
  private readonly problems: PasskeyAuditProblem[] = [];
  verifiedVotes = 0;

  constructor(
    private readonly options: {
      /**
       * The console's current origin (from the configuration), when known. Only for a
       * warning: each vote is judged against the origin its registration binds.
       */
      expectedOrigin?: string | undefined;
    } = {},
  ) {}

  private facts(requestId: string): RequestFacts {
    let f = this.requests.get(requestId);
    if (f === undefined)
      this.requests.set(
        requestId,
        (f = {
          stepUp: undefined,
          maxAgeMs: undefined,
          parametersDigest: undefined,
          passkeyApprovers: new Set(),
          uncheckedApprovers: new Set(),
        }),
      );
    return f;
  }

  /** Every record that links into the chain, in chain order. */
  record(r: AuditRecord, _previous: AuditRecord | undefined, ctx: VerifyContext): void {
    const e = r.event;
    switch (e.type) {
      case 'passkey_registered': {
        const id = str(e.credential_id);
        const principal = str(e.principal);
        const publicKey = str(e.public_key);
        if (!id || !principal || !publicKey || !str(e.rp_id) || !str(e.origin)) {
          this.problems.push({
            code: 'ERR_AUDIT_PASSKEY_INVALID',
            seq: r.seq,
            message: `seq ${r.seq}: passkey registration lacks credential_id, principal, public_key, rp_id or origin`,
          });
          return;
        }
        this.registrations.set(id, {
          seq: r.seq,
          principal,
          publicKey,
          rpId: e.rp_id as string,
          origin: e.origin as string,
        });
        this.counters.set(id, typeof e.counter === 'number' ? e.counter : 0);
        return;
      }
      case 'passkey_removed': {
        const reg = this.registrations.get(String(e.credential_id));
        if (reg !== undefined && reg.principal === e.principal) reg.removedAt = r.seq;
        return;
      }
      case 'request_received':
      case 'decision': {
        const id = str(e.request_id);
        if (!id) return;
        const f = this.facts(id);
        f.parametersDigest ??= str(e.parameters_digest);
        if (e.type === 'decision') {
          f.stepUp = str(e.step_up);
          f.maxAgeMs = typeof e.step_up_max_age_ms === 'number' ? e.step_up_max_age_ms : undefined;
        }
        return;
      }
      case 'vote':
        this.vote(r, ctx);
        return;
      case 'credential_issued':
        this.credential(r);
        return;
    }
  }

  private vote(r: AuditRecord, ctx: VerifyContext): void {
    const e = r.event;
    const requestId = str(e.request_id) ?? '';
    const principal = str(e.principal) ?? '';
    const f = this.requests.get(requestId);
    const problem = (message: string) =>
      this.problems.push({
        code: 'ERR_AUDIT_PASSKEY_INVALID',
        seq: r.seq,
        message: `seq ${r.seq}: ${String(e.decision)} vote by ${principal} on request ${requestId}: ${message}`,
      });
    const evidence = e.webauthn;
    if (evidence === undefined) {
      if (e.step_up === 'webauthn') problem('claims step-up webauthn but carries no assertion');
      else if (e.decision === 'approve' && f?.stepUp === 'webauthn')
        problem(`counted without a passkey assertion, but the request's rule requires step-up webauthn`);
      return;
    }
    if (!isObject(evidence) || !isObject(evidence.challenge))
      return void problem('its webauthn evidence is not an object with a challenge');
    const a = evidence as unknown as PasskeyAssertion;
    const reg = this.registrations.get(String(a.credential_id));
    if (reg === undefined) {
      if (ctx.fromGenesis) problem(`credential ${String(a.credential_id)} has no passkey_registered record before it`);
      else {
        ctx.warn(
          `seq ${r.seq}: the registration of passkey ${String(a.credential_id)} is not among the records given; its vote is not checked`,
        );
        this.facts(requestId).uncheckedApprovers.add(principal);
      }
      return;
    }
    if (reg.principal !== principal)
      return void problem(
        `credential ${a.credential_id} is ${reg.principal}'s passkey (registered at seq ${reg.seq}), not ${principal}'s`,
      );
    if (reg.removedAt !== undefined)
      return void problem(`credential ${a.credential_id} was removed at seq ${reg.removedAt}, before this vote`);
    // The registration binds the origin and RP ID: the vote is judged against them, not
    // against today's console address (public_url may have changed since; older votes stay valid).
    if (a.origin !== reg.origin || a.rp_id !== reg.rpId) {
      return void problem(
        `records origin ${String(a.origin)} and RP ID ${String(a.rp_id)}, but its passkey was registered for ${reg.origin} (RP ID ${reg.rpId}) at seq ${reg.seq}`,
      );
    }
    const configured = this.options.expectedOrigin;
    if (configured !== undefined && reg.origin !== configured && !this.movedWarned.has(a.credential_id)) {
      this.movedWarned.add(a.credential_id);
      ctx.warn(
        `seq ${r.seq}: passkey ${a.credential_id} was registered for ${reg.origin} (seq ${reg.seq}), not the console's current ${configured}; its votes are checked against ${reg.origin}`,
      );
    }

    // What the challenge must have been derived from.
    const c = a.challenge;
    const votedAt = typeof e.voted_at === 'number' ? e.voted_at : r.at;
    if (c.purpose === 'vote') {
      if (c.request_id !== requestId || c.decision !== e.decision)
        return void problem(`the assertion was made for ${describeChallenge(c)}, not this vote`);
      if (f?.parametersDigest !== undefined && c.parameters_digest !== f.parametersDigest) {
        return void problem(
          `the assertion was made for parameters ${c.parameters_digest}, the request's are ${f.parametersDigest}`,
        );
      }
    } else if (c.purpose === 'sign_in') {
      if (c.principal !== principal)
        return void problem(`the assertion is a sign-in of ${c.principal}, not of ${principal}`);
      if (f?.maxAgeMs === undefined)
        return void problem(
          "counts a passkey sign-in, but the request's rule asks for an assertion per vote (no step_up_max_age)",
        );
      if (votedAt - a.asserted_at > f.maxAgeMs)
        return void problem(
          `the passkey sign-in was ${Math.round((votedAt - a.asserted_at) / 1000)}s old, the rule accepts ${Math.round(f.maxAgeMs / 1000)}s`,
        );
    } else {
      return void problem(`unknown challenge purpose ${JSON.stringify((c as { purpose?: unknown }).purpose)}`);
    }

    // Replays and counters, in chain order (before the asynchronous signature check).
    const assertionKey = `${a.credential_id}|${a.signature}`;
    const earlier = this.usedAssertions.get(assertionKey);
    if (earlier !== undefined && c.purpose === 'vote')
      return void problem(`replays the assertion of the vote at seq ${earlier}`);
    if (earlier === undefined) {
      const last = this.counters.get(a.credential_id) ?? 0;
      if ((a.counter > 0 || last > 0) && a.counter <= last) {
        problem(
          `signature counter ${a.counter} is not above ${last} seen before for credential ${a.credential_id} (a cloned authenticator?)`,
        );
      }
      this.counters.set(a.credential_id, Math.max(last, a.counter));
      this.usedAssertions.set(assertionKey, r.seq);
    }

    this.pending.push(
      checkPasskeyAssertion(
        a,
        { credentialId: a.credential_id, publicKey: reg.publicKey },
        { origin: reg.origin, rpId: reg.rpId },
      ).then((check) => {
        if (!check.ok) return void problem(`${check.message} [${check.code}]`);
        if (check.counter !== a.counter)
          return void problem(`records counter ${a.counter}, but the signed authenticator data says ${check.counter}`);
        this.verifiedVotes += 1;
        if (e.decision === 'approve') this.facts(requestId).passkeyApprovers.add(principal);
      }),
    );
  }

  private credential(r: AuditRecord): void {
    const e = r.event;
    const requestId = str(e.request_id) ?? '';
    if (this.requests.get(requestId)?.stepUp !== 'webauthn') return;
    const approval = isObject(e.approval) ? e.approval : {};
    const approvers = Array.isArray(approval.approvers) ? approval.approvers.filter(isObject) : [];
    for (const a of approvers) {
      if (a.step_up !== 'webauthn') {
        this.problems.push({
          code: 'ERR_AUDIT_EVIDENCE_MISSING',
          seq: r.seq,
          message: `seq ${r.seq}: credential ${String(e.jti)} names ${String(a.principal)}'s approval with step-up ${String(a.step_up)}; the rule requires webauthn`,
        });
      }
    }
    // Compared once every signature is checked: a vote whose assertion fails does not count.
    this.credentialChecks.push({
      seq: r.seq,
      jti: String(e.jti),
      requestId,
      approvers: approvers.map((a) => (typeof a.principal === 'string' ? a.principal : '')),
    });
  }

  private readonly credentialChecks: { seq: number; jti: string; requestId: string; approvers: string[] }[] = [];

  /** Waits for every signature check, then reports what failed, in sequence order. */
  async finish(ctx: VerifyContext): Promise<void> {
    await Promise.all(this.pending);
    for (const c of this.credentialChecks) {
      const f = this.requests.get(c.requestId);
      const missing = c.approvers.filter((p) => !f?.passkeyApprovers.has(p) && !f?.uncheckedApprovers.has(p));
      if (missing.length > 0) {
        this.problems.push({
          code: 'ERR_AUDIT_EVIDENCE_MISSING',
          seq: c.seq,
          message: `seq ${c.seq}: credential ${c.jti} for request ${c.requestId} (step-up webauthn) names approvers without a verified passkey vote: ${missing.join(', ')}`,
        });
      }
    }
    for (const p of this.problems.sort((a, b) => a.seq - b.seq)) ctx.problem('evidence', p.code, p.seq, p.message);
  }
}
