// Issue 18: a workload without SPIRE trades its platform's OIDC token for a
// short-lived SVID (Identity.ExchangeToken) and then talks mTLS as any other.
// Real parts: a local OIDC issuer over HTTP (discovery + JWKS), the broker over
// TLS (server authentication only for the exchange, mTLS afterwards), Redis.
import assert from 'node:assert/strict';
import { webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { after, before, describe, it } from 'node:test';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { generateKeyPair, SignJWT } from 'jose';
import { IdentityClient, RequestState, type ExchangeTokenResponse } from '@countersign/proto';
import {
  ApprovalsClient,
  CountersignClient,
  CountersignClientError,
  exchangeToken,
  githubToken,
  newKeyAndCsr,
  oidc,
  type ExchangedSvid,
} from '@countersign/agent';
import { CertificateAuthority, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { buildRequestCard } from '@countersign/approvers/slack';
import { printPendingList, printRequest } from '../../agents/src/cli/approvals-output.js';
import { requestPage } from '../../broker/src/console/pages.js';
import { auditEvents, errorCode, metricValue, rawCall, rejection, until } from './support/identity.js';
import { githubClaims, gitlabClaims, k8sClaims, LocalIssuer, newIssuerKey } from './support/oidc-issuer.js';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: github-staging
    match: { workload: "spiffe://${TD}/github/**", operation: deploy, resource: "staging/*" }
    decision: allow
  - name: github-prod
    description: prod deploys only from main, never from a pull request, with one approval
    match: { workload: "spiffe://${TD}/github/**", operation: deploy, resource: "prod/*" }
    when: workload.issuer == "github" && workload.claims.ref == "refs/heads/main" && workload.claims.event_name != "pull_request"
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
  - name: gitlab-prod
    match: { workload: "spiffe://${TD}/gitlab/**", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
  - name: k8s-reads
    match: { workload: "spiffe://${TD}/k8s/**", operation: read, resource: "*" }
    decision: allow
  - name: rotating
    match: { workload: "spiffe://${TD}/rot/**", operation: read, resource: "*" }
    decision: allow
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, email: alice@${TD}, github_login: Alice, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, email: bob@${TD}, gitlab_login: bob, spiffe_ids: [spiffe://${TD}/human/bob] }
`;

describe('exchanging an OIDC token for an SVID', () => {
  let github: LocalIssuer;
  let gitlab: LocalIssuer;
  let rotating: LocalIssuer;
  let k8sKey: Awaited<ReturnType<typeof newIssuerKey>>;
  const k8sIssuer = 'https://kubernetes.default.svc';
  let t: TestBroker;
  const closers: { close(): void }[] = [];

  before(async () => {
    [github, gitlab, rotating] = await Promise.all([LocalIssuer.start(), LocalIssuer.start(), LocalIssuer.start()]);
    k8sKey = await newIssuerKey('ES256');
    const ca = CertificateAuthority.createRoot(TD);
    const oidcCa = ca.createIntermediate({ commonName: 'Countersign OIDC CA' });
    t = await startTestBroker({
      ca,
      policy: POLICY,
      principals: PRINCIPALS,
      files: {
        'oidc-ca.pem': oidcCa.pem,
        'oidc-ca-key.pem': oidcCa.certificate.keyPem,
        'k8s-jwks.json': JSON.stringify({ keys: [k8sKey.publicJwk] }),
      },
      identity: `identity:
  svid: { cert_file: broker.pem, key_file: broker-key.pem }
  bundles: [{ trust_domain: ${TD}, file: ca.pem }]
  oidc_ca: { cert_file: oidc-ca.pem, key_file: oidc-ca-key.pem }
  oidc:
    - name: github
      issuer: ${github.url}
      audience: countersign
      spiffe_id: "spiffe://{trust_domain}/github/{repository}/{environment}"
      require: { repository_owner: my-org }
      svid_ttl: 10m
      actor: { claim: actor, principal_field: github_login }
    - name: gitlab
      issuer: ${gitlab.url}
      audience: countersign
      spiffe_id: "spiffe://{trust_domain}/gitlab/{project_path}"
      require: { namespace_path: my-group, ref_protected: "true" }
      actor: { claim: user_login, principal_field: gitlab_login }
    - name: prod-cluster
      issuer: ${k8sIssuer}
      audience: countersign
      jwks_file: k8s-jwks.json
      algorithms: [ES256]
      spiffe_id: "spiffe://{trust_domain}/k8s/{kubernetes.io.namespace}/{kubernetes.io.serviceaccount.name}"
      svid_ttl: 2m
    - name: rotating
      issuer: ${rotating.url}
      audience: countersign
      spiffe_id: "spiffe://{trust_domain}/rot/{sub}"
      algorithms: [RS256, ES256]
      jwks_cache: 5s
`,
    });
  });
  after(async () => {
    for (const c of closers) c.close();
    await t?.close();
    await Promise.all([github?.close(), gitlab?.close(), rotating?.close()]);
  });

  const serverId = `spiffe://${TD}`;
  const exchange = (token: string, issuer?: string): Promise<ExchangedSvid> =>
    exchangeToken(token, { address: t.address, caPem: t.ca.pem, serverId, issuer });
  const refusedExchange = async (token: string): Promise<CountersignClientError> => {
    try {
      await exchange(token);
    } catch (e) {
      assert.ok(e instanceof CountersignClientError, String(e));
      return e;
    }
    assert.fail('expected the exchange to be refused');
  };
  const clientWith = (svid: ExchangedSvid) => {
    const c = new CountersignClient({
      address: t.address,
      certChainPem: svid.certChainPem,
      keyPem: svid.keyPem,
      caPem: svid.caPem,
    });
    closers.push(c);
    return c;
  };
  const approver = (name: string) => {
    const svid = t.svid(`human/${name}`);
    const c = new ApprovalsClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
    closers.push(c);
    return c;
  };

  it('gives a GitHub job an SVID that policy, approvers and the audit trail know by its claims', async () => {
    const token = await github.sign(githubClaims({ workflow: 'Deploy <https://evil.example|click here> *now*' }));
    const svid = await exchange(token);
    assert.equal(svid.spiffeId, `spiffe://${TD}/github/my-org_2Fapp/prod`);
    assert.equal(svid.issuer, 'github');
    const leaf = new X509Certificate(svid.certChainPem);
    assert.ok(leaf.subject.includes('oidc:github'), leaf.subject);
    assert.equal(leaf.subjectAltName, `URI:${svid.spiffeId}`);
    assert.ok(
      leaf.verify(
        new X509Certificate(svid.certChainPem.slice(svid.certChainPem.indexOf('-----END CERTIFICATE-----') + 26))
          .publicKey,
      ),
      'signed by the OIDC intermediate',
    );
    assert.equal(svid.caPem.trim(), t.ca.pem.trim(), 'the trust bundle comes back');

    const client = clientWith(svid);
    const staging = await client.requestOperation({
      operation: 'deploy',
      resource: 'staging/web',
      parameters: { version: '1.0.0' },
    });
    assert.equal(staging.state, 'APPROVED', staging.message);

    const pending = await client.requestOperation({
      operation: 'deploy',
      resource: 'prod/web',
      parameters: { version: '1.0.0' },
      reason: 'release',
    });
    assert.equal(pending.state, 'PENDING_APPROVAL', pending.message);
    assert.equal(pending.rule, 'github-prod');
    assert.equal(pending.request?.onBehalfOf, 'alice', 'the actor is who the request is for');

    // Approvers see where the job comes from, inert: a claim cannot become a link or markup on the card.
    const view = await t.broker.approvals.workflow.get(pending.requestId);
    assert.equal(view?.workload?.issuer, 'github');
    assert.deepEqual(
      {
        repository: view?.workload?.claims.repository,
        ref: view?.workload?.claims.ref,
        run_id: view?.workload?.claims.run_id,
        actor: view?.workload?.claims.actor,
      },
      { repository: 'my-org/app', ref: 'refs/heads/main', run_id: '5912345678', actor: 'alice' },
    );
    const card = JSON.stringify(buildRequestCard(view).blocks);
    assert.match(card, /Identity from an OIDC token/);
    assert.match(card, /repository: `my-org\/app`/);
    assert.ok(!card.includes('<https://evil.example'), 'the workflow claim is escaped, not a link');
    assert.match(card, /workflow: `Deploy &lt;https:\/\/evil.example\|click here&gt; \*now\*`/);

    const stored = await t.broker.approvals.store.get(pending.requestId);
    assert.ok(stored);
    const page = requestPage({
      viewer: { principal: 'bob', displayName: 'Bob', csrf: 'x' },
      request: stored,
      votes: [],
      now: Date.now(),
      whyNoVote: undefined,
      lastApproved: undefined,
      rule: undefined,
      passkeys: 0,
      recentPasskey: false,
    }).toString();
    assert.match(page, /Identity from an OIDC token/);
    assert.match(page, /actor: <code>alice<\/code>/);
    assert.ok(!page.includes('<https://evil'), 'escaped in the console too');

    // And in the CLI (countersign approvals list|show): the claims come over the Approvals API, shown as text.
    const listed = (await approver('bob').listPending()).find((r) => r.id === pending.requestId);
    assert.ok(listed, 'bob may decide it');
    assert.equal(listed?.workload?.issuer, 'github');
    assert.equal(listed?.workload?.claims.repository, 'my-org/app');
    assert.equal(listed?.workload?.claims.workflow, 'Deploy <https://evil.example|click here> *now*');
    const table: string[] = [];
    printPendingList([listed], 'table', (l) => table.push(l));
    assert.match(table[0] as string, /OIDC CLAIMS/);
    assert.match(table[1] as string, /github: .*repository="my-org\/app"/);
    const json: string[] = [];
    printPendingList([listed], 'json', (l) => json.push(l));
    assert.deepEqual((JSON.parse(json.join('\n')) as { workload: unknown }[])[0]?.workload, {
      issuer: 'github',
      claims: listed.workload?.claims,
    });
    const shown: string[] = [];
    printRequest(
      { ...listed, workload: { issuer: 'github', claims: { ...listed.workload?.claims, note: 'a\u202Eb\u001B[31m' } } },
      (l) => shown.push(l),
    );
    assert.ok(shown.includes('identity from an OIDC token (issuer github):'), shown.join('\n'));
    assert.ok(shown.includes('  actor: "alice"'), shown.join('\n'));
    assert.ok(shown.includes('  workflow: "Deploy <https://evil.example|click here> *now*"'), shown.join('\n'));
    assert.ok(shown.includes('  note: "a\\u202eb\\u001b[31m"'), `control characters escaped: ${shown.join('\n')}`);
    // A request made with a plain SVID has no claims, and the table no column for them.
    const plain: string[] = [];
    printPendingList([{ ...listed, workload: undefined }], 'table', (l) => plain.push(l));
    assert.doesNotMatch(plain[0] as string, /OIDC CLAIMS/);

    // Alice pushed the commit: she cannot approve its prod deploy.
    const selfVote = await rejection(
      approver('alice').decide({ requestId: pending.requestId, decision: 'approve', reason: 'mine' }),
    );
    assert.equal((selfVote as unknown as CountersignClientError).code, 'ERR_SELF_APPROVAL');
    const decided = await approver('bob').decide({ requestId: pending.requestId, decision: 'approve', reason: 'ok' });
    assert.equal(decided.state, RequestState.REQUEST_STATE_APPROVED);
    const collected = await client.waitForApproval(pending.requestId);
    assert.ok(collected.token, 'the credential reaches the job');

    const events = await auditEvents(t);
    const exchanged = events.find((e) => e.type === 'svid_exchanged' && e.spiffe_id === svid.spiffeId);
    assert.ok(exchanged, 'the exchange is audited');
    assert.equal(exchanged.issuer, 'github');
    assert.equal(exchanged.subject, 'repo:my-org/app:environment:prod');
    assert.equal(exchanged.actor, 'alice');
    assert.match(String(exchanged.jti_hash), /^[A-Za-z0-9_-]{43}$/);
  });

  it('keeps prod deploys to main: a token for another ref or a pull request matches no rule (CEL on workload.claims)', async () => {
    for (const claims of [
      githubClaims({ ref: 'refs/heads/feature', environment: 'prod-feature' }),
      githubClaims({ event_name: 'pull_request', environment: 'prod-pr' }),
    ]) {
      const client = clientWith(await exchange(await github.sign(claims)));
      const result = await client.requestOperation({ operation: 'deploy', resource: 'prod/web', parameters: {} });
      assert.equal(result.state, 'DENIED', `${String(claims.ref)} ${String(claims.event_name)}`);
    }
  });

  it("refuses a request on behalf of someone else than the run's actor", async () => {
    const client = clientWith(await exchange(await github.sign(githubClaims({ environment: 'obo' }))));
    await assert.rejects(
      client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: {}, onBehalfOf: 'bob' }),
      (e: CountersignClientError) => e.code === 'ERR_ON_BEHALF_OF_CONFLICT',
    );
  });

  it('maps a GitLab user_login to its principal, and Kubernetes namespace and service account into the SPIFFE ID (JWKS from a file)', async () => {
    const gl = await exchange(await gitlab.sign(gitlabClaims()));
    assert.equal(gl.spiffeId, `spiffe://${TD}/gitlab/my-group_2Fapp`);
    const pending = await clientWith(gl).requestOperation({
      operation: 'deploy',
      resource: 'prod/api',
      parameters: {},
    });
    assert.equal(pending.request?.onBehalfOf, 'bob');
    const glView = await t.broker.approvals.workflow.get(pending.requestId);
    assert.equal(
      glView?.workload?.claims.run,
      `${gitlab.url}/my-group/app/-/pipelines/574`,
      'approvers see the pipeline',
    );
    assert.equal(glView?.workload?.claims.user_login, 'bob');
    const bobVote = await rejection(approver('bob').decide({ requestId: pending.requestId, decision: 'approve' }));
    assert.equal((bobVote as unknown as CountersignClientError).code, 'ERR_SELF_APPROVAL');

    const now = Math.floor(Date.now() / 1000);
    const k8sToken = await new SignJWT({ ...k8sClaims(), iss: k8sIssuer, iat: now, nbf: now, exp: now + 3600 })
      .setProtectedHeader({ alg: 'ES256', kid: k8sKey.kid })
      .sign(k8sKey.privateKey);
    const pod = await exchange(k8sToken);
    assert.equal(pod.spiffeId, `spiffe://${TD}/k8s/payments/deployer`);
    // svid_ttl 2m caps the SVID although the token lives an hour.
    const lifetime = pod.expiresAt.getTime() - Date.now();
    assert.ok(lifetime <= 2 * 60_000 && lifetime > 60_000, `lifetime ${lifetime} ms`);
    assert.equal(
      new Date(new X509Certificate(pod.certChainPem).validTo).getTime(),
      Math.floor(pod.expiresAt.getTime() / 1000) * 1000,
    );
    const read = await clientWith(pod).requestOperation({ operation: 'read', resource: 'payments', parameters: {} });
    assert.equal(read.state, 'APPROVED');
  });

  it('never lets an SVID outlive its token by more than the margin (svid_ttl 10m, token 1m: exp + 5m)', async () => {
    const token = await github.sign(githubClaims({ environment: 'short' }), { lifetimeSeconds: 60 });
    const exp =
      (JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as { exp: number }).exp * 1000;
    const svid = await exchange(token);
    assert.equal(svid.expiresAt.getTime(), exp + 5 * 60_000);
  });

  const refusals: [string, () => Promise<string>, string][] = [
    [
      'the wrong audience',
      () => github.sign(githubClaims({ aud: 'someone-else', environment: 'aud' })),
      'ERR_OIDC_AUDIENCE_MISMATCH',
    ],
    [
      'several audiences',
      () => github.sign(githubClaims({ aud: ['countersign', 'vault'], environment: 'aud2' })),
      'ERR_OIDC_AUDIENCE_MISMATCH',
    ],
    [
      'an expired token',
      () =>
        github.sign(
          githubClaims({
            environment: 'exp',
            iat: Math.floor(Date.now() / 1000) - 900,
            nbf: Math.floor(Date.now() / 1000) - 900,
            exp: Math.floor(Date.now() / 1000) - 300,
          }),
        ),
      'ERR_OIDC_TOKEN_EXPIRED',
    ],
    [
      'an iat in the future',
      () => github.sign(githubClaims({ environment: 'iat', iat: Math.floor(Date.now() / 1000) + 600, nbf: undefined })),
      'ERR_OIDC_TOKEN_AGE',
    ],
    [
      'a token older than max_token_age',
      () =>
        github.sign(githubClaims({ environment: 'old', iat: Math.floor(Date.now() / 1000) - 7200, nbf: undefined }), {
          lifetimeSeconds: 300,
        }),
      'ERR_OIDC_TOKEN_AGE',
    ],
    [
      'a require mismatch',
      () => github.sign(githubClaims({ repository: 'evil-org/app' })),
      'ERR_OIDC_REQUIRE_MISMATCH',
    ],
    [
      'a claim injecting /../ into the SPIFFE ID',
      () => github.sign(githubClaims({ environment: '../../human/alice' })),
      'ERR_OIDC_CLAIM_UNSAFE',
    ],
    [
      'a claim injecting another trust domain',
      () => github.sign(githubClaims({ environment: 'x/spiffe://evil.org/y' })),
      'ERR_OIDC_CLAIM_UNSAFE',
    ],
    [
      'a claim missing from the template',
      () => github.sign(githubClaims({ environment: undefined, sub: 'repo:my-org/app:ref:refs/heads/main' })),
      'ERR_OIDC_CLAIM_UNSAFE',
    ],
    [
      'an unknown issuer',
      async () => {
        const stranger = await LocalIssuer.start();
        try {
          return await stranger.sign(githubClaims());
        } finally {
          await stranger.close();
        }
      },
      'ERR_OIDC_ISSUER_UNKNOWN',
    ],
    [
      'a key not in the JWKS',
      async () => github.sign(githubClaims({ environment: 'kid' }), { key: await newIssuerKey() }),
      'ERR_OIDC_KEY_UNKNOWN',
    ],
    [
      'alg none',
      async () => {
        const body = Buffer.from(
          JSON.stringify({
            ...githubClaims(),
            iss: github.url,
            iat: Math.floor(Date.now() / 1000),
            exp: Math.floor(Date.now() / 1000) + 300,
            jti: 'none',
          }),
        ).toString('base64url');
        return `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${body}.`;
      },
      'ERR_OIDC_ALGORITHM',
    ],
    [
      "HS256 keyed with the issuer's public key",
      async () => {
        const secret = new TextEncoder().encode(JSON.stringify(github.signing.publicJwk));
        const now = Math.floor(Date.now() / 1000);
        return new SignJWT({ ...githubClaims(), iss: github.url, iat: now, exp: now + 300 })
          .setProtectedHeader({ alg: 'HS256', kid: github.signing.kid })
          .sign(secret);
      },
      'ERR_OIDC_ALGORITHM',
    ],
    [
      "a token signed by another key under the issuer's kid",
      async () => {
        const { privateKey } = await generateKeyPair('RS256');
        const now = Math.floor(Date.now() / 1000);
        return new SignJWT({ ...githubClaims({ environment: 'forged' }), iss: github.url, iat: now, exp: now + 300 })
          .setProtectedHeader({ alg: 'RS256', kid: github.signing.kid })
          .sign(privateKey);
      },
      'ERR_OIDC_SIGNATURE',
    ],
  ];
  for (const [what, token, code] of refusals) {
    it(`refuses ${what} (${code}) and audits it with the other refused identities`, async () => {
      const before = await metricValue(t, 'countersign_identity_refusals_total', { code });
      const e = await refusedExchange(await token());
      assert.equal(e.code, code, e.message);
      assert.equal(e.grpcStatus, status.UNAUTHENTICATED);
      assert.equal(await metricValue(t, 'countersign_identity_refusals_total', { code }), before + 1);
      await t.broker.flushRefusals();
      const audited = (await auditEvents(t)).filter((ev) => ev.type === 'identity_refused' && ev.code === code);
      assert.ok(audited.length > 0, 'audited');
      assert.match(String(audited.at(-1)?.message), /^oidc: /);
    });
  }

  it('refuses a token whose iss is not the issuer it is presented to (ERR_OIDC_ISSUER_MISMATCH), and an unknown issuer name', async () => {
    // Signed with GitHub's key, but claiming to come from GitLab's issuer.
    const token = await github.sign(githubClaims({ iss: gitlab.url, environment: 'iss' }));
    await assert.rejects(
      exchange(token, 'github'),
      (e: CountersignClientError) => e.code === 'ERR_OIDC_ISSUER_MISMATCH' && e.grpcStatus === status.UNAUTHENTICATED,
    );
    await assert.rejects(
      exchange(token, 'nope'),
      (e: CountersignClientError) =>
        e.code === 'ERR_INVALID_FIELD' && /issuer: no configured issuer is named "nope"/.test(e.message),
    );
  });

  it('exchanges each token once: a replay is refused', async () => {
    const token = await github.sign(githubClaims({ environment: 'replay' }));
    await exchange(token);
    const e = await refusedExchange(token);
    assert.equal(e.code, 'ERR_OIDC_TOKEN_REPLAYED');
  });

  it('needs no client certificate for ExchangeToken, and still requires an SVID for everything else', async () => {
    const e = await rejection(
      rawCall(t.address, t.ca.pem, undefined, { operation: 'deploy', resource: 'staging/web' }),
    );
    assert.equal(e.code, status.UNAUTHENTICATED);
    // A certificate-less connection that only exchanges is not a refused identity.
    const before = await metricValue(t, 'countersign_identity_refusals_total');
    await exchange(await github.sign(githubClaims({ environment: 'plain-tls' })));
    assert.equal(await metricValue(t, 'countersign_identity_refusals_total'), before);
  });

  it("refuses a malformed CSR, or one whose signature is not its key's, without using the token", async () => {
    const token = await github.sign(githubClaims({ environment: 'csr' }));
    const call = (csr: string) => {
      const client = new IdentityClient(
        t.address,
        credentials.createSsl(Buffer.from(t.ca.pem), null, null, { checkServerIdentity: () => undefined }),
        { 'grpc.ssl_target_name_override': TD },
      );
      return new Promise<ExchangeTokenResponse>((resolve, reject) =>
        client.exchangeToken({ token, csr, issuer: '' }, new Metadata(), (err: ServiceError | null, r) => {
          client.close();
          if (err) reject(err);
          else resolve(r);
        }),
      );
    };
    const garbage = await rejection(
      call('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'),
    );
    assert.equal(garbage.code, status.INVALID_ARGUMENT);
    assert.equal(errorCode(garbage), 'ERR_INVALID_FIELD');
    assert.match(garbage.details, /^csr: /);
    const { csrPem } = await newKeyAndCsr();
    const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    der[der.length - 5] = (der[der.length - 5] as number) ^ 1; // inside the signature
    const tampered = await rejection(
      call(`-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`),
    );
    assert.equal(errorCode(tampered), 'ERR_INVALID_FIELD');
    const weakAlg = {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 1024,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    };
    const weakKeys = await webcrypto.subtle.generateKey(weakAlg, false, ['sign', 'verify']);
    const weak = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=weak',
      keys: weakKeys as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'],
      signingAlgorithm: weakAlg,
    });
    const weakRefusal = await rejection(call(weak.toString('pem')));
    assert.match(
      weakRefusal.details,
      /^csr: key rsa 1024 bits is not accepted; use EC P-256 or P-384, or RSA 2048-4096/,
    );
    // The token was not spent on the refusals.
    assert.match((await exchange(token)).spiffeId, /\/csr$/);
  });

  it('follows a JWKS rotation, and keeps using cached keys while the issuer is unreachable until they expire', async () => {
    const first = await exchange(await rotating.sign({ aud: 'countersign', sub: 'one' }));
    assert.equal(first.spiffeId, `spiffe://${TD}/rot/one`);
    const next = await rotating.rotate('ES256');
    // A token with the new kid makes the broker fetch the JWKS again (after jose's 1 s cooldown at most).
    await until('the rotated key is accepted', async () => {
      try {
        await exchange(await rotating.sign({ aud: 'countersign', sub: 'two' }, { key: next }));
        return true;
      } catch (e) {
        assert.equal((e as CountersignClientError).code, 'ERR_OIDC_KEY_UNKNOWN');
        return false;
      }
    });
    rotating.setDown(true);
    const fetches = rotating.jwksFetches;
    // Keys fetched less than jwks_cache (5 s) ago are still used...
    const cached = await exchange(await rotating.sign({ aud: 'countersign', sub: 'three' }, { key: next }));
    assert.equal(cached.spiffeId, `spiffe://${TD}/rot/three`);
    // ...and once they expire, tokens are refused (UNAVAILABLE: the issuer is down, not the token bad).
    await until('the cached keys expire', async () => {
      try {
        await exchange(await rotating.sign({ aud: 'countersign', sub: 'four' }, { key: next }));
        return false;
      } catch (e) {
        assert.equal((e as CountersignClientError).code, 'ERR_OIDC_ISSUER_UNREACHABLE');
        return true;
      }
    });
    assert.equal(rotating.jwksFetches, fetches, 'the issuer answered nothing while down');
    rotating.setDown(false);
    await until('the issuer is back', async () => {
      try {
        return (
          await exchange(await rotating.sign({ aud: 'countersign', sub: 'five' }, { key: next }))
        ).spiffeId.endsWith('/five');
      } catch {
        return false;
      }
    });
  });

  it('SDK: oidc() is an identity source that exchanges a fresh token to renew, and clients use the new SVID', async () => {
    let n = 0;
    const source = await oidc({
      address: t.address,
      caPem: t.ca.pem,
      serverId,
      token: async () => github.sign(githubClaims({ environment: `sdk-${++n}` })),
    });
    closers.push(source);
    const client = new CountersignClient({ address: t.address, identitySource: source });
    closers.push(client);
    assert.equal(source.spiffeId, `spiffe://${TD}/github/my-org_2Fapp/sdk-1`);
    assert.equal(
      (await client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: {} })).state,
      'APPROVED',
    );
    const first = source.expiresAt.getTime();
    await source.renew();
    assert.equal(source.generation, 1);
    assert.equal(source.spiffeId, `spiffe://${TD}/github/my-org_2Fapp/sdk-2`);
    assert.ok(source.expiresAt.getTime() >= first);
    const after = await client.requestOperation({ operation: 'deploy', resource: 'staging/web', parameters: {} });
    assert.equal(after.state, 'APPROVED');
    const events = await auditEvents(t);
    const received = events.filter((e) => e.type === 'request_received' && e.request_id === after.requestId);
    assert.equal(received[0]?.requester, `spiffe://${TD}/github/my-org_2Fapp/sdk-2`, 'the renewed SVID made the call');
  });

  it('renews with the same token only for the key it was first exchanged for (a GitLab job, a pod: one token for the whole run)', async () => {
    const token = await gitlab.sign(gitlabClaims({ project_path: 'my-group/long-wait' }));
    const source = await oidc({ address: t.address, caPem: t.ca.pem, serverId, token: async () => token });
    closers.push(source);
    const firstSvid = source.identityFor().certChainPem;
    await source.renew();
    assert.equal(source.generation, 1, 'renewed with the same token');
    assert.notEqual(source.identityFor().certChainPem, firstSvid, 'a new SVID');
    const renewed = (await auditEvents(t)).filter(
      (e) => e.type === 'svid_exchanged' && e.spiffe_id === `spiffe://${TD}/gitlab/my-group_2Flong-wait`,
    );
    assert.deepEqual(
      renewed.map((e) => e.renewal ?? false),
      [false, true],
    );
    // Someone else holding the token, with their own key, is still a replay.
    const e = await refusedExchange(token);
    assert.equal(e.code, 'ERR_OIDC_TOKEN_REPLAYED');
  });

  it('gets the GitHub token the way a runner does (ACTIONS_ID_TOKEN_REQUEST_URL + bearer + audience)', async () => {
    github.githubClaims = githubClaims({ environment: 'runner' });
    const env = {
      ACTIONS_ID_TOKEN_REQUEST_URL: `${github.url}/github-token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: github.githubRequestToken,
    };
    const token = await githubToken({ env })();
    const asked = github.githubRequests.at(-1);
    assert.equal(asked?.searchParams.get('audience'), 'countersign');
    assert.equal(asked?.searchParams.get('api-version'), '2.0');
    assert.equal((await exchange(token)).spiffeId, `spiffe://${TD}/github/my-org_2Fapp/runner`);
    await assert.rejects(
      githubToken({ env: {} })(),
      (e: CountersignClientError) => e.code === 'ERR_OIDC_TOKEN_UNAVAILABLE' && /id-token: write/.test(e.message),
    );
  });
});

