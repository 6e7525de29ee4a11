// Identity.ExchangeToken: a workload without an SVID (a hosted CI job, a pod
// outside SPIRE) trades the OIDC token its platform signed for a short-lived
// X.509-SVID in the broker's trust domain (docs/identity.md, "Exchanging an OIDC
// token"). The token is checked with jose (signature against the issuer's JWKS
// from discovery or a file, algorithm allow-list, iss, exact aud, exp/nbf/iat with
// a small skew, a maximum age), then against `require`, then used once (its jti,
// or its hash). The CSR (PKCS#10, @peculiar/x509) proves possession of the key;
// the SVID is signed by the broker's OIDC intermediate CA, which chains to the
// trust domain's bundle, and lives at most svid_ttl and never past the token's
// exp plus a margin. The token's claims are kept in Redis by the SVID's
// thumbprint for as long as it lives, so policy (workload.claims) and approvers
// see them on every request made with it.
import { createHash, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { certificateThumbprint, type JsonObject } from '@countersign/proto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { configPath, TEMPLATE_PLACEHOLDER, type BrokerConfig } from '../config/config.js';
import { CertificateAuthority } from '../identity/ca.js';
import { CountersignError } from '../errors.js';
import type { Redis } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import type { RequestRateLimiter } from '../requests/limits.js';
import { sourceOf } from '../identity/refusal-recorder.js';
import { normalizePrincipalName, PRINCIPAL_NAME_GRAMMAR } from '../policy/principal-name.js';
import type { Principals } from '../policy/principals.js';
import type { BundleStore } from '../identity/bundle-store.js';
import { derToPem, pemToDer } from '../identity/bundle.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import { verifySvid, type SvidIdentity } from '../identity/x509-svid.js';
import type { ErrorCode } from '../errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { claimAt, displayedClaims, runUrl, type ExchangedClaims } from '../identity/workload-claims.js';
import { claimAt, type ExchangedClaims } from '../identity/workload-claims.js';

export type OidcIssuerConfig = BrokerConfig['identity']['oidc'][number];

export interface ExchangeResult {
  spiffeId: string;
  chainPem: string;
  bundlePem: string;
  expiresAt: number;
  issuer: string;
}

export type ExchangeRefusalListener = (error: CountersignError, peer: string) => void;

const MAX_TOKEN_BYTES = 16 * 1024;
const MAX_CSR_BYTES = 16 * 1024;
const MAX_CLAIMS_BYTES = 16 * 1024;
const MAX_SEGMENT_VALUE = 255;

const refuse = (code: ErrorCode, message: string, details: Record<string, unknown> = {}) =>
  new CountersignError('unauthenticated', code, `oidc: ${message}`, details);

/**
 * A claim value made into (part of) one SPIFFE ID path segment, injectively:
 * [A-Za-z0-9.-] stay, every other byte (including "/" and "_") becomes _XX. A
 * value that could still mean something else than one opaque name (empty, "."
 * or "..", a path with "..", a URL, control characters) is refused instead.
 */
export function escapeSegmentValue(claim: string, value: unknown): string {
  if (typeof value === 'number' && Number.isSafeInteger(value)) value = String(value);
  if (typeof value !== 'string') {
    throw refuse(
      'ERR_OIDC_CLAIM_UNSAFE',
      `claim ${claim} is ${value === undefined ? 'missing' : `a ${Array.isArray(value) ? 'list' : typeof value}`}; the spiffe_id template needs a string`,
      { claim },
    );
  }
  const unsafe =
    value === '' ||
    value.length > MAX_SEGMENT_VALUE ||
    /[\x00-\x20\x7f%\\]/.test(value) ||
    value.includes('://') ||
    value.split('/').some((part) => part === '.' || part === '..' || part === '');
  if (unsafe) {
    throw refuse(
      'ERR_OIDC_CLAIM_UNSAFE',
      `claim ${claim} = ${JSON.stringify(value.slice(0, 100))} cannot name a SPIFFE ID path segment (empty, ".", "..", a URL, control characters or too long); the token is refused`,
      {
        claim,
      },
    );
  }
  return Buffer.from(value, 'utf8').reduce((out, byte) => {
    const c = String.fromCharCode(byte);
    return out + (/[A-Za-z0-9.-]/.test(c) ? c : `_${byte.toString(16).toUpperCase().padStart(2, '0')}`);
  }, '');
}

/** The SPIFFE ID a token's claims give under a template; refuses any that would not be one segment per placeholder. */
export function renderSpiffeId(template: string, trustDomain: string, claims: Record<string, unknown>): string {
  const path = template
    .slice('spiffe://{trust_domain}'.length)
    .replace(TEMPLATE_PLACEHOLDER, (_m, name: string) => escapeSegmentValue(name, claimAt(claims, name)));
  const id = `spiffe://${trustDomain}${path}`;
  let parsed;
  try {
    parsed = parseSpiffeId(id);
  } catch (e) {
    throw refuse('ERR_OIDC_CLAIM_UNSAFE', `the claims give an invalid SPIFFE ID: ${(e as Error).message}`);
  }
  const expectedSegments = template.split('/').length - 3;
  if (parsed.trustDomain !== trustDomain || parsed.path.split('/').length - 1 !== expectedSegments) {
    throw refuse(
      'ERR_OIDC_CLAIM_UNSAFE',
      `the claims would change the SPIFFE ID's shape (${id.slice(0, 200)}); the token is refused`,
    );
  }
  return id;
}

/** Why claims fail an issuer's `require`, or undefined. */
export function requireProblem(
  required: OidcIssuerConfig['require'],
  claims: Record<string, unknown>,
): string | undefined {
  for (const [name, expected] of Object.entries(required)) {
    const actual = claimAt(claims, name);
    const accepted = Array.isArray(expected) ? expected : [expected];
    if (!accepted.some((v) => v === actual)) {
      return `claim ${name} is ${actual === undefined ? 'missing' : JSON.stringify(actual).slice(0, 200)}; the issuer requires ${accepted.map((v) => JSON.stringify(v)).join(' or ')}`;
    }
  }
  return undefined;
}

/** jose's refusal as our stable code. */
function tokenRefusal(e: unknown, issuer: OidcIssuerConfig): CountersignError {
  if (e instanceof CountersignError) return e;
  if (e instanceof joseErrors.JWTExpired && e.claim === 'iat')
    return refuse(
      'ERR_OIDC_TOKEN_AGE',
      `the token is older than max_token_age (${issuer.max_token_age / 1000} s): ${e.message}`,
    );
  if (e instanceof joseErrors.JWTExpired) return refuse('ERR_OIDC_TOKEN_EXPIRED', `the token expired (${e.message})`);
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = e.claim;
    if (claim === 'iss') return refuse('ERR_OIDC_ISSUER_MISMATCH', `the token's iss is not ${issuer.issuer}`);
    if (claim === 'aud')
      return refuse(
        'ERR_OIDC_AUDIENCE_MISMATCH',
        `the token's aud is not ${issuer.audience} (issuer ${issuer.name} requires it exactly)`,
      );
    if (claim === 'iat')
      return refuse('ERR_OIDC_TOKEN_AGE', `the token's iat is out of range: ${e.message} (max_token_age, clock_skew)`);
    if (claim === 'nbf') return refuse('ERR_OIDC_TOKEN_NOT_YET_VALID', `the token is not valid yet: ${e.message}`);
    return refuse('ERR_OIDC_CLAIM_INVALID', `claim ${claim}: ${e.message}`, { claim });
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed)
    return refuse(
      'ERR_OIDC_ALGORITHM',
      `algorithm not allowed for issuer ${issuer.name} (allowed: ${issuer.algorithms.join(', ')})`,
    );
  if (e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWKSMultipleMatchingKeys) {
    return refuse(
      'ERR_OIDC_KEY_UNKNOWN',
      `no key of issuer ${issuer.name}'s JWKS matches the token's header (kid, alg)`,
    );
  }
  if (e instanceof joseErrors.JWSSignatureVerificationFailed)
    return refuse('ERR_OIDC_SIGNATURE', `the token's signature does not verify with issuer ${issuer.name}'s key`);
  if (
    e instanceof joseErrors.JWKSTimeout ||
    e instanceof joseErrors.JWKSInvalid ||
    e instanceof TypeError ||
    (e instanceof joseErrors.JOSEError &&
      e.constructor === joseErrors.JOSEError) /* jose's generic error: a fetch that failed */
  ) {
    return new CountersignError(
      'unavailable',
      'ERR_OIDC_ISSUER_UNREACHABLE',
      `oidc: issuer ${issuer.name}'s keys could not be fetched (${e.message}); cached keys are used until jwks_cache ends`,
    );
  }
  if (e instanceof joseErrors.JOSEError)
    return refuse('ERR_OIDC_TOKEN_MALFORMED', `the token could not be verified: ${e.message}`);
  return refuse('ERR_OIDC_TOKEN_MALFORMED', `the token could not be verified: ${(e as Error).message}`);
}

