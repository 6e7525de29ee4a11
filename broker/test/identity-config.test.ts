// The identity section of the broker config: one SVID source, bundle formats,
// federation entries, the XFCC proxy mode; mistakes name the line and the key.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { identitySettings } from '../src/app.js';
import { parseConfig } from '../src/config/config.js';

const rest = `redis:
  prefix: "t:"
policy:
  file: policy.yaml
credentials:
  default_audience: https://deploy.example.org
  signing_keys:
    - file: signing-key.pem
`;
const config = (identity: string) =>
  parseConfig(`trust_domain: example.org\n${identity}${rest}`, '/etc/countersign/config.yaml');
const problem = (identity: string): string => {
  try {
    config(identity);
  } catch (e) {
    assert.equal((e as { code?: string }).code, 'ERR_CONFIG_INVALID');
    return (e as Error).message;
  }
  return assert.fail('expected the config to be refused');
};

describe('identity config', () => {
  it('reads an SVID from files and bundles in both formats, paths relative to the config file', () => {
    const c = config(`identity:
  svid: { cert_file: svid.pem, key_file: /run/keys/svid-key.pem }
  bundles:
    - { trust_domain: example.org, file: bundle.pem }
    - { trust_domain: partner.org, file: partner.json, format: spiffe }
`);
    const s = identitySettings(c);
    assert.deepEqual(s.svid, {
      source: 'files',
      certFile: '/etc/countersign/svid.pem',
      keyFile: '/run/keys/svid-key.pem',
    });
    assert.deepEqual(s.bundles, [
      { trustDomain: 'example.org', file: '/etc/countersign/bundle.pem', format: 'pem' },
      { trustDomain: 'partner.org', file: '/etc/countersign/partner.json', format: 'spiffe' },
    ]);
    assert.equal(s.reloadIntervalMs, 5000);
    assert.equal(c.identity.xfcc.enabled, false, 'XFCC is off by default');
  });

  it('reads a Workload API source, with its defaults', () => {
    const s = identitySettings(config(`identity:\n  svid:\n    workload_api: {}\n`));
    assert.deepEqual(s.svid, {
      source: 'workload_api',
      address: undefined,
      spiffeId: undefined,
      timeoutMs: 30_000,
      trustBundles: true,
    });
    const explicit = identitySettings(
      config(
        `identity:\n  svid:\n    workload_api: { socket: "unix:///run/spire/agent.sock", spiffe_id: "spiffe://example.org/broker", timeout: 5s, trust_bundles: false }\n  bundles: [{ trust_domain: example.org, file: b.pem }]\n`,
      ),
    );
    assert.deepEqual(explicit.svid, {
      source: 'workload_api',
      address: 'unix:///run/spire/agent.sock',
      spiffeId: 'spiffe://example.org/broker',
      timeoutMs: 5000,
      trustBundles: false,
    });
  });

  const refused: [string, string, RegExp][] = [
    [
      'both SVID sources',
      `identity:\n  svid: { cert_file: a.pem, key_file: b.pem, workload_api: {} }\n`,
      /identity\.svid: set either cert_file and key_file, or workload_api, not both/,
    ],
    [
      'no SVID source',
      `identity:\n  svid: {}\n  bundles: [{ trust_domain: example.org, file: b.pem }]\n`,
      /identity\.svid: expected cert_file and key_file, or workload_api/,
    ],
    [
      'a certificate without its key',
      `identity:\n  svid: { cert_file: a.pem }\n  bundles: [{ trust_domain: example.org, file: b.pem }]\n`,
      /identity\.svid\.key_file: cert_file and key_file go together/,
    ],
    [
      'no bundle and no Workload API bundles',
      `identity:\n  svid: { cert_file: a.pem, key_file: b.pem }\n`,
      /identity\.bundles: at least one trust bundle is needed/,
    ],
    [
      'Workload API without its bundles and no files',
      `identity:\n  svid:\n    workload_api: { trust_bundles: false }\n`,
      /identity\.bundles: at least one trust bundle is needed/,
    ],
    [
      'the same trust domain twice',
      `identity:\n  svid: { cert_file: a.pem, key_file: b.pem }\n  bundles:\n    - { trust_domain: example.org, file: a.pem }\n    - { trust_domain: example.org, file: b.json, format: spiffe }\n`,
      /:6:\d+: identity\.bundles\[1\]\.trust_domain: trust domain example\.org already has a bundle \(bundles\[0\]\)/,
    ],
    [
      'an unknown bundle format',
      `identity:\n  svid: { cert_file: a.pem, key_file: b.pem }\n  bundles: [{ trust_domain: example.org, file: a.pem, format: jwks }]\n`,
      /identity\.bundles\[0\]\.format/,
    ],
    [
      'an uppercase trust domain',
      `identity:\n  svid: { cert_file: a.pem, key_file: b.pem }\n  bundles: [{ trust_domain: Example.org, file: a.pem }]\n`,
      /identity\.bundles\[0\]\.trust_domain: expected a trust domain name/,
    ],
    [
      'XFCC on without proxies',
      `identity:\n  svid: { cert_file: a.pem, key_file: b.pem }\n  bundles: [{ trust_domain: example.org, file: a.pem }]\n  xfcc: { enabled: true }\n`,
      /identity\.xfcc\.proxy_ids: xfcc\.enabled needs at least one proxy SPIFFE ID/,
    ],
    [
      'a proxy ID without a path',
      `identity:\n  svid: { cert_file: a.pem, key_file: b.pem }\n  bundles: [{ trust_domain: example.org, file: a.pem }]\n  xfcc: { enabled: true, proxy_ids: ["spiffe://example.org"] }\n`,
      /identity\.xfcc\.proxy_ids\[0\]: expected a workload SPIFFE ID/,
    ],
    [
      'a misspelt key',
      `identity:\n  svid: { cert_file: a.pem, key_file: b.pem }\n  bundles: [{ trust_domain: example.org, file: a.pem }]\n  reload_intervall: 5s\n`,
      /unknown key "reload_intervall" \(did you mean "reload_interval"\?\)/,
    ],
    [
      'a reload interval below 100ms',
      `identity:\n  svid: { cert_file: a.pem, key_file: b.pem }\n  bundles: [{ trust_domain: example.org, file: a.pem }]\n  reload_interval: 10ms\n`,
      /identity\.reload_interval: duration 10ms is out of range/,
    ],
    [
      'a Workload API timeout of zero',
      `identity:\n  svid:\n    workload_api: { timeout: 0s }\n`,
      /identity\.svid\.workload_api\.timeout: duration 0s is out of range/,
    ],
  ];
  for (const [name, identity, message] of refused) {
    it(`refuses ${name}`, () => assert.match(problem(identity), message));
  }
});