// ExchangeToken answers callers without any identity: its only key for fairness is the source
// address, under the same limit as requests (requests.limits).
describe('exchanging tokens: the rate limit per source address', () => {
  let issuer: LocalIssuer;
  let t: TestBroker;
  before(async () => {
    issuer = await LocalIssuer.start();
    const ca = CertificateAuthority.createRoot(TD);
    const oidcCa = ca.createIntermediate();
    t = await startTestBroker({
      ca,
      files: { 'oidc-ca.pem': oidcCa.pem, 'oidc-ca-key.pem': oidcCa.certificate.keyPem },
      identity: `identity:
  svid: { cert_file: broker.pem, key_file: broker-key.pem }
  bundles: [{ trust_domain: ${TD}, file: ca.pem }]
  oidc_ca: { cert_file: oidc-ca.pem, key_file: oidc-ca-key.pem }
  oidc:
    - { name: ci, issuer: "${issuer.url}", audience: countersign, spiffe_id: "spiffe://{trust_domain}/ci/{sub}" }
`,
      extraConfig: 'requests:\n  limits: { requests_per_second: 0.01, burst: 3 }\n',
    });
  });
  after(async () => {
    await t?.close();
    await issuer?.close();
  });

  it('answers RESOURCE_EXHAUSTED past the burst, before looking at the token', async () => {
    const exchange = async (sub: string) =>
      exchangeToken(await issuer.sign({ aud: 'countersign', sub }), {
        address: t.address,
        caPem: t.ca.pem,
        serverId: `spiffe://${TD}`,
      });
    for (const sub of ['a', 'b', 'c']) assert.equal((await exchange(sub)).spiffeId, `spiffe://${TD}/ci/${sub}`);
    await assert.rejects(
      exchange('d'),
      (e: CountersignClientError) =>
        e.code === 'ERR_RATE_LIMITED' &&
        e.grpcStatus === status.RESOURCE_EXHAUSTED &&
        /token exchanges from 127\.0\.0\.1/.test(e.message),
    );
  });
});