/** Keys of one issuer: from a file, or from its discovery document's jwks_uri (fetched and cached by jose). */
class IssuerKeys {
  private remote: JWTVerifyGetKey | undefined;
  private discovering: Promise<JWTVerifyGetKey> | undefined;

  constructor(
    private readonly issuer: OidcIssuerConfig,
    private readonly local: JWTVerifyGetKey | undefined,
  ) {}

  async get(): Promise<JWTVerifyGetKey> {
    if (this.local) return this.local;
    if (this.remote) return this.remote;
    this.discovering ??= this.discover().finally(() => (this.discovering = undefined));
    return (this.remote = await this.discovering);
  }

  private async discover(): Promise<JWTVerifyGetKey> {
    let jwksUri = this.issuer.jwks_uri;
    if (jwksUri === undefined) {
      const url = `${this.issuer.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
      let doc: { issuer?: unknown; jwks_uri?: unknown };
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(5000), redirect: 'error' });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        doc = (await res.json()) as typeof doc;
      } catch (e) {
        throw new CountersignError(
          'unavailable',
          'ERR_OIDC_ISSUER_UNREACHABLE',
          `oidc: issuer ${this.issuer.name}'s discovery document ${url} could not be read: ${(e as Error).message}`,
        );
      }
      if (doc.issuer !== this.issuer.issuer || typeof doc.jwks_uri !== 'string') {
        throw new CountersignError(
          'unavailable',
          'ERR_OIDC_ISSUER_UNREACHABLE',
          `oidc: ${url} names issuer ${JSON.stringify(doc.issuer)} (expected ${this.issuer.issuer}) or has no jwks_uri`,
        );
      }
      jwksUri = doc.jwks_uri;
    }
    return createRemoteJWKSet(new URL(jwksUri), {
      cacheMaxAge: this.issuer.jwks_cache,
      cooldownDuration: 1000,
      timeoutDuration: 5000,
    });
  }
}

