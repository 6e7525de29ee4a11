// Passkeys (WebAuthn) for approvers: registration, the challenge of each vote,
// and the check that makes a vote on a `step_up: webauthn` rule count. The
// WebAuthn ceremonies are @simplewebauthn/server's; what is bound to what
// (a challenge to one request, decision and parameters digest; a credential to
// one principal; a counter that only goes up) is decided here.
import { randomBytes } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyRegistrationResponse,
  type AuthenticatorTransportFuture,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import {
  checkPasskeyAssertion,
  passkeyChallenge,
  passkeyChallengeBytes,
  type PasskeyAssertion,
  type PasskeyChallengeInput,
  type PasskeyProblemCode,
} from '../audit/passkey-assertion.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import { normalizePrincipalName } from '../policy/principal-name.js';
import type { Keys } from '../redis/keys.js';
import type { PasskeyStore, StoredPasskey } from './store.js';

/** Why a passkey ceremony or vote was refused; stable codes (docs/console.md). */
export type PasskeyRefusalCode =
  | PasskeyProblemCode
  | 'ERR_PASSKEY_NONE'
  | 'ERR_PASSKEY_CHALLENGE_UNKNOWN'
  | 'ERR_PASSKEY_CHALLENGE_USED'
  | 'ERR_PASSKEY_CHALLENGE_EXPIRED'
  | 'ERR_PASSKEY_NOT_YOURS'
  | 'ERR_PASSKEY_COUNTER_REGRESSION'
  | 'ERR_PASSKEY_REGISTRATION_INVALID'
  | 'ERR_PASSKEY_EXISTS'
  | 'ERR_PASSKEY_LIMIT'
  | 'ERR_STEP_UP_STALE';

export type Refusal = { ok: false; code: PasskeyRefusalCode; message: string };
const refuse = (code: PasskeyRefusalCode, message: string): Refusal => ({ ok: false, code, message });

export interface PasskeySettings {
  /** The console's origin (scheme://host[:port]) and RP ID (its host name). */
  origin: string;
  rpId: string;
  rpName: string;
  /** How long a challenge can be answered. */
  challengeTtlMs: number;
  maxPerPrincipal: number;
}

/** The longest step_up_max_age a rule can set (policy/schema.ts): how long a passkey sign-in is kept. */
export const MAX_SIGN_IN_AGE_MS = 24 * 3600_000;
const MAX_NAME = 64;
const CREDENTIAL_ID = z
  .string()
  .min(1)
  .max(1366)
  .regex(/^[A-Za-z0-9_-]+$/, 'expected base64url');
const B64URL_FIELD = z
  .string()
  .min(1)
  .max(16 * 1024)
  .regex(/^[A-Za-z0-9_-]+$/, 'expected base64url');

/** What the browser sends after navigator.credentials.get(), as @simplewebauthn/browser shapes it. */
export const assertionResponseSchema = z.object({
  id: CREDENTIAL_ID,
  rawId: CREDENTIAL_ID,
  type: z.literal('public-key'),
  response: z.object({
    authenticatorData: B64URL_FIELD,
    clientDataJSON: B64URL_FIELD,
    signature: B64URL_FIELD,
    userHandle: z
      .string()
      .max(512)
      .regex(/^[A-Za-z0-9_-]*$/)
      .optional(),
  }),
  authenticatorAttachment: z.string().max(32).optional(),
  clientExtensionResults: z.record(z.string(), z.unknown()).optional(),
});

const registrationResponseSchema = z.object({
  id: CREDENTIAL_ID,
  rawId: CREDENTIAL_ID,
  type: z.literal('public-key'),
  response: z
    .object({
      attestationObject: B64URL_FIELD,
      clientDataJSON: B64URL_FIELD,
      transports: z.array(z.string().max(32)).max(16).optional(),
    })
    .loose(),
  authenticatorAttachment: z.string().max(32).optional(),
  clientExtensionResults: z.record(z.string(), z.unknown()).optional(),
});

