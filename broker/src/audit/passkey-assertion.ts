// A passkey (WebAuthn) assertion as evidence: what the challenge of a vote is
// derived from, what the vote's audit record keeps, and the check that the
// broker runs when the vote is cast and `audit verify` runs again offline. The
// cryptography (COSE keys, signatures) is @simplewebauthn/server's; this module
// only decides what must be true and says precisely what is not.
import { createHash } from 'node:crypto';
import { canonicalJson } from '@countersign/proto';
import { verifyAuthenticationResponse, type AuthenticationResponseJSON } from '@simplewebauthn/server';
import { decodeClientDataJSON, isoBase64URL, parseAuthenticatorData } from '@simplewebauthn/server/helpers';

/**
 * What a challenge is derived from. A vote's challenge names the request, the
 * decision and the parameters digest, so an assertion made for one vote is
 * worthless for any other; a sign-in's names the principal and the session.
 */
export type PasskeyChallengeInput =
  | {
      v: 1;
      purpose: 'vote';
      request_id: string;
      decision: 'approve' | 'deny';
      parameters_digest: string;
      nonce: string;
    }
  | { v: 1; purpose: 'sign_in'; principal: string; nonce: string };

/** The WebAuthn challenge: SHA-256 of the RFC 8785 JSON of its input (32 bytes). */
export function passkeyChallengeBytes(input: PasskeyChallengeInput): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(createHash('sha256').update(canonicalJson(input), 'utf8').digest());
}

/** The challenge as it appears in clientDataJSON (base64url). */
export const passkeyChallenge = (input: PasskeyChallengeInput): string =>
  Buffer.from(passkeyChallengeBytes(input)).toString('base64url');

/** One assertion, exactly as the authenticator produced it, with what it was checked against. */
export interface PasskeyAssertion {
  /** base64url credential id. */
  credential_id: string;
  /** base64url, as signed. */
  authenticator_data: string;
  /** base64url, as signed (its SHA-256 is part of the signed data). */
  client_data_json: string;
  /** base64url signature over authenticator_data || SHA-256(client_data_json). */
  signature: string;
  user_handle?: string | undefined;
  /** What the challenge was derived from; verifiers recompute it. */
  challenge: PasskeyChallengeInput;
  rp_id: string;
  origin: string;
  /** The authenticator's signature counter in this assertion. */
  counter: number;
  /** When the broker verified it (ms since the epoch). */
  asserted_at: number;
}

/** A registered passkey's public key, as its registration record keeps it. */
export interface PasskeyKey {
  /** base64url credential id. */
  credentialId: string;
  /** The COSE_Key from the attestation, base64url. */
  publicKey: string;
}

/** Why an assertion does not prove what it claims; each code is stable. */
export type PasskeyProblemCode =
  | 'ERR_PASSKEY_MALFORMED'
  | 'ERR_PASSKEY_CHALLENGE_MISMATCH'
  | 'ERR_PASSKEY_WRONG_TYPE'
  | 'ERR_PASSKEY_WRONG_ORIGIN'
  | 'ERR_PASSKEY_WRONG_RP_ID'
  | 'ERR_PASSKEY_USER_NOT_PRESENT'
  | 'ERR_PASSKEY_USER_NOT_VERIFIED'
  | 'ERR_PASSKEY_BAD_SIGNATURE';

export type AssertionCheck =
  { ok: true; counter: number; userVerified: true } | { ok: false; code: PasskeyProblemCode; message: string };

/** Most bytes of any one base64url field an assertion may carry. */
export const MAX_ASSERTION_FIELD_CHARS = 16 * 1024;
const B64URL = /^[A-Za-z0-9_-]*$/;

const fail = (code: PasskeyProblemCode, message: string): AssertionCheck => ({ ok: false, code, message });

/**
 * Checks an assertion against the key it claims, the challenge derived from its
 * input, the origin and RP ID: type webauthn.get, user present and verified,
 * signature. Counters are the caller's business (they need state).
 */