export interface OidcExchangeDeps {
  config: BrokerConfig;
  redis: Redis;
  keys: Keys;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  bundles: BundleStore;
  /** Maps an actor claim to a principal (github_login, gitlab_login, email, name). */
  directory?: Principals;
  /** The request rate limit (requests.limits), applied per source address: the call needs no identity, so it is the only key there is. */
  limiter?: Pick<RequestRateLimiter, 'take'>;
  onRefused?: ExchangeRefusalListener;
}

export class OidcExchange {
  private readonly keySets = new Map<string, IssuerKeys>();

  private constructor(
    private readonly deps: OidcExchangeDeps,
    private readonly issuers: readonly OidcIssuerConfig[],
    private readonly ca: CertificateAuthority,
    /** The intermediates sent after each leaf, PEM (the CA's certificate first). */
    private readonly intermediatesPem: string,
    /** x5t#S256 of the CA's certificate: an SVID it signed is an exchanged one. */
    private readonly caThumbprint: string,
    local: Map<string, JWTVerifyGetKey>,
  ) {
    for (const issuer of issuers) this.keySets.set(issuer.name, new IssuerKeys(issuer, local.get(issuer.name)));
  }

  /** The exchange, when identity.oidc lists issuers; checks that its SVIDs chain to the trust domain's bundle. */
  static async open(deps: OidcExchangeDeps): Promise<OidcExchange | undefined> {
    const { config } = deps;
    const issuers = config.identity.oidc;
    const caFiles = config.identity.oidc_ca;
    if (issuers.length === 0 || caFiles === undefined) return undefined;
    const path = (p: string) => configPath(config, p);
    const [chainPem, keyPem] = await Promise.all([
      readFile(path(caFiles.cert_file), 'utf8'),
      readFile(path(caFiles.key_file), 'utf8'),
    ]);
    const ders = pemToDer(chainPem);
    const first = ders[0];
    if (first === undefined)
      throw new CountersignError(
        'invalid_argument',
        'ERR_CONFIG_INVALID',
        `identity.oidc_ca.cert_file ${caFiles.cert_file} holds no certificate`,
      );
    const ca = CertificateAuthority.load(config.trust_domain, derToPem(first), keyPem, () => deps.clock.now());
    // The leaf is followed by every certificate of the file that is not a self-signed root.
    const intermediates = ders.filter((der) => {
      const c = new X509Certificate(der);
      return !(c.issuer === c.subject && c.checkIssued(c));
    });
    const local = new Map<string, JWTVerifyGetKey>();
    for (const issuer of issuers) {
      if (issuer.jwks_file === undefined) continue;
      let jwks: JSONWebKeySet;
      try {
        jwks = JSON.parse(await readFile(path(issuer.jwks_file), 'utf8')) as JSONWebKeySet;
        local.set(issuer.name, createLocalJWKSet(jwks));
      } catch (e) {
        throw new CountersignError(
          'invalid_argument',
          'ERR_CONFIG_INVALID',
          `identity.oidc[${issuer.name}].jwks_file ${issuer.jwks_file}: ${(e as Error).message}`,
        );
      }
    }
    const exchange = new OidcExchange(
      deps,
      issuers,
      ca,
      intermediates.map((d) => derToPem(d)).join(''),
      certificateThumbprint(first),
      local,
    );
    await exchange.selfCheck();
    return exchange;
  }

