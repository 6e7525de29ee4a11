// Issue 18, adversarial pass: an attacker who reaches the broker's gRPC port
// without any certificate, and may hold a legitimately issued token for some
// repository, tries to get more out of Identity.ExchangeToken than one SVID for
// that repository once. Real parts: a local OIDC issuer over HTTP (discovery +
// JWKS), the real broker over TLS, Redis.
import assert from 'node:assert/strict';
import { createHash, KeyObject, sign, webcrypto, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { CountersignClient, CountersignClientError, exchangeToken, type ExchangedSvid } from '@countersign/agent';
import { parseConfig, startBroker } from '@countersign/broker';
import {
  CertificateAuthority,
  connectRedis,
  silentLogger,
  startTestBroker,
  type TestBroker,
} from '@countersign/broker/testing';
import { auditEvents, rawCall, rejection } from './support/identity.js';
import { githubClaims, LocalIssuer } from './support/oidc-issuer.js';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: github-staging
    match: { workload: "spiffe://${TD}/github/**", operation: deploy, resource: "staging/*" }
    decision: allow
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, email: alice@${TD}, github_login: alice, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, email: bob@${TD}, spiffe_ids: [spiffe://${TD}/human/bob] }
`;

/** The group order of P-256: (r, n - s) verifies wherever (r, s) does. */
const P256_N = BigInt('0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551');
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The same token with a different signature text that still verifies: base64url's unused trailing bits flipped. */
function withTrailingBitsFlipped(token: string): string {
  const [h, p, s] = token.split('.') as [string, string, string];
  const last = B64URL.indexOf(s.at(-1) as string);
  return `${h}.${p}.${s.slice(0, -1)}${B64URL[last ^ 1]}`;
}

/** An ES256 token with its ECDSA signature's s replaced by n - s (also valid). */
function withHighS(token: string): string {
  const [h, p, s] = token.split('.') as [string, string, string];
  const sig = Buffer.from(s, 'base64url');
  const sValue = BigInt(`0x${sig.subarray(32).toString('hex')}`);
  const flipped = Buffer.from((P256_N - sValue).toString(16).padStart(64, '0'), 'hex');
  return `${h}.${p}.${Buffer.concat([sig.subarray(0, 32), flipped]).toString('base64url')}`;
}

/** A JWS signed as given (jose refuses to sign a crit it does not know). */
function signRaw(header: Record<string, unknown>, payload: Record<string, unknown>, key: CryptoKey): string {
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const signature = sign('sha256', Buffer.from(input), { key: KeyObject.from(key), dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

describe('Identity.ExchangeToken under attack', () => {
  let gh: LocalIssuer;
  let cluster: LocalIssuer;
  let t: TestBroker;
  const closers: { close(): void }[] = [];

  before(async () => {
    gh = await LocalIssuer.start();
    await gh.rotate('ES256');
    cluster = await LocalIssuer.start();
    const ca = CertificateAuthority.createRoot(TD);
    const oidcCa = ca.createIntermediate({ commonName: 'Countersign OIDC CA' });
    t = await startTestBroker({
      ca,
      policy: POLICY,
      principals: PRINCIPALS,
      files: { 'oidc-ca.pem': oidcCa.pem, 'oidc-ca-key.pem': oidcCa.certificate.keyPem },
      identity: `identity:
  svid: { cert_file: broker.pem, key_file: broker-key.pem }
  bundles: [{ trust_domain: ${TD}, file: ca.pem }]
  oidc_ca: { cert_file: oidc-ca.pem, key_file: oidc-ca-key.pem }
  oidc:
    - name: github
      issuer: ${gh.url}
      audience: countersign
      spiffe_id: "spiffe://{trust_domain}/github/{repository}/{environment}"
      require: { repository_owner: my-org }
      svid_ttl: 10m
      algorithms: [RS256, ES256]
      actor: { claim: actor, principal_field: github_login }
    - name: cluster
      issuer: ${cluster.url}
      audience: countersign
      spiffe_id: "spiffe://{trust_domain}/{namespace}/{serviceaccount}"
  xfcc: { enabled: true, proxy_ids: [spiffe://${TD}/mesh/ingress] }
`,
    });
  });
  after(async () => {
    for (const c of closers) c.close();
    await t?.close();
    await gh?.close();
    await cluster?.close();
  });

  const exchange = (token: string, key?: { csrPem: string; keyPem: string }): Promise<ExchangedSvid> =>
    exchangeToken(token, { address: t.address, caPem: t.ca.pem, serverId: `spiffe://${TD}`, key });
  const refusedExchange = async (token: string): Promise<CountersignClientError> => {
    try {
      await exchange(token);
    } catch (e) {
      assert.ok(e instanceof CountersignClientError, String(e));
      return e;
    }
    assert.fail('expected the exchange to be refused');
  };

  // Finding 1. Without a jti (Kubernetes before 1.29, some issuers), single use keyed on the token's
  // text: a JWS signature has other spellings that verify just as well, so "the same token" came back
  // as a new one, exchangeable for another key.
  it('refuses a replay of a token without jti whose signature text was altered but still verifies', async () => {
    const es256 = await gh.sign(githubClaims({ environment: 'no-jti-es', jti: undefined }));
    await exchange(es256);
    for (const [what, variant] of [
      ['trailing base64url bits flipped', withTrailingBitsFlipped(es256)],
      ['ECDSA s replaced by n - s', withHighS(es256)],
      ['whitespace in the signature (base64 decoding skips it)', `${es256.slice(0, -10)} ${es256.slice(-10)}\n`],
    ] as const) {
      assert.notEqual(variant, es256);
      const e = await refusedExchange(variant);
      assert.equal(e.code, 'ERR_OIDC_TOKEN_REPLAYED', `${what}: ${e.code} ${e.message}`);
    }
    const rs256 = await gh.sign(githubClaims({ environment: 'no-jti-rs', jti: undefined }), { key: gh.published[0] });
    await exchange(rs256);
    assert.equal((await refusedExchange(withTrailingBitsFlipped(rs256))).code, 'ERR_OIDC_TOKEN_REPLAYED');
  });

  // Finding 2. With an actor mapping, the person who started the run is the request's on_behalf_of and
  // cannot approve it. A token whose actor claim is missing, or names no one (no principal, not a
  // principal name), got an SVID with no actor at all: its requests could then name anyone.
  it('refuses a token whose actor claim is missing or cannot name a person, instead of dropping separation of duties', async () => {
    for (const [what, actor] of [
      ['missing', undefined],
      ['empty', ''],
      ['a list', ['alice']],
      ['no principal name', '_mallory'],
    ] as const) {
      const e = await refusedExchange(
        await gh.sign(githubClaims({ environment: `actor-${what.replace(/ /g, '-')}`, actor })),
      );
      assert.equal(e.code, 'ERR_OIDC_ACTOR_UNKNOWN', `${what}: ${e.code} ${e.message}`);
      assert.equal(e.grpcStatus, status.UNAUTHENTICATED);
      assert.match(e.message, /claim actor/);
    }
    // A login that is no principal's but is a valid name still works: it becomes the on_behalf_of.
    const svid = await exchange(await gh.sign(githubClaims({ environment: 'actor-stranger', actor: 'Carol-1' })));
    const client = new CountersignClient({
      address: t.address,
      certChainPem: svid.certChainPem,
      keyPem: svid.keyPem,
      caPem: svid.caPem,
    });
    closers.push(client);
    const r = await client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: {} });
    const received = (await auditEvents(t)).find((e) => e.type === 'request_received' && e.request_id === r.requestId);
    assert.equal(received?.on_behalf_of, 'carol-1');
    await assert.rejects(
      client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: {}, onBehalfOf: 'bob' }),
      (e: CountersignClientError) => e.code === 'ERR_ON_BEHALF_OF_CONFLICT',
    );
  });

  // Finding 5 (integrator's review). The claims of an exchanged SVID live in Redis under its
  // thumbprint. When that record was gone (evicted, or a write lost in a failover), the SVID was
  // taken for a plain one: its requests passed with no claims for policy and no actor, so the
  // person behind the run could approve it. An SVID signed by the exchange's CA without its
  // claims must be refused instead.
  it('refuses requests from an exchanged SVID whose claims record is gone, instead of treating it as a plain SVID', async () => {
    const svid = await exchange(await gh.sign(githubClaims({ environment: 'claims-lost', actor: 'bob' })));
    const client = new CountersignClient({
      address: t.address,
      certChainPem: svid.certChainPem,
      keyPem: svid.keyPem,
      caPem: svid.caPem,
    });
    closers.push(client);
    await client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: {} });
    // RFC 8705 x5t#S256 of the leaf: the key the exchange keeps the claims under.
    const thumbprint = createHash('sha256').update(new X509Certificate(svid.certChainPem).raw).digest('base64url');
    const redis = await connectRedis(parseConfig(await readFile(t.configFile, 'utf8'), t.configFile).redis.url);
    try {
      assert.equal(await redis.del(`${t.prefix}oidc:svid:${thumbprint}`), 1, 'the claims record existed');
    } finally {
      redis.disconnect();
    }
    await assert.rejects(
      client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: {} }),
      (e: CountersignClientError) =>
        e.code === 'ERR_OIDC_CLAIMS_MISSING' &&
        e.grpcStatus === status.PERMISSION_DENIED &&
        /exchange a new token/.test(e.message),
    );
  });

  // Finding 3. Exchanged SVIDs carried the serverAuth EKU. Agents accept any SVID of the trust domain as
  // the broker by default (serverId spiffe://<trust domain>), so anyone with a CI job in the org could
  // stand up a "broker" and collect other jobs' OIDC tokens as they try to exchange them.
  it("issues SVIDs that cannot serve TLS: a job holding one cannot pose as the broker and collect other jobs' tokens", async () => {
    const svid = await exchange(await gh.sign(githubClaims({ environment: 'impostor' })));
    const seen: string[] = [];
    const impostor = createSecureServer({ cert: svid.certChainPem, key: svid.keyPem, allowHTTP1: false });
    impostor.on('stream', (stream) => {
      seen.push('call');
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.end();
    });
    impostor.on('tlsClientError', () => {});
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    try {
      const victimToken = await gh.sign(githubClaims({ environment: 'victim' }));
      await assert.rejects(
        exchangeToken(victimToken, {
          address: `127.0.0.1:${(impostor.address() as AddressInfo).port}`,
          caPem: t.ca.pem,
          serverId: `spiffe://${TD}`,
          timeoutMs: 5000,
        }),
      );
      assert.deepEqual(seen, [], 'the victim never sent its token to the impostor');
      // The victim's token is still theirs.
      assert.equal((await exchange(victimToken)).spiffeId, `spiffe://${TD}/github/my-org_2Fapp/victim`);
    } finally {
      await new Promise<void>((resolve) => impostor.close(() => resolve()));
    }
    assert.deepEqual(
      new X509Certificate(svid.certChainPem).keyUsage,
      ['1.3.6.1.5.5.7.3.2'],
      'extended key usage: clientAuth only',
    );
  });

  // Finding 4. A broad template (a cluster's namespace and service account) can render an ID that
  // the broker trusts for more than being a workload: a person's SVID in the principals file (an
  // approver: whoever can create namespace "human" and service account "alice" would vote as alice)
  // or a proxy in identity.xfcc.proxy_ids (whose forwarded certificates name any caller).
  it('never issues an ID that names a principal (an approver) or a trusted XFCC proxy', async () => {
    for (const [namespace, serviceaccount] of [
      ['human', 'alice'],
      ['mesh', 'ingress'],
    ]) {
      const e = await refusedExchange(
        await cluster.sign({
          aud: 'countersign',
          sub: `system:serviceaccount:${namespace}:${serviceaccount}`,
          namespace,
          serviceaccount,
        }),
      );
      assert.equal(e.code, 'ERR_OIDC_ID_RESERVED', `${namespace}/${serviceaccount}: ${e.code} ${e.message}`);
      assert.match(e.message, new RegExp(`spiffe://${TD}/${namespace}/${serviceaccount}`));
    }
    const pod = await exchange(
      await cluster.sign({
        aud: 'countersign',
        sub: 'system:serviceaccount:payments:deployer',
        namespace: 'payments',
        serviceaccount: 'deployer',
      }),
    );
    assert.equal(pod.spiffeId, `spiffe://${TD}/payments/deployer`);
  });

  // Held: single use lives in Redis, shared by every replica.
  it('refuses a replay on another replica of the same deployment', async () => {
    const configText = await readFile(t.configFile, 'utf8');
    const config = parseConfig(configText, t.configFile);
    // The test owns the connection it hands the broker, so it closes it too.
    const redis = await connectRedis(config.redis.url);
    const other = await startBroker(config, { logger: silentLogger(), redis, auditStdout: null, env: {} });
    try {
      const token = await gh.sign(githubClaims({ environment: 'replicas' }));
      await exchange(token);
      const e = await rejection(
        exchangeToken(token, { address: `127.0.0.1:${other.grpcPort}`, caPem: t.ca.pem, serverId: `spiffe://${TD}` }),
      );
      assert.equal((e as unknown as CountersignClientError).code, 'ERR_OIDC_TOKEN_REPLAYED');
    } finally {
      await other.close();
      redis.disconnect();
    }
  });

  // Held: the CSR only proves possession of a key; nothing else in it reaches the SVID.
  it("ignores a CSR's own SANs and CA basic constraints: the SVID is a leaf with the templated URI SAN only", async () => {
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=evil,O=example.org',
      keys: keys as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'],
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(true, 3, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
        new x509.SubjectAlternativeNameExtension([
          { type: 'url', value: `spiffe://${TD}/human/alice` },
          { type: 'dns', value: 'broker.example.org' },
        ]),
      ],
    });
    const svid = await exchange(await gh.sign(githubClaims({ environment: 'csr-ext' })), {
      csrPem: csr.toString('pem'),
      keyPem: '',
    });
    const leaf = new x509.X509Certificate(new X509Certificate(svid.certChainPem).raw);
    assert.equal(leaf.getExtension(x509.BasicConstraintsExtension)?.ca ?? false, false);
    assert.equal(leaf.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
    assert.deepEqual(san?.names.toJSON(), [{ type: 'url', value: `spiffe://${TD}/github/my-org_2Fapp/csr-ext` }]);
    assert.ok(!leaf.subject.includes('evil'), leaf.subject);
    const lifetime = leaf.notAfter.getTime() - Date.now();
    assert.ok(lifetime <= 10 * 60_000, `lifetime ${lifetime} ms within svid_ttl`);
  });

  // Held: header tricks never bring in a key the issuer did not publish.
  it("refuses tokens whose header points at the attacker's keys (jku, x5u, embedded jwk), marks an unknown crit, or is nested", async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'attacker' };
    const now = Math.floor(Date.now() / 1000);
    const forged = (header: Record<string, unknown>, claims: Record<string, unknown> = {}) =>
      new SignJWT({
        ...githubClaims({ environment: 'hdr' }),
        iss: gh.url,
        iat: now,
        exp: now + 300,
        jti: `j-${Math.random()}`,
        ...claims,
      })
        .setProtectedHeader({ alg: 'ES256', ...header })
        .sign(privateKey);
    const cases: [string, string, string[]][] = [
      ['jku', await forged({ kid: 'attacker', jku: `${gh.url}/jwks` }), ['ERR_OIDC_KEY_UNKNOWN']],
      ['x5u', await forged({ kid: gh.signing.kid, x5u: 'http://127.0.0.1:1/cert.pem' }), ['ERR_OIDC_SIGNATURE']],
      ['embedded jwk', await forged({ jwk })], // no kid: no published key matches
      ['kid of the issuer, key of the attacker', await forged({ kid: gh.signing.kid })],
    ].map(([what, token, codes]) => [
      what as string,
      token as string,
      (codes as string[] | undefined) ?? ['ERR_OIDC_KEY_UNKNOWN', 'ERR_OIDC_SIGNATURE'],
    ]);
    const realCrit = signRaw(
      { alg: 'ES256', kid: gh.signing.kid, crit: ['x-countersign'], 'x-countersign': true },
      { ...githubClaims({ environment: 'crit' }), iss: gh.url, iat: now, exp: now + 300 },
      gh.signing.privateKey,
    );
    cases.push(['an unknown crit extension', realCrit, ['ERR_OIDC_TOKEN_MALFORMED']]);
    const inner = await gh.sign(githubClaims({ environment: 'nested-inner' }));
    const nested = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: gh.signing.kid, cty: 'JWT' })
      .sign(gh.signing.privateKey);
    cases.push([
      'a nested JWT with no claims of its own',
      `${nested.split('.')[0]}.${Buffer.from(inner).toString('base64url')}.${nested.split('.')[2]}`,
      ['ERR_OIDC_TOKEN_MALFORMED', 'ERR_OIDC_SIGNATURE', 'ERR_OIDC_ISSUER_UNKNOWN'],
    ]);
    cases.push([
      'iss with a trailing slash',
      await gh.sign(githubClaims({ environment: 'slash', iss: `${gh.url}/` })),
      ['ERR_OIDC_ISSUER_UNKNOWN'],
    ]);
    for (const [what, token, codes] of cases) {
      const e = await refusedExchange(token);
      assert.ok(codes.includes(e.code), `${what}: ${e.code} ${e.message}`);
      assert.equal(e.grpcStatus, status.UNAUTHENTICATED, what);
    }
  });

  // Held: no template claim value changes the SVID's shape.
  it('refuses template claims that are objects, lists, booleans, percent-encoded dots or backslashes; escapes unicode and dots into one segment', async () => {
    for (const environment of [{ a: 'b' }, ['prod'], true, '%2e%2e', '..\\..', 'a/./b', 'prod\u0000', '']) {
      const e = await refusedExchange(await gh.sign(githubClaims({ environment })));
      assert.equal(e.code, 'ERR_OIDC_CLAIM_UNSAFE', `${JSON.stringify(environment)}: ${e.code} ${e.message}`);
    }
    const unicode = await exchange(await gh.sign(githubClaims({ environment: 'prød.v1_x' })));
    assert.equal(unicode.spiffeId, `spiffe://${TD}/github/my-org_2Fapp/pr_C3_B8d.v1_5Fx`);
  });

  // Held: with the certificate now optional at the TLS layer, nothing else answers a caller without one.
  it('still refuses every other call from a connection without a certificate', async () => {
    const e = await rejection(
      rawCall(t.address, t.ca.pem, undefined, { operation: 'deploy', resource: 'staging/web' }),
    );
    assert.equal(e.code, status.UNAUTHENTICATED);
    // A certificate that is no SVID (no SPIFFE ID) is refused too, even though the TLS layer let it in.
    const notSvid = CertificateAuthority.createRoot(TD).issueSvid(`spiffe://${TD}/github/x/y`, { uris: [] });
    const e2 = await rejection(
      rawCall(
        t.address,
        t.ca.pem,
        { chainPem: notSvid.chainPem, keyPem: notSvid.keyPem },
        { operation: 'deploy', resource: 'staging/web' },
      ),
    );
    assert.equal(e2.code, status.UNAUTHENTICATED);
  });
});
