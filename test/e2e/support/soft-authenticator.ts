// Assertions made in Node with a passkey's private key (exported from the
// browser's virtual authenticator: a clone of it), for what a browser will not
// produce: another origin or RP ID, a counter that goes back, a missing UV flag.
// WebAuthn's assertion format: authenticatorData = SHA-256(rpId) | flags | counter
// (big-endian u32); signature = ECDSA P-256 / SHA-256 (DER) or Ed25519 over
// authenticatorData || SHA-256(clientDataJSON).
import { createHash, createPrivateKey, sign } from 'node:crypto';
import type { VirtualCredential } from './browser.js';

export interface SoftAssertionOptions {
  challenge: string;
  origin: string;
  rpId: string;
  counter: number;
  userPresent?: boolean;
  userVerified?: boolean;
  type?: string;
}

const b64url = (b: Buffer | Uint8Array) => Buffer.from(b).toString('base64url');

/** An assertion in the shape @simplewebauthn/browser's startAuthentication() returns. */
export function softAssertion(credential: VirtualCredential, o: SoftAssertionOptions) {
  const flags = (o.userPresent === false ? 0 : 0x01) | (o.userVerified === false ? 0 : 0x04);
  const counter = Buffer.alloc(4);
  counter.writeUInt32BE(o.counter);
  const authenticatorData = Buffer.concat([
    createHash('sha256').update(o.rpId).digest(),
    Buffer.from([flags]),
    counter,
  ]);
  const clientDataJSON = Buffer.from(
    JSON.stringify({ type: o.type ?? 'webauthn.get', challenge: o.challenge, origin: o.origin, crossOrigin: false }),
  );
  const key = createPrivateKey({ key: Buffer.from(credential.privateKey, 'base64'), format: 'der', type: 'pkcs8' });
  const signed = Buffer.concat([authenticatorData, createHash('sha256').update(clientDataJSON).digest()]);
  // ES256 (ECDSA P-256, DER) or EdDSA (Ed25519), whichever the authenticator chose at registration.
  const signature = sign(key.asymmetricKeyType === 'ed25519' ? null : 'sha256', signed, key);
  const id = Buffer.from(credential.credentialId, 'base64').toString('base64url');
  return {
    id,
    rawId: id,
    type: 'public-key' as const,
    response: {
      authenticatorData: b64url(authenticatorData),
      clientDataJSON: b64url(clientDataJSON),
      signature: b64url(signature),
    },
    clientExtensionResults: {},
  };
}