  /** An SVID this CA signs must pass the broker's own validation, or exchanged SVIDs would be refused on every call. */
  private async selfCheck(): Promise<void> {
    const { publicKey } = await import('node:crypto').then((c) => c.generateKeyPairSync('ec', { namedCurve: 'P-256' }));
    const now = this.deps.clock.now();
    const spiffeId = `spiffe://${this.deps.config.trust_domain}/countersign/oidc-self-check`;
    const leaf = this.ca.issueLeafForKey(spiffeId, publicKey, { notBefore: now - 60_000, notAfter: now + 60_000 });
    try {
      await verifySvid([leaf, ...pemToDer(this.intermediatesPem)], this.deps.bundles.current, { now, role: 'client' });
    } catch (e) {
      throw new CountersignError(
        'invalid_argument',
        'ERR_CONFIG_INVALID',
        `identity.oidc_ca: SVIDs it signs would be refused: ${(e as Error).message}. Its certificate must chain (cert_file: the intermediate, then any others) to a root in the bundle of trust domain ${this.deps.config.trust_domain}`,
      );
    }
  }

  private issuerFor(token: string, name: string): OidcIssuerConfig {
    if (name !== '') {
      const byName = this.issuers.find((i) => i.name === name);
      if (byName === undefined)
        throw new CountersignError(
          'invalid_argument',
          'ERR_INVALID_FIELD',
          `issuer: no configured issuer is named ${JSON.stringify(name.slice(0, 64))}; known: ${this.issuers.map((i) => i.name).join(', ')}`,
          { field: 'issuer' },
        );
      return byName;
    }
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch (e) {
      throw refuse('ERR_OIDC_TOKEN_MALFORMED', `the token is not a JWT: ${(e as Error).message}`);
    }
    const byIss = this.issuers.find((i) => i.issuer === iss);
    if (byIss === undefined)
      throw refuse(
        'ERR_OIDC_ISSUER_UNKNOWN',
        `no configured issuer has iss ${JSON.stringify(String(iss).slice(0, 200))}`,
      );
    return byIss;
  }

  private async verifyToken(token: string, issuer: OidcIssuerConfig): Promise<JWTPayload> {
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (e) {
      throw refuse('ERR_OIDC_TOKEN_MALFORMED', `the token's header cannot be read: ${(e as Error).message}`);
    }
    if (typeof alg !== 'string' || !(issuer.algorithms as readonly string[]).includes(alg)) {
      throw refuse(
        'ERR_OIDC_ALGORITHM',
        `algorithm ${JSON.stringify(alg)} is not allowed for issuer ${issuer.name} (allowed: ${issuer.algorithms.join(', ')})`,
      );
    }
    try {
      const getKey = await this.keySets.get(issuer.name)!.get();
      const { payload } = await jwtVerify(token, getKey, {
        issuer: issuer.issuer,
        audience: issuer.audience,
        algorithms: [...issuer.algorithms],
        clockTolerance: Math.floor(issuer.clock_skew / 1000),
        currentDate: new Date(this.deps.clock.now()),
        maxTokenAge: Math.floor(issuer.max_token_age / 1000),
        requiredClaims: ['exp', 'iat', 'sub'],
      });
      // A token meant for several audiences could be replayed by any of them.
      if (Array.isArray(payload.aud) && payload.aud.length !== 1) {
        throw refuse(
          'ERR_OIDC_AUDIENCE_MISMATCH',
          `the token's aud lists ${payload.aud.length} audiences; exactly ${issuer.audience} is accepted`,
        );
      }
      return payload;
    } catch (e) {
      throw tokenRefusal(e, issuer);
    }
  }

