// Trust bundles: PEM, SPIFFE bundle documents (JWK Sets) and DER, with their
// limits. Cases follow the SPIFFE Trust Domain and Bundle spec, section 4, and
// the X.509-SVID spec, section 6 (x509-svid keys carry exactly one certificate).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { CountersignError } from '../src/errors.js';
import {
  BundleSet,
  bundleFromDer,
  bundleFromPem,
  bundleFromSpiffeJson,
  type SpiffeBundleNotes,
} from '../src/identity/bundle.js';
import { parseStrictJson } from '../src/identity/strict-json.js';
import { verifySvid } from '../src/identity/x509-svid.js';
import { CertificateAuthority } from '../src/dev/ca.js';

const root = CertificateAuthority.createRoot('example.org');
const next = CertificateAuthority.createRoot('example.org', { keyType: 'rsa' });
const b64 = (ca: CertificateAuthority) => ca.certificate.der.toString('base64');
const ecJwk = (ca: CertificateAuthority, extra: Record<string, unknown> = {}) => ({
  ...(new X509Certificate(ca.certificate.der).publicKey.export({ format: 'jwk' }) as Record<string, unknown>),
  use: 'x509-svid',
  x5c: [b64(ca)],
  ...extra,
});

function codeOf(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof CountersignError, String(e));
    return e.code;
  }
}

