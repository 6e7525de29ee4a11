// `audit verify` judges each passkey vote against the origin and RP ID its
// registration record binds, not against the console's current public_url: a
// console that moved (public_url changed, passkeys registered again) keeps its old
// votes valid, while a vote whose signed origin or recorded origin differs from
// its registration's is named by its sequence number.
// The trail is built here with a software authenticator (node:crypto P-256 keys,
// the COSE key encoded with @simplewebauthn's CBOR) and chained with chainRecords.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { createLocalJWKSet } from 'jose';
import { isoCBOR } from '@simplewebauthn/server/helpers';
import { chainRecords, EMPTY_HEAD, type AuditRecord } from '../src/audit/chain.js';
import type { AuditEvent } from '../src/audit/events.js';
import { passkeyChallenge, type PasskeyChallengeInput } from '../src/audit/passkey-assertion.js';
import { verifyAuditTrail } from '../src/audit/verify.js';
import { createLogger } from '../src/observability/logger.js';
import { Passkeys } from '../src/passkeys/passkeys.js';
import { PasskeyStore } from '../src/passkeys/store.js';
import { Keys } from '../src/redis/keys.js';
import { testRedis } from './support/redis.js';
import { softAssertion } from '../../test/e2e/support/soft-authenticator.js';

const OLD = new URL('https://approve.old.example');
const NEW = new URL('https://countersign.new.example:8443');
const DIGEST = createHash('sha256').update('parameters').digest('base64url');
const getKey = createLocalJWKSet({ keys: [] });

/** A passkey held in memory: its private key as DevTools would export it, its COSE public key. */
function softPasskey() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const cose = new Map<number, number | Uint8Array>([
    [1, 2], // kty EC2
    [3, -7], // alg ES256
    [-1, 1], // crv P-256
    [-2, Buffer.from(jwk.x as string, 'base64url')],
    [-3, Buffer.from(jwk.y as string, 'base64url')],
  ]);
  const id = randomBytes(16);
  return {
    credentialId: id.toString('base64url'),
    virtual: {
      credentialId: id.toString('base64'),
      privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
      signCount: 0,
      rpId: '',
    },
    publicKey: Buffer.from(isoCBOR.encode(cose)).toString('base64url'),
  };
}

type Passkey = ReturnType<typeof softPasskey>;

const registered = (p: Passkey, rp: URL): AuditEvent => ({
  type: 'passkey_registered',
  principal: 'alice',
  credential_id: p.credentialId,
  public_key: p.publicKey,
  public_key_format: 'cose',
  counter: 0,
  rp_id: rp.hostname,
  origin: rp.origin,
});

/** A webauthn request and alice's approve vote on it, asserted at `rp` with counter `counter`. */
function approvedAt(requestId: string, p: Passkey, rp: URL, counter: number, signedOrigin = rp.origin): AuditEvent[] {
  const challenge: PasskeyChallengeInput = {
    v: 1,
    purpose: 'vote',
    request_id: requestId,
    decision: 'approve',
    parameters_digest: DIGEST,
    nonce: randomBytes(8).toString('base64url'),
  };
  const response = softAssertion(p.virtual, {
    challenge: passkeyChallenge(challenge),
    origin: signedOrigin,
    rpId: rp.hostname,
    counter,
  });
  return [
    {
      type: 'request_received',
      request_id: requestId,
      requester: 'spiffe://example.org/ci/deployer',
      operation: 'db-migrate',
      resource: 'prod/orders',
      parameters_digest: DIGEST,
    },
    {
      type: 'decision',
      request_id: requestId,
      decision: 'approve',
      rule: 'prod-migrations',
      policy_digest: 'sha256:p',
      step_up: 'webauthn',
    },
    {
      type: 'vote',
      request_id: requestId,
      principal: 'alice',
      decision: 'approve',
      channel: 'console',
      step_up: 'webauthn',
      voted_at: 1_000,
      webauthn: {
        credential_id: p.credentialId,
        authenticator_data: response.response.authenticatorData,
        client_data_json: response.response.clientDataJSON,
        signature: response.response.signature,
        challenge,
        rp_id: rp.hostname,
        origin: rp.origin,
        counter,
        asserted_at: 1_000,
      },
    },
  ];
}

