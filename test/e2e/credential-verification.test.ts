// What a resource server gets from @countersign/agent/verify: credentials minted
// by the broker's own minter are accepted only for exactly what they authorize,
// and the gRPC interceptor and HTTP middleware enforce the same over real mTLS.
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { request as httpsRequest, createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Client, credentials, Metadata, Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import { SignJWT, UnsecuredJWT, type JSONWebKeySet } from 'jose';
import { certificateThumbprint, parametersDigest, type JsonObject } from '@countersign/proto';
import {
  countersignHttp,
  countersignInterceptor,
  credentialOf,
  credentialOfRequest,
  RemoteJwks,
  verifyCredential,
  type VerifyOptions,
} from '@countersign/agent/verify';
import { CertificateAuthority, type IssuedSvid } from '@countersign/broker/testing';
import { ManualClock } from '../../broker/src/clock.js';
import { generateSigningKeyPem, Keyring, parseSigningKey, type SigningKey } from '../../broker/src/credentials/keys.js';
import { CredentialMinter } from '../../broker/src/credentials/mint.js';

const AUD = 'https://deploy.example.org';
const ISS = 'spiffe://example.org/countersign/broker';

describe('credential verification', () => {
  let ca: CertificateAuthority;
  let deployer: IssuedSvid;
  let other: IssuedSvid;
  let server: IssuedSvid;
  let key: SigningKey;
  let jwks: JSONWebKeySet;
  let minter: CredentialMinter;
  const clock = new ManualClock(Date.now());

  const mint = (
    over: Partial<{ operation: string; resource: string; parameters: JsonObject; audience: string }> = {},
  ) =>
    minter.mint({
      subject: deployer.spiffeId,
      certificateThumbprint: certificateThumbprint(deployer.der),
      svidNotAfter: clock.now() + 3_600_000,
      operation: over.operation ?? 'deploy',
      resource: over.resource ?? 'prod/web',
      parametersDigest: parametersDigest(over.parameters ?? { version: '1.4.2' }),
      audience: over.audience ?? AUD,
      ttlCaps: [300_000],
    });

  before(async () => {
    ca = CertificateAuthority.createRoot('example.org');
    deployer = ca.issueSvid('spiffe://example.org/ci/deployer');
    other = ca.issueSvid('spiffe://example.org/ci/other');
    server = ca.issueSvid('spiffe://example.org/svc/deploy-api', { dns: ['localhost'] });
    key = await parseSigningKey(generateSigningKeyPem(), 'k1');
    const keyring = new Keyring([key], { maxTtlMs: 3_600_000 });
    jwks = keyring.jwks(clock.now());
    minter = new CredentialMinter(keyring, { issuer: ISS, maxTtlMs: 3_600_000, clock });
  });

  describe('verifyCredential refuses', () => {
    const expectation = (): VerifyOptions => ({
      jwks,
      audience: AUD,
      issuer: ISS,
      operation: 'deploy',
      resource: 'prod/web',
      parameters: { version: '1.4.2' },
      clientCertificate: deployer.pem,
    });

    it('accepts the exact operation, resource, parameters and certificate', async () => {
      const { token, jti } = await mint();
      const v = await verifyCredential(token, expectation());
      assert.equal(v.claims.jti, jti);
      assert.equal(v.kid, key.kid);
      // DER from a TLS socket works as well as PEM.
      await verifyCredential(token, { ...expectation(), clientCertificate: deployer.der });
    });

    const refusals: [string, () => Promise<unknown>, string][] = [
      [
        'another audience',
        async () =>
          verifyCredential((await mint()).token, { ...expectation(), audience: 'https://billing.example.org' }),
        'ERR_CREDENTIAL_AUDIENCE',
      ],
      [
        'another operation',
        async () => verifyCredential((await mint()).token, { ...expectation(), operation: 'rollback' }),
        'ERR_CREDENTIAL_OPERATION_MISMATCH',
      ],
      [
        'another resource',
        async () => verifyCredential((await mint()).token, { ...expectation(), resource: 'prod/db' }),
        'ERR_CREDENTIAL_RESOURCE_MISMATCH',
      ],
      [
        'other parameters',
        async () => verifyCredential((await mint()).token, { ...expectation(), parameters: { version: '1.4.3' } }),
        'ERR_CREDENTIAL_PARAMETERS_MISMATCH',
      ],
      [
        'another certificate',
        async () => verifyCredential((await mint()).token, { ...expectation(), clientCertificate: other.pem }),
        'ERR_CREDENTIAL_CERTIFICATE_MISMATCH',
      ],
      [
        'an expired credential',
        async () =>
          verifyCredential((await mint()).token, {
            ...expectation(),
            currentDate: new Date(clock.now() + 300_000 + 31_000),
          }),
        'ERR_CREDENTIAL_EXPIRED',
      ],
      [
        'an expired credential even when asked for a huge clock tolerance (capped at 300 s)',
        async () =>
          verifyCredential((await mint()).token, {
            ...expectation(),
            clockToleranceSeconds: 3600,
            currentDate: new Date(clock.now() + 300_000 + 301_000),
          }),
        'ERR_CREDENTIAL_EXPIRED',
      ],
      [
        'one signed by an unknown key',
        async () => {
          const rogue = await parseSigningKey(generateSigningKeyPem(), 'rogue');
          const token = (
            await new CredentialMinter(new Keyring([rogue], { maxTtlMs: 3_600_000 }), {
              issuer: ISS,
              maxTtlMs: 3_600_000,
              clock,
            }).mint({
              subject: deployer.spiffeId,
              certificateThumbprint: certificateThumbprint(deployer.der),
              svidNotAfter: clock.now() + 3_600_000,
              operation: 'deploy',
              resource: 'prod/web',
              parametersDigest: parametersDigest({ version: '1.4.2' }),
              audience: AUD,
              ttlCaps: [],
            })
          ).token;
          return verifyCredential(token, expectation());
        },
        'ERR_CREDENTIAL_UNKNOWN_KEY',
      ],
      [
        'alg: none',
        async () => {
          const { claims } = await mint();
          const token = new UnsecuredJWT({ ...claims }).encode();
          return verifyCredential(token, expectation());
        },
        'ERR_CREDENTIAL_ALGORITHM',
      ],
      [
        'an HS256 token made with the public key as the secret',
        async () => {
          const { claims } = await mint();
          const secret = new TextEncoder().encode(JSON.stringify(jwks.keys[0]));
          const token = await new SignJWT({ ...claims })
            .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: key.kid })
            .sign(secret);
          return verifyCredential(token, expectation());
        },
        'ERR_CREDENTIAL_ALGORITHM',
      ],
      [
        'a plain JWT (typ not at+jwt)',
        async () => {
          const { claims } = await mint();
          const token = await new SignJWT({ ...claims })
            .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: key.kid })
            .sign(key.privateKey);
          return verifyCredential(token, expectation());
        },
        'ERR_CREDENTIAL_TYPE',
      ],
      [
        'a tampered payload',
        async () => {
          const { token } = await mint();
          const [h, p, s] = token.split('.') as [string, string, string];
          const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
          claims.authorization_details[0].resource = 'prod/db';
          return verifyCredential(`${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`, {
            ...expectation(),
            resource: 'prod/db',
          });
        },
        'ERR_CREDENTIAL_SIGNATURE',
      ],
    ];
    for (const [what, run, code] of refusals) {
      it(what, async () => {
        await assert.rejects(run(), { code });
      });
    }

    it('refuses an algorithm allowlist that would admit anything beyond ES256/EdDSA', async () => {
      const { token } = await mint();
      await assert.rejects(verifyCredential(token, { ...expectation(), algorithms: ['HS256' as 'ES256'] }), TypeError);
    });
  });

  describe('RemoteJwks', () => {
    let http: HttpServer;
    let served: JSONWebKeySet;
    let url: string;
    before(async () => {
      served = jwks;
      http = createHttpServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(served));
      });
      await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/.well-known/jwks.json`;
    });
    after(() => new Promise<void>((resolve) => http.close(() => resolve())));

    it('caches, refetches on an unknown kid (a rotated key), and at most once per cooldown', async () => {
      let now = 0;
      const remote = new RemoteJwks(url, { cooldownMs: 10_000, maxAgeMs: 300_000, now: () => now });
      const { token } = await mint();
      await verifyCredential(token, { jwks: remote, audience: AUD });
      await verifyCredential(token, { jwks: remote, audience: AUD });
      assert.equal(remote.fetches, 1);

      const k2 = await parseSigningKey(generateSigningKeyPem(), 'k2');
      const rotated = new Keyring(
        [
          { key, activateAt: 0 },
          { key: k2, activateAt: 1 },
        ],
        { maxTtlMs: 3_600_000 },
      );
      served = rotated.jwks(clock.now());
      now = 11_000;
      const fresh = await new CredentialMinter(rotated, { issuer: ISS, maxTtlMs: 3_600_000, clock }).mint({
        subject: deployer.spiffeId,
        certificateThumbprint: 'x',
        svidNotAfter: clock.now() + 3_600_000,
        operation: 'deploy',
        resource: 'prod/web',
        parametersDigest: 'd',
        audience: AUD,
        ttlCaps: [],
      });
      await verifyCredential(fresh.token, { jwks: remote, audience: AUD });
      assert.equal(remote.fetches, 2);

      // Forged kids cannot make it hammer the broker.
      const rogue = await parseSigningKey(generateSigningKeyPem(), 'rogue');
      const forged = await new SignJWT({ sub: 'x' })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'nope' })
        .sign(rogue.privateKey);
      for (let i = 0; i < 5; i++)
        await assert.rejects(verifyCredential(forged, { jwks: remote, audience: AUD }), {
          code: 'ERR_CREDENTIAL_UNKNOWN_KEY',
        });
      assert.equal(remote.fetches, 2);
      now = 22_000;
      await assert.rejects(verifyCredential(forged, { jwks: remote, audience: AUD }), {
        code: 'ERR_CREDENTIAL_UNKNOWN_KEY',
      });
      assert.equal(remote.fetches, 3);
    });

    it('says so when the JWKS cannot be fetched', async () => {
      const remote = new RemoteJwks('http://127.0.0.1:1/.well-known/jwks.json', { timeoutMs: 2000 });
      await assert.rejects(verifyCredential((await mint()).token, { jwks: remote, audience: AUD }), {
        code: 'ERR_JWKS_UNAVAILABLE',
      });
    });
  });

  describe('grpc-js server interceptor', () => {
    let grpcServer: Server;
    let address: string;
    const json = {
      serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
      deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
    };
    const method = (path: string) => ({
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: json.serialize,
      requestDeserialize: json.deserialize,
      responseSerialize: json.serialize,
      responseDeserialize: json.deserialize,
    });

    before(async () => {
      grpcServer = new Server({
        interceptors: [
          countersignInterceptor({
            jwks,
            audience: AUD,
            issuer: ISS,
            methods: {
              '/test.Deploys/Deploy': {
                operation: 'deploy',
                resource: (req: { service: string }) => `prod/${req.service}`,
                parameters: (req: { version: string }) => ({ version: req.version }),
              },
            },
          }),
        ],
      });
      grpcServer.addService(
        { deploy: method('/test.Deploys/Deploy'), other: method('/test.Deploys/Other') },
        {
          deploy: (call: { metadata: Metadata; request: unknown }, cb: (e: null, r: unknown) => void) =>
            cb(null, { deployed: true, jti: credentialOf(call.metadata)?.claims.jti }),
          other: (_call: unknown, cb: (e: null, r: unknown) => void) => cb(null, { reached: true }),
        },
      );
      const port = await new Promise<number>((resolve, reject) =>
        grpcServer.bindAsync(
          '127.0.0.1:0',
          ServerCredentials.createSsl(
            Buffer.from(ca.pem),
            [{ private_key: Buffer.from(server.keyPem), cert_chain: Buffer.from(server.chainPem) }],
            true,
          ),
          (e, p) => (e ? reject(e) : resolve(p)),
        ),
      );
      address = `127.0.0.1:${port}`;
    });
    after(() => grpcServer.forceShutdown());

    function call(
      path: string,
      request: unknown,
      token: string | undefined,
      as: IssuedSvid = deployer,
    ): Promise<Record<string, unknown>> {
      const client = new Client(
        address,
        credentials.createSsl(Buffer.from(ca.pem), Buffer.from(as.keyPem), Buffer.from(as.chainPem), {
          checkServerIdentity: () => undefined,
        }),
      );
      const md = new Metadata();
      if (token) md.set('authorization', `Bearer ${token}`);
      return new Promise((resolve, reject) =>
        client.makeUnaryRequest(
          path,
          json.serialize,
          (b: Buffer) => JSON.parse(b.toString()) as Record<string, unknown>,
          request,
          md,
          { deadline: Date.now() + 10_000 },
          (e, r) => {
            client.close();
            if (e) reject(e);
            else resolve(r as Record<string, unknown>);
          },
        ),
      );
    }
    const codeOf = (e: ServiceError) => e.metadata.get('countersign-error-code')[0]?.toString();

    it('lets through exactly the authorized call and hands the handler the credential', async () => {
      const { token, jti } = await mint();
      const res = await call('/test.Deploys/Deploy', { service: 'web', version: '1.4.2' }, token);
      assert.deepEqual(res, { deployed: true, jti });
    });

    it('refuses a missing token, other parameters, another caller certificate and unguarded methods', async () => {
      const { token } = await mint();
      const cases: [() => Promise<unknown>, status, string][] = [
        [
          () => call('/test.Deploys/Deploy', { service: 'web', version: '1.4.2' }, undefined),
          status.UNAUTHENTICATED,
          'ERR_CREDENTIAL_MISSING',
        ],
        [
          () => call('/test.Deploys/Deploy', { service: 'web', version: '9.9.9' }, token),
          status.PERMISSION_DENIED,
          'ERR_CREDENTIAL_PARAMETERS_MISMATCH',
        ],
        [
          () => call('/test.Deploys/Deploy', { service: 'db', version: '1.4.2' }, token),
          status.PERMISSION_DENIED,
          'ERR_CREDENTIAL_RESOURCE_MISMATCH',
        ],
        [
          () => call('/test.Deploys/Deploy', { service: 'web', version: '1.4.2' }, token, other),
          status.PERMISSION_DENIED,
          'ERR_CREDENTIAL_CERTIFICATE_MISMATCH',
        ],
        [
          () => call('/test.Deploys/Deploy', { service: 'web', version: '1.4.2' }, 'not.a.jwt'),
          status.UNAUTHENTICATED,
          'ERR_CREDENTIAL_MALFORMED',
        ],
        [() => call('/test.Deploys/Other', {}, token), status.PERMISSION_DENIED, 'ERR_CREDENTIAL_OPERATION_MISMATCH'],
      ];
      for (const [run, expectedStatus, code] of cases) {
        await assert.rejects(run(), (e: ServiceError) => {
          assert.equal(e.code, expectedStatus, e.details);
          assert.equal(codeOf(e), code);
          return true;
        });
      }
    });
  });

  describe('HTTP middleware', () => {
    let https: ReturnType<typeof createHttpsServer>;
    let port: number;
    before(async () => {
      const guard = countersignHttp({
        jwks,
        audience: AUD,
        describe: (req) => {
          const u = new URL(req.url ?? '/', 'https://x');
          return {
            operation: 'deploy',
            resource: `prod/${u.searchParams.get('service')}`,
            parameters: { version: u.searchParams.get('version') ?? '' },
          };
        },
      });
      https = createHttpsServer(
        { key: server.keyPem, cert: server.chainPem, ca: ca.pem, requestCert: true, rejectUnauthorized: true },
        (req, res) =>
          guard(req, res, () => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ deployed: true, jti: credentialOfRequest(req)?.claims.jti }));
          }),
      );
      await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
      port = (https.address() as AddressInfo).port;
    });
    after(() => new Promise<void>((resolve) => https.close(() => resolve())));

    function get(
      path: string,
      token: string | undefined,
      as: IssuedSvid = deployer,
    ): Promise<{ status: number; body: Record<string, unknown>; wwwAuthenticate?: string }> {
      return new Promise((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port,
            path,
            method: 'GET',
            ca: ca.pem,
            cert: as.chainPem,
            key: as.keyPem,
            checkServerIdentity: () => undefined,
            headers: token ? { authorization: `Bearer ${token}` } : {},
          },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                body: JSON.parse(text) as Record<string, unknown>,
                wwwAuthenticate: res.headers['www-authenticate'],
              }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      });
    }

    it('serves the authorized request and refuses the rest with RFC 6750 statuses', async () => {
      const { token, jti } = await mint();
      assert.deepEqual((await get('/deploy?service=web&version=1.4.2', token)).body, { deployed: true, jti });
      const missing = await get('/deploy?service=web&version=1.4.2', undefined);
      assert.equal(missing.status, 401);
      assert.equal(missing.body.code, 'ERR_CREDENTIAL_MISSING');
      assert.match(missing.wwwAuthenticate ?? '', /error="invalid_token"/);
      const params = await get('/deploy?service=web&version=2.0.0', token);
      assert.equal(params.status, 403);
      assert.equal(params.body.code, 'ERR_CREDENTIAL_PARAMETERS_MISMATCH');
      const cert = await get('/deploy?service=web&version=1.4.2', token, other);
      assert.equal(cert.status, 403);
      assert.equal(cert.body.code, 'ERR_CREDENTIAL_CERTIFICATE_MISMATCH');
    });
  });
});