export async function checkPasskeyAssertion(
  a: PasskeyAssertion,
  key: PasskeyKey,
  expected: { origin: string; rpId: string },
): Promise<AssertionCheck> {
  for (const field of ['credential_id', 'authenticator_data', 'client_data_json', 'signature'] as const) {
    const v = a[field];
    if (typeof v !== 'string' || v === '' || v.length > MAX_ASSERTION_FIELD_CHARS || !B64URL.test(v)) {
      return fail(
        'ERR_PASSKEY_MALFORMED',
        `${field}: expected base64url of at most ${MAX_ASSERTION_FIELD_CHARS} characters`,
      );
    }
  }
  if (a.credential_id !== key.credentialId)
    return fail('ERR_PASSKEY_MALFORMED', `the assertion is by credential ${a.credential_id}, not ${key.credentialId}`);
  let client: { type?: unknown; challenge?: unknown; origin?: unknown };
  let auth: ReturnType<typeof parseAuthenticatorData>;
  try {
    client = decodeClientDataJSON(a.client_data_json);
    auth = parseAuthenticatorData(isoBase64URL.toBuffer(a.authenticator_data));
  } catch (e) {
    return fail('ERR_PASSKEY_MALFORMED', `cannot parse the assertion: ${(e as Error).message}`);
  }
  if (client.type !== 'webauthn.get')
    return fail(
      'ERR_PASSKEY_WRONG_TYPE',
      `client data type is ${JSON.stringify(client.type)}, expected "webauthn.get"`,
    );
  const challenge = passkeyChallenge(a.challenge);
  if (client.challenge !== challenge) {
    return fail(
      'ERR_PASSKEY_CHALLENGE_MISMATCH',
      `the signed challenge is not the one derived from ${describeChallenge(a.challenge)}: it was made for something else`,
    );
  }
  if (client.origin !== expected.origin)
    return fail(
      'ERR_PASSKEY_WRONG_ORIGIN',
      `signed for origin ${JSON.stringify(client.origin)}, expected ${expected.origin}`,
    );
  const rpIdHash = createHash('sha256').update(expected.rpId, 'utf8').digest();
  if (!rpIdHash.equals(Buffer.from(auth.rpIdHash)))
    return fail('ERR_PASSKEY_WRONG_RP_ID', `the authenticator data is for another relying party than ${expected.rpId}`);
  if (!auth.flags.up)
    return fail('ERR_PASSKEY_USER_NOT_PRESENT', 'the authenticator did not test for user presence (UP flag clear)');
  if (!auth.flags.uv)
    return fail(
      'ERR_PASSKEY_USER_NOT_VERIFIED',
      'the authenticator did not verify the user (UV flag clear): a PIN or biometric is required',
    );

  const response: AuthenticationResponseJSON = {
    id: a.credential_id,
    rawId: a.credential_id,
    type: 'public-key',
    response: {
      authenticatorData: a.authenticator_data,
      clientDataJSON: a.client_data_json,
      signature: a.signature,
      ...(a.user_handle ? { userHandle: a.user_handle } : {}),
    },
    clientExtensionResults: {},
  };
  try {
    const result = await verifyAuthenticationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: expected.origin,
      expectedRPID: expected.rpId,
      // Counter 0 here: the caller compares counters against its own state, after the signature holds.
      credential: { id: key.credentialId, publicKey: isoBase64URL.toBuffer(key.publicKey), counter: 0 },
      requireUserVerification: true,
    });
    if (!result.verified)
      return fail(
        'ERR_PASSKEY_BAD_SIGNATURE',
        `the signature does not verify with the public key registered for credential ${key.credentialId}`,
      );
    return { ok: true, counter: result.authenticationInfo.newCounter, userVerified: true };
  } catch (e) {
    return fail('ERR_PASSKEY_BAD_SIGNATURE', `the assertion does not verify: ${(e as Error).message}`);
  }
}

export function describeChallenge(c: PasskeyChallengeInput): string {
  return c.purpose === 'vote'
    ? `${c.decision} of request ${c.request_id} (parameters ${c.parameters_digest})`
    : `a sign-in of ${c.principal}`;
}

/** The public origin and RP ID of a console at this URL. */
export function relyingParty(publicUrl: string): { origin: string; rpId: string } {
  const url = new URL(publicUrl);
  return { origin: url.origin, rpId: url.hostname };
}