const chain = (events: AuditEvent[]): AuditRecord[] => chainRecords(EMPTY_HEAD, events, 1_000).map((c) => c.record);
const verify = (records: AuditRecord[], consoleOrigin?: string) =>
  verifyAuditTrail({
    records: records.map((r) => JSON.stringify(r)),
    checkpoints: [],
    fromGenesis: true,
    getKey,
    consoleOrigin,
  });
const voteSeqs = (records: AuditRecord[]) => records.filter((r) => r.event.type === 'vote').map((r) => r.seq);

describe('audit verify: passkey votes and the console origin', () => {
  // Alice registered a passkey at the old console and approved; the console moved
  // (public_url changed), she registered a passkey again and approved again.
  const first = softPasskey();
  const second = softPasskey();
  const events = [
    registered(first, OLD),
    ...approvedAt('req_one', first, OLD, 1),
    registered(second, NEW),
    ...approvedAt('req_two', second, NEW, 1),
  ];

  it('keeps votes made before public_url changed valid: each is judged against its registration', async () => {
    const records = chain(events);
    for (const origin of [NEW.origin, OLD.origin, undefined]) {
      const report = await verify(records, origin);
      assert.deepEqual(report.problems, [], `configured console ${origin}`);
      assert.equal(report.passkeyVotes, 2);
    }
  });

  it('names the vote whose signed origin is not its registration’s, whatever the current configuration', async () => {
    // A vote signed at the new console with the passkey registered for the old one (same key, other origin).
    const moved = [
      registered(first, OLD),
      ...approvedAt('req_one', first, OLD, 1),
      ...approvedAt('req_two', first, NEW, 2, NEW.origin),
    ];
    const records = chain(moved);
    const [, seq] = voteSeqs(records);
    for (const origin of [NEW.origin, undefined]) {
      const report = await verify(records, origin);
      assert.equal(report.problems.length, 1, JSON.stringify(report.problems));
      const [p] = report.problems;
      assert.equal(p?.seq, seq);
      assert.equal(p?.code, 'ERR_AUDIT_PASSKEY_INVALID');
      assert.match(p?.message ?? '', /ERR_PASSKEY_WRONG_ORIGIN|registered for https:\/\/approve\.old\.example/);
    }
  });

  it('names a vote whose recorded origin was altered after the fact', async () => {
    const records = chain(events);
    const [seq] = voteSeqs(records);
    const altered = events.map((e) => structuredClone(e));
    const vote = altered.find((e) => e.type === 'vote') as AuditEvent & { webauthn: Record<string, unknown> };
    vote.webauthn.origin = NEW.origin;
    vote.webauthn.rp_id = NEW.hostname;
    const report = await verify(chain(altered), NEW.origin);
    assert.equal(report.problems.length, 1, JSON.stringify(report.problems));
    assert.equal(report.problems[0]?.seq, seq);
    assert.match(
      report.problems[0]?.message ?? '',
      /records origin https:\/\/countersign\.new\.example:8443 and RP ID countersign\.new\.example, but its passkey was registered for https:\/\/approve\.old\.example \(RP ID approve\.old\.example\)/,
    );
  });

  it('names a vote whose signed client data was altered to another origin', async () => {
    const altered = events.map((e) => structuredClone(e));
    const vote = altered.find((e) => e.type === 'vote') as AuditEvent & { webauthn: Record<string, string> };
    const client = JSON.parse(
      Buffer.from(vote.webauthn.client_data_json as string, 'base64url').toString('utf8'),
    ) as Record<string, unknown>;
    client.origin = NEW.origin;
    vote.webauthn.client_data_json = Buffer.from(JSON.stringify(client)).toString('base64url');
    const records = chain(altered);
    const report = await verify(records, NEW.origin);
    assert.equal(report.problems.length, 1, JSON.stringify(report.problems));
    assert.equal(report.problems[0]?.seq, voteSeqs(records)[0]);
    assert.match(report.problems[0]?.message ?? '', /ERR_PASSKEY_WRONG_ORIGIN/);
  });
});