describe('SPIFFE bundle documents', () => {
  it('reads x509-svid authorities, spiffe_sequence and spiffe_refresh_hint', async () => {
    const doc = { spiffe_sequence: 7, spiffe_refresh_hint: 300, keys: [ecJwk(root), ecJwk(next)] };
    const bundle = bundleFromSpiffeJson('example.org', JSON.stringify(doc));
    assert.equal(bundle.x509Authorities.length, 2);
    assert.equal(bundle.sequence, 7n);
    assert.equal(bundle.refreshHintSeconds, 300);
    const svid = next.issueSvid('spiffe://example.org/w');
    assert.equal(
      (await verifySvid(svid.chainDer, new BundleSet([bundle]), { now: Date.now() })).spiffeId,
      'spiffe://example.org/w',
    );
  });

  it('keeps a uint64 spiffe_sequence exact', () => {
    const bundle = bundleFromSpiffeJson('example.org', `{"spiffe_sequence": 18446744073709551615, "keys": []}`);
    assert.equal(bundle.sequence, 18446744073709551615n);
  });

  it('ignores entries with another use, no use, an unknown kty, or no x5c, and says so', () => {
    const notes: SpiffeBundleNotes = { ignored: [] };
    const doc = {
      keys: [
        ecJwk(root),
        { kty: 'EC', use: 'jwt-svid', kid: 'k1', crv: 'P-256', x: 'AA', y: 'AA' },
        { ...ecJwk(next), use: undefined },
        { ...ecJwk(next), kty: 'XYZ' },
        { kty: 'EC', use: 'x509-svid', crv: 'P-256', x: 'AA', y: 'AA' },
      ],
    };
    const bundle = bundleFromSpiffeJson('example.org', JSON.stringify(doc), 'b.json', notes);
    assert.equal(bundle.x509Authorities.length, 1);
    assert.equal(notes.ignored.length, 4);
    assert.match(notes.ignored.join('\n'), /keys\[1\]: use "jwt-svid"/);
    assert.match(notes.ignored.join('\n'), /keys\[2\]: use missing/);
    assert.match(notes.ignored.join('\n'), /keys\[3\]: unknown kty "XYZ"/);
    assert.match(notes.ignored.join('\n'), /keys\[4\]: x509-svid key without x5c/);
  });

  it('accepts keys: [] as a bundle that trusts nothing', async () => {
    const bundle = bundleFromSpiffeJson('example.org', '{"keys": []}');
    assert.equal(bundle.x509Authorities.length, 0);
    await assert.rejects(
      verifySvid(root.issueSvid('spiffe://example.org/w').chainDer, new BundleSet([bundle]), { now: Date.now() }),
      {
        code: 'ERR_SVID_UNTRUSTED',
      },
    );
  });

  const refused: [string, string, string][] = [
    ['no keys member', '{"spiffe_sequence": 1}', 'ERR_BUNDLE_NO_KEYS'],
    ['keys that is not an array', '{"keys": {}}', 'ERR_BUNDLE_NO_KEYS'],
    [
      'two certificates in one x5c',
      JSON.stringify({ keys: [{ ...ecJwk(root), x5c: [b64(root), b64(next)] }] }),
      'ERR_BUNDLE_X5C',
    ],
    ['an empty x5c', JSON.stringify({ keys: [{ ...ecJwk(root), x5c: [] }] }), 'ERR_BUNDLE_X5C'],
    [
      'base64url in x5c',
      JSON.stringify({ keys: [{ ...ecJwk(root), x5c: [b64(root).replace(/\+/g, '-').replace(/\//g, '_') + '-_'] }] }),
      'ERR_BUNDLE_X5C',
    ],
    [
      'a kty that does not match the certificate',
      JSON.stringify({ keys: [{ ...ecJwk(root), kty: 'RSA' }] }),
      'ERR_BUNDLE_X5C',
    ],
    [
      'a leaf certificate as an authority',
      JSON.stringify({
        keys: [{ ...ecJwk(root), x5c: [root.issueSvid('spiffe://example.org/w').der.toString('base64')] }],
      }),
      'ERR_BUNDLE_AUTHORITY_NOT_CA',
    ],
    [
      'garbage in x5c',
      JSON.stringify({ keys: [{ ...ecJwk(root), x5c: ['AAAA'] }] }),
      'ERR_BUNDLE_MALFORMED_CERTIFICATE',
    ],
    ['a negative spiffe_sequence', '{"spiffe_sequence": -1, "keys": []}', 'ERR_BUNDLE_SEQUENCE'],
    ['a fractional spiffe_sequence', '{"spiffe_sequence": 1.5, "keys": []}', 'ERR_BUNDLE_SEQUENCE'],
    ['a spiffe_sequence beyond uint64', '{"spiffe_sequence": 18446744073709551616, "keys": []}', 'ERR_BUNDLE_SEQUENCE'],
    ['a string spiffe_refresh_hint', '{"spiffe_refresh_hint": "5m", "keys": []}', 'ERR_BUNDLE_REFRESH_HINT'],
    ['a duplicate keys member', `{"keys": [${JSON.stringify(ecJwk(root))}], "keys": []}`, 'ERR_BUNDLE_DUPLICATE_KEY'],
    [
      'a duplicate member inside a JWK',
      `{"keys": [{"kty": "EC", "use": "jwt-svid", "use": "x509-svid"}]}`,
      'ERR_BUNDLE_DUPLICATE_KEY',
    ],
    ['a JSON array', '[]', 'ERR_BUNDLE_JSON'],
    ['text that is not JSON', 'keys: []', 'ERR_BUNDLE_JSON'],
    ['trailing text', '{"keys": []} x', 'ERR_BUNDLE_JSON'],
    ['more than 1 MiB', `{"keys": [], "pad": "${'x'.repeat(1024 * 1024)}"}`, 'ERR_BUNDLE_TOO_LARGE'],
  ];
  for (const [name, text, code] of refused) {
    it(`refuses ${name} (${code})`, () => {
      assert.equal(
        codeOf(() => bundleFromSpiffeJson('example.org', text, 'bundle.json')),
        code,
      );
    });
  }

  it('names the file and the entry in its messages', () => {
    assert.throws(
      () =>
        bundleFromSpiffeJson(
          'example.org',
          JSON.stringify({ keys: [{ ...ecJwk(root), x5c: [b64(root), b64(next)] }] }),
          '/etc/b.json',
        ),
      (e: unknown) => {
        assert.match(
          (e as Error).message,
          /^bundle: \/etc\/b\.json keys\[0\]: an x509-svid key must carry exactly one certificate in x5c, got 2$/,
        );
        return true;
      },
    );
  });
});

describe('PEM and DER bundles', () => {
  it('reads several authorities from PEM and the same from DER', () => {
    assert.equal(bundleFromPem('example.org', root.pem + next.pem).x509Authorities.length, 2);
    assert.equal(bundleFromDer('example.org', [root.certificate.der, next.certificate.der]).x509Authorities.length, 2);
  });
  it('refuses an empty PEM file, a non-CA, and an invalid trust domain name', () => {
    assert.equal(
      codeOf(() => bundleFromPem('example.org', '')),
      'ERR_BUNDLE_EMPTY',
    );
    assert.equal(
      codeOf(() => bundleFromPem('example.org', root.issueSvid('spiffe://example.org/w').pem)),
      'ERR_BUNDLE_AUTHORITY_NOT_CA',
    );
    assert.equal(
      codeOf(() => bundleFromPem('Example.org', root.pem)),
      'ERR_SPIFFE_ID_TRUST_DOMAIN_CHAR',
    );
  });
  it('refuses the same trust domain twice in one set', () => {
    assert.equal(
      codeOf(() => new BundleSet([bundleFromPem('example.org', root.pem), bundleFromPem('example.org', next.pem)])),
      'ERR_BUNDLE_DUPLICATE_TRUST_DOMAIN',
    );
  });
});

describe('strict JSON', () => {
  it('parses what JSON.parse parses', () => {
    const text = '{"a": [1, -2.5e3, "x\\u00e9\\n", true, false, null, {}], "b": {"c": []}}';
    assert.deepEqual(parseStrictJson(text), JSON.parse(text));
  });
  it('refuses duplicates at any depth, deep nesting, and bad syntax', () => {
    assert.throws(() => parseStrictJson('{"a": {"b": 1, "b": 2}}'), /member "b" appears twice in \.a/);
    assert.throws(() => parseStrictJson('['.repeat(100) + ']'.repeat(100)), /nesting deeper than 32/);
    for (const bad of ['{"a": 1,}', '[1,]', '{"a" 1}', '"\\x"', '01', '{"a": "\u0001"}', '']) {
      assert.throws(() => parseStrictJson(bad), { name: 'StrictJsonError' }, bad);
    }
  });
  it('does not let "__proto__" change the prototype', () => {
    const v = parseStrictJson('{"__proto__": {"polluted": true}}') as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.deepEqual(Object.keys(v), ['__proto__']);
  });
});