  /** The CSR's public key, once its signature proves the caller holds the private key. */
  private async checkCsr(pem: string): Promise<KeyObject> {
    if (pem === '')
      throw new CountersignError(
        'invalid_argument',
        'ERR_INVALID_FIELD',
        'csr: is required (a PKCS#10 request, PEM, signed by the key the SVID is for)',
        { field: 'csr' },
      );
    if (pem.length > MAX_CSR_BYTES)
      throw new CountersignError(
        'invalid_argument',
        'ERR_INVALID_FIELD',
        `csr: ${pem.length} bytes, at most ${MAX_CSR_BYTES}`,
        { field: 'csr' },
      );
    let csr: x509.Pkcs10CertificateRequest;
    let key: KeyObject;
    try {
      csr = new x509.Pkcs10CertificateRequest(pem);
      key = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
    } catch (e) {
      throw new CountersignError(
        'invalid_argument',
        'ERR_INVALID_FIELD',
        `csr: not a PKCS#10 certificate request in PEM: ${(e as Error).message}`,
        { field: 'csr' },
      );
    }
    let ok = false;
    try {
      ok = await csr.verify();
    } catch {
      ok = false;
    }
    if (!ok)
      throw new CountersignError(
        'invalid_argument',
        'ERR_INVALID_FIELD',
        'csr: its signature does not verify with its own key (proof of possession)',
        { field: 'csr' },
      );
    const type = key.asymmetricKeyType;
    const details = key.asymmetricKeyDetails ?? {};
    const good =
      (type === 'ec' && ['prime256v1', 'secp384r1'].includes(details.namedCurve ?? '')) ||
      (type === 'rsa' && (details.modulusLength ?? 0) >= 2048 && (details.modulusLength ?? 0) <= 4096);
    if (!good) {
      throw new CountersignError(
        'invalid_argument',
        'ERR_INVALID_FIELD',
        `csr: key ${type}${details.namedCurve ? ` ${details.namedCurve}` : ''}${details.modulusLength ? ` ${details.modulusLength} bits` : ''} is not accepted; use EC P-256 or P-384, or RSA 2048-4096`,
        { field: 'csr' },
      );
    }
    return key;
  }

  /** The exchange itself. Refusals are reported (aggregated in the audit trail) and thrown. */
  async exchange(request: { token: string; csr: string; issuer: string }, peer: string): Promise<ExchangeResult> {
    await this.deps.limiter?.take(`token exchanges from ${sourceOf(peer)}`);
    try {
      return await this.exchangeOnce(request);
    } catch (e) {
      if (e instanceof CountersignError && e.kind !== 'unavailable' && e.kind !== 'internal')
        this.deps.onRefused?.(e, peer);
      throw e;
    }
  }