describe('the broker at vote time: a passkey counts only at the origin its registration binds', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('refuses a passkey registered for the console at its former address (same RP ID, other origin), naming both', async () => {
    const t = await testRedis('passkey-origin');
    cleanups.push(() => t.cleanup());
    const keys = new Keys(t.prefix);
    const store = new PasskeyStore(t.redis, keys);
    const before = new URL('http://localhost:8090');
    const now = new URL('http://localhost:8091');
    const p = softPasskey();
    const stored = await store.register(
      'alice',
      {
        credential_id: p.credentialId,
        public_key: p.publicKey,
        counter: 0,
        transports: '',
        aaguid: '',
        device_type: 'singleDevice',
        backed_up: false,
        name: 'laptop',
        created_at: 1,
        last_used_at: 0,
        rp_id: before.hostname,
        origin: before.origin,
      },
      5,
    );
    assert.equal(stored, 'registered');
    const audited: AuditEvent[] = [];
    const passkeys = new Passkeys(
      {
        store,
        keys,
        audit: { append: async (e: AuditEvent) => (audited.push(e), {}) as never, appendAll: async () => [] },
        clock: { now: () => 1_000 },
        logger: createLogger({ level: 'silent' }),
      },
      { origin: now.origin, rpId: now.hostname, rpName: 'Countersign', challengeTtlMs: 60_000, maxPerPrincipal: 5 },
    );
    const target = { principal: 'alice', requestId: 'req_one', parametersDigest: DIGEST, decision: 'approve' as const };
    const options = await passkeys.voteOptions(target);
    assert.equal(options.ok, false);
    assert.equal(!options.ok && options.code, 'ERR_PASSKEY_NONE');
    assert.match(
      !options.ok ? options.message : '',
      /registered for http:\/\/localhost:8090; the console is now at http:\/\/localhost:8091: register a passkey again/,
    );

    // Alice registers again at the new address; answering with the old passkey still does not count.
    const again = softPasskey();
    const registeredAgain = await store.register(
      'alice',
      {
        credential_id: again.credentialId,
        public_key: again.publicKey,
        counter: 0,
        transports: '',
        aaguid: '',
        device_type: 'singleDevice',
        backed_up: false,
        name: 'phone',
        created_at: 2,
        last_used_at: 0,
        rp_id: now.hostname,
        origin: now.origin,
      },
      5,
    );
    assert.equal(registeredAgain, 'registered');
    const vote = async (p: Passkey) => {
      const o = await passkeys.voteOptions(target);
      assert.ok(o.ok, JSON.stringify(o));
      assert.deepEqual(
        o.options.allowCredentials?.map((c) => c.id),
        [again.credentialId],
        'only the passkey bound to this origin is offered',
      );
      // A browser would use the old one too (the RP ID is the same).
      const response = softAssertion(p.virtual, {
        challenge: o.options.challenge,
        origin: now.origin,
        rpId: now.hostname,
        counter: 1,
      });
      return passkeys.verifyVote(
        { ...target, maxAgeMs: undefined },
        { kind: 'assertion', challengeId: o.challengeId, response },
      );
    };
    const old = await vote(p);
    assert.equal(old.ok, false);
    assert.equal(!old.ok && old.code, 'ERR_PASSKEY_WRONG_ORIGIN');
    assert.match(
      !old.ok ? old.message : '',
      /registered for http:\/\/localhost:8090 \(RP ID localhost\); the console is now at http:\/\/localhost:8091/,
    );
    const fresh = await vote(again);
    assert.ok(fresh.ok, JSON.stringify(fresh));
    assert.equal(fresh.assertion.origin, now.origin);
  });
});
