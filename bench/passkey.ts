// Passkey evidence (issue 16): what it costs to check one passkey vote, the way
// the broker does when the vote is cast and `audit verify` does offline
// (checkPasskeyAssertion: clientDataJSON and authenticatorData parsed, challenge
// recomputed from its RFC 8785 input, origin, RP ID hash, UP/UV flags, COSE key
// decoded and the signature verified by @simplewebauthn/server), against the
// baseline of a bare node:crypto ECDSA P-256 verify of the same signature.
import { createHash, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { CertificateAuthority } from '@countersign/broker/testing';
import {
  checkPasskeyAssertion,
  passkeyChallenge,
  type PasskeyAssertion,
} from '../broker/src/audit/passkey-assertion.js';
import { fmt, table } from './harness.js';

async function rate(fn: () => unknown, durationMs: number): Promise<number> {
  let n = 0;
  const start = performance.now();
  const end = start + durationMs;
  while (performance.now() < end) {
    for (let i = 0; i < 20; i++) await fn();
    n += 20;
  }
  return n / ((performance.now() - start) / 1000);
}

export async function benchPasskey(options: { durationMs: number }): Promise<void> {
  // A P-256 key pair whose public half is in COSE form, as a registration record keeps it.
  const cert = CertificateAuthority.createRoot('example.org').issueSvid('spiffe://example.org/human/alice');
  const privateKey = createPrivateKey(cert.keyPem);
  const spki = createPublicKey(privateKey);
  const jwk = spki.export({ format: 'jwk' });
  // Bench input only: the fixed CBOR of a COSE EC2 P-256 key {1: 2, 3: -7, -1: 1, -2: x, -3: y}.
  const publicKey = Buffer.concat([
    Buffer.from('a5010203262001215820', 'hex'),
    Buffer.from(jwk.x as string, 'base64url'),
    Buffer.from('225820', 'hex'),
    Buffer.from(jwk.y as string, 'base64url'),
  ]).toString('base64url');
  const origin = 'https://approve.example.org';
  const rpId = 'approve.example.org';
  const assertion: PasskeyAssertion = {
    credential_id: 'Y3JlZGVudGlhbC0x',
    authenticator_data: '',
    client_data_json: '',
    signature: '',
    challenge: {
      v: 1,
      purpose: 'vote',
      request_id: 'req_AbCdEfGhIjKlMnOp',
      decision: 'approve',
      parameters_digest: 'n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg',
      nonce: 'bm9uY2Vub25jZW5vbmNl',
    },
    rp_id: rpId,
    origin,
    counter: 7,
    asserted_at: Date.now(),
  };
  const counter = Buffer.alloc(4);
  counter.writeUInt32BE(7);
  const authData = Buffer.concat([createHash('sha256').update(rpId).digest(), Buffer.from([0x05]), counter]);
  const clientData = Buffer.from(
    JSON.stringify({
      type: 'webauthn.get',
      challenge: passkeyChallenge(assertion.challenge),
      origin,
      crossOrigin: false,
    }),
  );
  const signed = Buffer.concat([authData, createHash('sha256').update(clientData).digest()]);
  const signature = sign('sha256', signed, privateKey);
  assertion.authenticator_data = authData.toString('base64url');
  assertion.client_data_json = clientData.toString('base64url');
  assertion.signature = signature.toString('base64url');

  const key = { credentialId: assertion.credential_id, publicKey };
  const ours = async () => {
    const r = await checkPasskeyAssertion(assertion, key, { origin, rpId });
    if (!r.ok) throw new Error(r.message);
  };
  const bare = () => {
    if (!verify('sha256', signed, spki, signature)) throw new Error('bare verify failed');
  };
  await rate(ours, 300);
  await rate(bare, 300);
  const rounds = 3;
  let oursTotal = 0;
  let bareTotal = 0;
  for (let i = 0; i < rounds; i++) {
    bareTotal += await rate(bare, options.durationMs / rounds);
    oursTotal += await rate(ours, options.durationMs / rounds);
  }
  const bareRate = bareTotal / rounds;
  const oursRate = oursTotal / rounds;
  process.stdout.write(
    '\nPasskey vote check (ES256, one core, sequential): every check of a vote (live and in audit verify) vs a bare ECDSA verify of the same signature\n',
  );
  process.stdout.write(
    `${table([
      { check: 'bare node:crypto ECDSA P-256 verify (baseline)', 'checks/s': fmt(bareRate), ratio: '1.00' },
      {
        check: 'checkPasskeyAssertion (parse, challenge, origin, RP ID, flags, COSE, signature)',
        'checks/s': fmt(oursRate),
        ratio: (oursRate / bareRate).toFixed(2),
      },
    ])}\n`,
  );
}