type Purpose = 'vote' | 'sign_in' | 'register';

interface ChallengeRecord {
  purpose: Purpose;
  principal: string;
  /** The console session it was issued to (sign-in and registration), "" for votes. */
  session: string;
  /** What the challenge was derived from (vote, sign-in); a random challenge for registration. */
  input?: PasskeyChallengeInput;
  challenge: string;
  expires_at: number;
}

interface SignInRecord {
  principal: string;
  assertion: PasskeyAssertion;
}

/** What a vote on a webauthn rule is checked against. */
export interface VoteTarget {
  principal: string;
  requestId: string;
  parametersDigest: string;
  decision: 'approve' | 'deny';
  /** The rule's step_up_max_age; undefined: only an assertion made for this vote counts. */
  maxAgeMs: number | undefined;
}

export type VoteProof =
  { kind: 'assertion'; challengeId: string; response: unknown } | { kind: 'sign_in'; signInId: string };

const newId = (): string => randomBytes(18).toString('base64url');
/** Passkeys belong to a principal's one spelling (policy/principal-name.ts): every entry point folds the name it is given. */
const canonical = (principal: string): string => normalizePrincipalName(principal, 'principal');
const issue = (e: z.ZodError): string =>
  e.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || 'body'}: ${i.message}`)
    .join('; ');

export class Passkeys {
  constructor(
    private readonly deps: { store: PasskeyStore; keys: Keys; audit: AuditLog; clock: Clock; logger: Logger },
    readonly settings: PasskeySettings,
  ) {}

  list(principal: string): Promise<StoredPasskey[]> {
    return this.deps.store.list(canonical(principal));
  }

  private async issueChallenge(record: Omit<ChallengeRecord, 'expires_at'>): Promise<string> {
    const id = newId();
    const full: ChallengeRecord = { ...record, expires_at: this.deps.clock.now() + this.settings.challengeTtlMs };
    await this.deps.store.putOnce(
      this.deps.keys.passkeyChallenge(id),
      JSON.stringify(full),
      this.settings.challengeTtlMs,
    );
    return id;
  }

  /** Takes a challenge (once); refuses unknown, used and expired ones and those issued for another purpose or person. */
  private async takeChallenge(
    id: unknown,
    purpose: Purpose,
    principal: string,
    session: string,
  ): Promise<ChallengeRecord | Refusal> {
    if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{16,64}$/.test(id))
      return refuse('ERR_PASSKEY_CHALLENGE_UNKNOWN', 'challenge id: expected the id the console issued');
    const { store, keys, clock } = this.deps;
    const taken = await store.consumeOnce(
      keys.passkeyChallenge(id),
      keys.passkeyChallengeUsed(id),
      this.settings.challengeTtlMs * 2,
    );
    if (taken.status === 'used')
      return refuse(
        'ERR_PASSKEY_CHALLENGE_USED',
        'this challenge was already answered; each passkey assertion counts once',
      );
    if (taken.status === 'unknown')
      return refuse('ERR_PASSKEY_CHALLENGE_UNKNOWN', 'unknown or expired challenge; start again');
    const record = JSON.parse(taken.value) as ChallengeRecord;
    if (clock.now() >= record.expires_at)
      return refuse(
        'ERR_PASSKEY_CHALLENGE_EXPIRED',
        `the challenge expired at ${new Date(record.expires_at).toISOString()}; start again`,
      );
    if (
      record.purpose !== purpose ||
      record.principal !== principal ||
      (record.session !== '' && record.session !== session)
    ) {
      return refuse(
        'ERR_PASSKEY_CHALLENGE_MISMATCH',
        `the challenge was issued for a ${record.purpose} by ${record.principal}, not for this ${purpose} by ${principal}`,
      );
    }
    return record;
  }

  // ---- registration ----

  async registrationOptions(given: {
    principal: string;
    displayName: string;
    session: string;
  }): Promise<{ challengeId: string; options: PublicKeyCredentialCreationOptionsJSON }> {
    const input = { ...given, principal: canonical(given.principal) };
    const existing = await this.deps.store.list(input.principal);
    const userHandle = await this.deps.store.userHandle(input.principal, () => randomBytes(32).toString('base64url'));
    const options = await generateRegistrationOptions({
      rpName: this.settings.rpName,
      rpID: this.settings.rpId,
      userName: input.principal,
      userDisplayName: input.displayName,
      userID: new Uint8Array(Buffer.from(userHandle, 'base64url')),
      attestationType: 'none',
      excludeCredentials: existing.map((p) => ({ id: p.credential_id, transports: transportsOf(p) })),
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'required' },
      timeout: this.settings.challengeTtlMs,
    });
    const challengeId = await this.issueChallenge({
      purpose: 'register',
      principal: input.principal,
      session: input.session,
      challenge: options.challenge,
    });
    return { challengeId, options };
  }

  /** Verifies a registration and keeps the passkey; its audit record (with the public key) is durable first. */
  async register(given: {
    principal: string;
    session: string;
    challengeId: unknown;
    response: unknown;
    name: string;
    signInMethod: string;
  }): Promise<{ ok: true; passkey: StoredPasskey } | Refusal> {
    const input = { ...given, principal: canonical(given.principal) };
    const parsed = registrationResponseSchema.safeParse(input.response);
    if (!parsed.success) return refuse('ERR_PASSKEY_MALFORMED', issue(parsed.error));
    const record = await this.takeChallenge(input.challengeId, 'register', input.principal, input.session);
    if ('ok' in record) return record;
    let info;
    try {
      const result = await verifyRegistrationResponse({
        response: parsed.data as RegistrationResponseJSON,
        expectedChallenge: record.challenge,
        expectedOrigin: this.settings.origin,
        expectedRPID: this.settings.rpId,
        requireUserVerification: true,
      });
      if (!result.verified) return refuse('ERR_PASSKEY_REGISTRATION_INVALID', 'the registration did not verify');
      info = result.registrationInfo;
    } catch (e) {
      return refuse('ERR_PASSKEY_REGISTRATION_INVALID', `the registration did not verify: ${(e as Error).message}`);
    }
    const { store, audit, clock } = this.deps;
    const existing = await store.list(input.principal);
    if (existing.some((p) => p.credential_id === info.credential.id))
      return refuse('ERR_PASSKEY_EXISTS', 'this passkey is registered already');
    if (existing.length >= this.settings.maxPerPrincipal) {
      return refuse(
        'ERR_PASSKEY_LIMIT',
        `${input.principal} has ${existing.length} passkeys, the most allowed; remove one first`,
      );
    }
    const now = clock.now();
    const passkey: StoredPasskey = {
      credential_id: info.credential.id,
      public_key: Buffer.from(info.credential.publicKey).toString('base64url'),
      counter: info.credential.counter,
      transports: (info.credential.transports ?? []).join(','),
      aaguid: info.aaguid,
      device_type: info.credentialDeviceType,
      backed_up: info.credentialBackedUp,
      name: cleanName(input.name) || `passkey ${existing.length + 1}`,
      created_at: now,
      last_used_at: 0,
      rp_id: this.settings.rpId,
      origin: this.settings.origin,
    };
    await audit.append({
      type: 'passkey_registered',
      principal: input.principal,
      credential_id: passkey.credential_id,
      public_key: passkey.public_key,
      public_key_format: 'cose',
      counter: passkey.counter,
      rp_id: passkey.rp_id,
      origin: passkey.origin,
      aaguid: passkey.aaguid,
      device_type: passkey.device_type,
      backed_up: passkey.backed_up,
      user_verified: info.userVerified,
      name: passkey.name,
      sign_in_method: input.signInMethod,
      registered_at: now,
    });
    const stored = await store.register(input.principal, passkey, this.settings.maxPerPrincipal);
    if (stored !== 'registered') {
      // Lost a race with another registration: the record above must not stand alone.
      await audit.append({
        type: 'passkey_removed',
        principal: input.principal,
        credential_id: passkey.credential_id,
        by: 'broker',
        reason: `registration refused (${stored})`,
      });
      return stored === 'exists'
        ? refuse('ERR_PASSKEY_EXISTS', 'this passkey is registered already')
        : refuse('ERR_PASSKEY_LIMIT', `${input.principal} has the most passkeys allowed`);
    }
    this.deps.logger.info({ principal: input.principal, credentialId: passkey.credential_id }, 'passkey registered');
    return { ok: true, passkey };
  }

  /** Removes one of the principal's passkeys (audited). */
  async remove(name: string, credentialId: string, by: string): Promise<boolean> {
    const principal = canonical(name);
    const removed = await this.deps.store.remove(principal, credentialId);
    if (removed === undefined) return false;
    await this.deps.audit.append({
      type: 'passkey_removed',
      principal,
      credential_id: credentialId,
      by,
      name: removed.name,
    });
    this.deps.logger.info({ principal, credentialId, by }, 'passkey removed');
    return true;
  }

  // ---- assertions ----

  /** The passkey was registered for this console's origin and RP ID. */
  private boundHere(p: StoredPasskey): boolean {
    return p.origin === this.settings.origin && p.rp_id === this.settings.rpId;
  }

  private boundElsewhere(p: StoredPasskey): Refusal {
    return refuse(
      'ERR_PASSKEY_WRONG_ORIGIN',
      `passkey ${p.credential_id} is registered for ${p.origin} (RP ID ${p.rp_id}); the console is now at ${this.settings.origin}: register a passkey again`,
    );
  }

  private async assertionOptions(
    principal: string,
    challenge: Uint8Array<ArrayBuffer>,
  ): Promise<PublicKeyCredentialRequestOptionsJSON | Refusal> {
    const all = await this.deps.store.list(principal);
    if (all.length === 0)
      return refuse('ERR_PASSKEY_NONE', `${principal} has no passkey yet: register one under "My passkeys" first`);
    // A registration binds its origin and RP ID (audit verify checks each vote against them):
    // passkeys of the console's former address do not count here.
    const passkeys = all.filter((p) => this.boundHere(p));
    if (passkeys.length === 0) {
      const former = [...new Set(all.map((p) => p.origin))].join(', ');
      return refuse(
        'ERR_PASSKEY_NONE',
        `${principal}'s passkeys are registered for ${former}; the console is now at ${this.settings.origin}: register a passkey again under "My passkeys"`,
      );
    }
    return generateAuthenticationOptions({
      rpID: this.settings.rpId,
      allowCredentials: passkeys.map((p) => ({ id: p.credential_id, transports: transportsOf(p) })),
      challenge,
      userVerification: 'required',
      timeout: this.settings.challengeTtlMs,
    });
  }

  /** The challenge for one vote: derived from the request, the decision, its parameters digest and a fresh nonce. */
  async voteOptions(
    given: Omit<VoteTarget, 'maxAgeMs'>,
  ): Promise<{ ok: true; challengeId: string; options: PublicKeyCredentialRequestOptionsJSON } | Refusal> {
    const target = { ...given, principal: canonical(given.principal) };
    const input: PasskeyChallengeInput = {
      v: 1,
      purpose: 'vote',
      request_id: target.requestId,
      decision: target.decision,
      parameters_digest: target.parametersDigest,
      nonce: randomBytes(16).toString('base64url'),
    };
    const options = await this.assertionOptions(target.principal, passkeyChallengeBytes(input));
    if ('ok' in options) return options;
    const challengeId = await this.issueChallenge({
      purpose: 'vote',
      principal: target.principal,
      session: '',
      input,
      challenge: options.challenge,
    });
    return { ok: true, challengeId, options };
  }

  async signInOptions(
    name: string,
    session: string,
  ): Promise<{ ok: true; challengeId: string; options: PublicKeyCredentialRequestOptionsJSON } | Refusal> {
    const principal = canonical(name);
    const input: PasskeyChallengeInput = {
      v: 1,
      purpose: 'sign_in',
      principal,
      nonce: randomBytes(16).toString('base64url'),
    };
    const options = await this.assertionOptions(principal, passkeyChallengeBytes(input));
    if ('ok' in options) return options;
    const challengeId = await this.issueChallenge({
      purpose: 'sign_in',
      principal,
      session,
      input,
      challenge: options.challenge,
    });
    return { ok: true, challengeId, options };
  }

  /** Verifies an assertion against the challenge record: the key is the principal's, the counter goes up. */
  private async verifyAssertion(
    principal: string,
    record: ChallengeRecord,
    response: unknown,
  ): Promise<{ ok: true; assertion: PasskeyAssertion } | Refusal> {
    const parsed = assertionResponseSchema.safeParse(response);
    if (!parsed.success) return refuse('ERR_PASSKEY_MALFORMED', issue(parsed.error));
    const r = parsed.data;
    if (r.id !== r.rawId) return refuse('ERR_PASSKEY_MALFORMED', 'id and rawId differ');
    const { store, clock } = this.deps;
    const passkey = await store.get(principal, r.id);
    if (passkey === undefined)
      return refuse('ERR_PASSKEY_NOT_YOURS', `credential ${r.id} is not one of ${principal}'s passkeys`);
    if (!this.boundHere(passkey)) return this.boundElsewhere(passkey);
    const assertion: PasskeyAssertion = {
      credential_id: r.id,
      authenticator_data: r.response.authenticatorData,
      client_data_json: r.response.clientDataJSON,
      signature: r.response.signature,
      ...(r.response.userHandle ? { user_handle: r.response.userHandle } : {}),
      challenge: record.input as PasskeyChallengeInput,
      rp_id: this.settings.rpId,
      origin: this.settings.origin,
      counter: 0,
      asserted_at: clock.now(),
    };
    const check = await checkPasskeyAssertion(
      assertion,
      { credentialId: passkey.credential_id, publicKey: passkey.public_key },
      this.settings,
    );
    if (!check.ok) return refuse(check.code, check.message);
    assertion.counter = check.counter;
    const used = await store.use(principal, passkey.credential_id, check.counter, assertion.asserted_at);
    if (used.status === 'gone') return refuse('ERR_PASSKEY_NOT_YOURS', `credential ${r.id} was removed meanwhile`);
    if (used.status === 'regressed') {
      this.deps.logger.warn(
        { principal, credentialId: r.id, counter: check.counter, stored: used.stored },
        'passkey signature counter went back: a cloned authenticator?',
      );
      return refuse(
        'ERR_PASSKEY_COUNTER_REGRESSION',
        `the passkey's signature counter (${check.counter}) is not above the last one seen (${used.stored}): the authenticator may have been cloned; this assertion does not count`,
      );
    }
    return { ok: true, assertion };
  }

  /** A passkey sign-in in the console (for rules with step_up_max_age): kept so votes can refer to it. */
  async verifySignIn(given: {
    principal: string;
    session: string;
    challengeId: unknown;
    response: unknown;
  }): Promise<{ ok: true; signInId: string; assertion: PasskeyAssertion } | Refusal> {
    const input = { ...given, principal: canonical(given.principal) };
    const record = await this.takeChallenge(input.challengeId, 'sign_in', input.principal, input.session);
    if ('ok' in record) return record;
    const verified = await this.verifyAssertion(input.principal, record, input.response);
    if (!verified.ok) return verified;
    const signInId = newId();
    const kept: SignInRecord = { principal: input.principal, assertion: verified.assertion };
    await this.deps.store.putJson(this.deps.keys.passkeySignIn(signInId), kept, MAX_SIGN_IN_AGE_MS);
    return { ok: true, signInId, assertion: verified.assertion };
  }

  /** What makes a vote on a webauthn rule count: an assertion made for this vote, or (step_up_max_age) a recent passkey sign-in. */
  async verifyVote(given: VoteTarget, proof: VoteProof): Promise<{ ok: true; assertion: PasskeyAssertion } | Refusal> {
    const target = { ...given, principal: canonical(given.principal) };
    if (proof.kind === 'sign_in') return this.verifyRecentSignIn(target, proof.signInId);
    const record = await this.takeChallenge(proof.challengeId, 'vote', target.principal, '');
    if ('ok' in record) return record;
    const input = record.input;
    if (
      input?.purpose !== 'vote' ||
      input.request_id !== target.requestId ||
      input.decision !== target.decision ||
      input.parameters_digest !== target.parametersDigest
    ) {
      const what =
        input?.purpose === 'vote' ? `the ${input.decision} of request ${input.request_id}` : 'something else';
      return refuse(
        'ERR_PASSKEY_CHALLENGE_MISMATCH',
        `the challenge was issued for ${what}, not the ${target.decision} of request ${target.requestId}`,
      );
    }
    return this.verifyAssertion(target.principal, record, proof.response);
  }

  private async verifyRecentSignIn(
    target: VoteTarget,
    signInId: string,
  ): Promise<{ ok: true; assertion: PasskeyAssertion } | Refusal> {
    if (target.maxAgeMs === undefined) {
      return refuse(
        'ERR_STEP_UP_STALE',
        'this rule asks for a passkey assertion made for this vote; a passkey sign-in does not count',
      );
    }
    const kept = /^[A-Za-z0-9_-]{16,64}$/.test(signInId)
      ? await this.deps.store.getJson<SignInRecord>(this.deps.keys.passkeySignIn(signInId))
      : undefined;
    if (kept === undefined || kept.principal !== target.principal)
      return refuse('ERR_STEP_UP_STALE', 'no recent passkey sign-in: confirm with your passkey');
    const age = this.deps.clock.now() - kept.assertion.asserted_at;
    if (age > target.maxAgeMs) {
      return refuse(
        'ERR_STEP_UP_STALE',
        `your passkey sign-in is ${Math.round(age / 1000)}s old; this rule accepts ${Math.round(target.maxAgeMs / 1000)}s: confirm with your passkey again`,
      );
    }
    // Checked again: the passkey must still be registered, and the record must be what was verified.
    const passkey = await this.deps.store.get(target.principal, kept.assertion.credential_id);
    if (passkey === undefined)
      return refuse(
        'ERR_PASSKEY_NOT_YOURS',
        `credential ${kept.assertion.credential_id} is no longer one of ${target.principal}'s passkeys`,
      );
    if (!this.boundHere(passkey)) return this.boundElsewhere(passkey);
    const check = await checkPasskeyAssertion(
      kept.assertion,
      { credentialId: passkey.credential_id, publicKey: passkey.public_key },
      this.settings,
    );
    if (!check.ok) return refuse(check.code, check.message);
    return { ok: true, assertion: kept.assertion };
  }
}

function transportsOf(p: StoredPasskey): AuthenticatorTransportFuture[] {
  return p.transports === '' ? [] : (p.transports.split(',') as AuthenticatorTransportFuture[]);
}

/** A passkey label: printable, one line, short. */
export function cleanName(name: string): string {
  return name
    .normalize('NFKC')
    .replace(/[\p{C}\p{Zl}\p{Zp}]/gu, '')
    .trim()
    .slice(0, MAX_NAME);
}

export { passkeyChallenge };