  private async exchangeOnce(request: { token: string; csr: string; issuer: string }): Promise<ExchangeResult> {
    const { token } = request;
    if (token === '')
      throw new CountersignError(
        'invalid_argument',
        'ERR_INVALID_FIELD',
        'token: is required (the OIDC token the platform issued to this job or pod)',
        { field: 'token' },
      );
    if (token.length > MAX_TOKEN_BYTES)
      throw new CountersignError(
        'invalid_argument',
        'ERR_INVALID_FIELD',
        `token: ${token.length} bytes, at most ${MAX_TOKEN_BYTES}`,
        { field: 'token' },
      );
    // Cheap checks on the request come before anything reaches the issuer.
    const publicKey = await this.checkCsr(request.csr);
    const issuer = this.issuerFor(token, request.issuer);
    const claims = await this.verifyToken(token, issuer);
    const problem = requireProblem(issuer.require, claims);
    if (problem !== undefined)
      throw refuse('ERR_OIDC_REQUIRE_MISMATCH', `${problem} (identity.oidc[${issuer.name}].require)`);
    // With an actor mapping, separation of duties rests on naming the person behind the run: a token
    // that names no one gets no SVID (its requests could otherwise be made on behalf of anyone).
    const actorValue = issuer.actor === undefined ? undefined : claimAt(claims, issuer.actor.claim);
    if (
      issuer.actor !== undefined &&
      (typeof actorValue !== 'string' ||
        actorValue === '' ||
        this.actorPrincipal({ claim: issuer.actor.claim, value: actorValue, field: issuer.actor.principal_field }) ===
          undefined)
    ) {
      throw refuse(
        'ERR_OIDC_ACTOR_UNKNOWN',
        `claim ${issuer.actor.claim} is ${actorValue === undefined ? 'missing' : JSON.stringify(actorValue).slice(0, 100)}; identity.oidc[${issuer.name}].actor needs it to name the person who started the run (a principal's ${issuer.actor.principal_field}, or ${PRINCIPAL_NAME_GRAMMAR})`,
        { claim: issuer.actor.claim },
      );
    }
    const spiffeId = renderSpiffeId(issuer.spiffe_id, this.deps.config.trust_domain, claims);
    // Some IDs are trusted for more than being a workload: a person's (an approver's) and a proxy's whose
    // forwarded certificates are believed. A broad template must never hand one out.
    const reserved =
      this.deps.directory?.bySpiffeId(spiffeId) !== undefined
        ? 'a principal (principals file)'
        : this.deps.config.identity.xfcc.proxy_ids.includes(spiffeId)
          ? 'a trusted proxy (identity.xfcc.proxy_ids)'
          : undefined;
    if (reserved !== undefined) {
      throw refuse(
        'ERR_OIDC_ID_RESERVED',
        `the claims give ${spiffeId}, the SPIFFE ID of ${reserved}; an exchanged SVID never takes such an ID (give identity.oidc[${issuer.name}].spiffe_id a path of its own)`,
      );
    }
    const claimsText = JSON.stringify(claims);
    if (claimsText.length > MAX_CLAIMS_BYTES)
      throw refuse(
        'ERR_OIDC_TOKEN_MALFORMED',
        `the token's claims are ${claimsText.length} bytes, at most ${MAX_CLAIMS_BYTES}`,
      );

    const now = this.deps.clock.now();
    const exp = (claims.exp as number) * 1000;
    const notAfter = Math.min(now + issuer.svid_ttl, exp + issuer.exp_margin);
    // Without a jti, the token is known by what its issuer signed (header.payload), never by its whole
    // text: a signature has other spellings that verify as well (base64url's unused bits, ECDSA's n - s).
    const signedPart = token.slice(0, token.lastIndexOf('.'));
    const jtiHash = createHash('sha256')
      .update(
        `${issuer.issuer}\n${typeof claims.jti === 'string' && claims.jti !== '' ? `jti:${claims.jti}` : `token:${signedPart}`}`,
      )
      .digest('base64url');
    // Single use: the token is bound to the first key it is exchanged for. Only that key (a CSR it
    // signed) may exchange it again, to renew its SVID during a long wait; anyone else is a replay.
    const keyHash = createHash('sha256')
      .update(publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64url');
    let renewal = false;
    if (issuer.single_use) {
      const usedKey = this.deps.keys.oidcTokenUsed(jtiHash);
      const redisDown = (e: unknown) => {
        throw new CountersignError(
          'unavailable',
          'ERR_REDIS_UNAVAILABLE',
          `oidc: cannot record the token's single use: ${(e as Error).message}`,
        );
      };
      const first = await this.deps.redis
        .set(usedKey, keyHash, 'PXAT', Math.max(exp + issuer.clock_skew, now + 1000), 'NX')
        .catch(redisDown);
      if (first === null) {
        renewal = (await this.deps.redis.get(usedKey).catch(redisDown)) === keyHash;
        if (!renewal) {
          throw refuse(
            'ERR_OIDC_TOKEN_REPLAYED',
            `this token (issuer ${issuer.name}, jti hash ${jtiHash}) was already exchanged for another key; a token is exchanged once (again only with the same key, to renew)`,
          );
        }
      }
    }

    const leaf = this.ca.issueLeafForKey(spiffeId, publicKey, {
      notBefore: now - 30_000,
      notAfter,
      commonName: `oidc:${issuer.name}`,
    });
    const thumbprint = certificateThumbprint(leaf);
    const serial = new X509Certificate(leaf).serialNumber.toLowerCase();
    const subject = String(claims.sub);
    const record: ExchangedClaims = {
      issuer: issuer.name,
      subject,
      claims: JSON.parse(claimsText) as JsonObject,
      ...(issuer.actor !== undefined && typeof actorValue === 'string' && actorValue !== ''
        ? { actor: { claim: issuer.actor.claim, value: actorValue, field: issuer.actor.principal_field } }
        : {}),
    };
    // Fail closed: the claims are stored and the exchange audited before the SVID leaves.
    await this.deps.redis
      .set(this.deps.keys.oidcSvid(thumbprint), JSON.stringify({ spiffeId, ...record }), 'PXAT', notAfter + 60_000)
      .catch((e: unknown) => {
        throw new CountersignError(
          'unavailable',
          'ERR_REDIS_UNAVAILABLE',
          `oidc: cannot store the SVID's claims: ${(e as Error).message}`,
        );
      });
    await this.deps.audit.append({
      type: 'svid_exchanged',
      issuer: issuer.name,
      subject,
      spiffe_id: spiffeId,
      jti_hash: jtiHash,
      serial,
      thumbprint,
      expires_at: notAfter,
      ...(record.actor ? { actor: record.actor.value } : {}),
      ...(renewal ? { renewal: true } : {}),
    });
    const bundle = this.deps.bundles.current.getBundle(this.deps.config.trust_domain);
    return {
      spiffeId,
      chainPem: derToPem(leaf) + this.intermediatesPem,
      bundlePem: (bundle?.x509Authorities ?? []).map((a) => derToPem(a.der)).join(''),
      expiresAt: notAfter,
      issuer: issuer.name,
    };
  }

  /** The claims behind an SVID this broker issued by exchange, or undefined for any other SVID. */
  async claimsOf(identity: SvidIdentity): Promise<ExchangedClaims | undefined> {
    if (identity.trustDomain !== this.deps.config.trust_domain) return undefined;
    let text: string | null;
    try {
      text = await this.deps.redis.get(this.deps.keys.oidcSvid(identity.thumbprint));
    } catch (e) {
      throw new CountersignError(
        'unavailable',
        'ERR_REDIS_UNAVAILABLE',
        `cannot read the claims of an exchanged SVID: ${(e as Error).message}`,
      );
    }
    const exchanged = identity.issuedBy === this.caThumbprint;
    const stored = text === null ? undefined : (JSON.parse(text) as ExchangedClaims & { spiffeId: string });
    if (stored === undefined || stored.spiffeId !== identity.spiffeId) {
      // An SVID this broker's exchange signed always has its claims: without them there is no
      // policy input and no actor for separation of duties, so it is refused, not taken as plain.
      if (exchanged)
        throw new CountersignError(
          'permission_denied',
          'ERR_OIDC_CLAIMS_MISSING',
          `the claims of this exchanged SVID (${identity.spiffeId}) are no longer in Redis; exchange a new token`,
        );
      return undefined;
    }
    const names = stored.actor ? this.actorPrincipal(stored.actor) : undefined;
    if (stored.actor && names === undefined) {
      // Named at exchange, no longer (the principals file changed): no request without the person behind it.
      throw new CountersignError(
        'permission_denied',
        'ERR_OIDC_ACTOR_UNKNOWN',
        `the actor of this SVID's token (claim ${stored.actor.claim}) names no principal any more; exchange a new token`,
      );
    }
    return {
      issuer: stored.issuer,
      subject: stored.subject,
      claims: stored.claims,
      ...(stored.actor ? { actor: stored.actor } : {}),
      ...(names ? { onBehalfOf: names[0], actorNames: names } : {}),
    };
  }

  /** The names of the principal an actor claim names, read at request time (the principals file is the one in force); its name first. */
  private actorPrincipal(actor: NonNullable<ExchangedClaims['actor']>): string[] | undefined {
    const directory = this.deps.directory;
    const field = actor.field;
    const principal =
      field === 'github_login' || field === 'gitlab_login'
        ? directory?.byLogin(field, actor.value)
        : field === 'email'
          ? directory?.byEmail(actor.value)
          : directory?.byName(actor.value);
    if (principal !== undefined) return [principal.name, ...(principal.email ? [principal.email] : [])];
    try {
      return [normalizePrincipalName(actor.value, `claim ${actor.claim}`)];
    } catch {
      return undefined;
    }
  }
}
