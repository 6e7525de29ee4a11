// credentials.redeemers: who may redeem credentials, per audience. The config
// shape and its mistakes (named by line and key), and the matching rules.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../src/config/config.js';
import { CountersignError } from '../src/errors.js';
import { Redeemers } from '../src/credentials/redeemers.js';

const config = (redeemers: string) =>
  parseConfig(
    `trust_domain: example.org
identity:
  svid: { cert_file: a.pem, key_file: b.pem }
  bundles: [{ trust_domain: example.org, file: ca.pem }]
policy:
  file: policy.yaml
credentials:
  default_audience: https://deploy.example.org
  signing_keys:
    - file: signing-key.pem
${redeemers}`,
    '/etc/countersign/config.yaml',
  );

const problem = (redeemers: string): string => {
  try {
    config(redeemers);
  } catch (e) {
    assert.equal((e as { code?: string }).code, 'ERR_CONFIG_INVALID');
    return (e as Error).message;
  }
  return assert.fail('expected the config to be refused');
};

const refusalCode = (f: () => void): string => {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof CountersignError);
    assert.equal(e.kind, 'permission_denied');
    return e.code;
  }
  return 'allowed';
};

describe('credentials.redeemers in the config', () => {
  it('is unset by default (nobody may redeem), and reads audiences with SPIFFE IDs and patterns', () => {
    assert.equal(config('').credentials.redeemers, undefined);
    const c = config(`  redeemers:
    - audience: https://deploy.example.org
      workloads: [spiffe://example.org/svc/deploy-api, "spiffe://example.org/edge/*/gateway"]
    - audience: "*"
      workloads: ["spiffe://example.org/ops/**"]
`);
    assert.deepEqual(c.credentials.redeemers, [
      {
        audience: 'https://deploy.example.org',
        workloads: ['spiffe://example.org/svc/deploy-api', 'spiffe://example.org/edge/*/gateway'],
      },
      { audience: '*', workloads: ['spiffe://example.org/ops/**'] },
    ]);
  });

  const refused: [string, string, RegExp][] = [
    [
      'a workload that is not a SPIFFE ID',
      '  redeemers:\n    - { audience: a, workloads: [deploy-api] }\n',
      /config\.yaml:\d+:\d+: credentials\.redeemers\[0\]\.workloads\[0\]: "deploy-api" is not a workload SPIFFE ID or pattern/,
    ],
    [
      'a trust domain without a path',
      '  redeemers:\n    - { audience: a, workloads: ["spiffe://example.org"] }\n',
      /is not a workload SPIFFE ID or pattern/,
    ],
    ['"***"', '  redeemers:\n    - { audience: a, workloads: ["spiffe://example.org/***"] }\n', /has "\*\*\*"/],
    [
      'braces',
      '  redeemers:\n    - { audience: a, workloads: ["spiffe://example.org/{a,b}"] }\n',
      /braces are not supported/,
    ],
    [
      'no workloads',
      '  redeemers:\n    - { audience: a, workloads: [] }\n',
      /credentials\.redeemers\[0\]\.workloads: Too small/,
    ],
    [
      'an audience with a space',
      '  redeemers:\n    - { audience: "a b", workloads: ["spiffe://example.org/x"] }\n',
      /expected an audience without whitespace/,
    ],
    [
      'an audience listed twice',
      '  redeemers:\n    - { audience: a, workloads: ["spiffe://example.org/x"] }\n    - { audience: a, workloads: ["spiffe://example.org/y"] }\n',
      /credentials\.redeemers\[1\]\.audience: audience a is already listed \(redeemers\[0\]\)/,
    ],
    [
      'an unknown key',
      '  redeemers:\n    - { audience: a, workload: ["spiffe://example.org/x"] }\n',
      /unknown key "workload" \(did you mean "workloads"\?\)/,
    ],
  ];
  for (const [name, yaml, message] of refused) {
    it(`refuses ${name}`, () => assert.match(problem(yaml), message));
  }
});

describe('Redeemers', () => {
  const redeemers = new Redeemers([
    {
      audience: 'https://deploy.example.org',
      workloads: ['spiffe://example.org/svc/deploy-api', 'spiffe://example.org/edge/*/gateway'],
    },
    { audience: '*', workloads: ['spiffe://example.org/ops/**'] },
  ]);
  const cases: [string, string[], string][] = [
    ['spiffe://example.org/svc/deploy-api', ['https://deploy.example.org'], 'allowed'],
    ['spiffe://example.org/svc/deploy-api', ['https://billing.example.org'], 'ERR_REDEEMER_NOT_ALLOWED'],
    ['spiffe://example.org/svc/deploy-api', ['https://billing.example.org', 'https://deploy.example.org'], 'allowed'],
    ['spiffe://example.org/svc/deploy-api/x', ['https://deploy.example.org'], 'ERR_REDEEMER_NOT_ALLOWED'],
    ['spiffe://example.org/edge/eu-1/gateway', ['https://deploy.example.org'], 'allowed'],
    ['spiffe://example.org/edge/eu/1/gateway', ['https://deploy.example.org'], 'ERR_REDEEMER_NOT_ALLOWED'],
    ['spiffe://other.org/svc/deploy-api', ['https://deploy.example.org'], 'ERR_REDEEMER_NOT_ALLOWED'],
    ['spiffe://example.org/ops/a/b', ['https://anything.example.org'], 'allowed'],
    ['spiffe://example.org/ci/deployer', ['https://deploy.example.org'], 'ERR_REDEEMER_NOT_ALLOWED'],
  ];
  for (const [caller, audiences, expected] of cases) {
    it(`${caller} for ${audiences.join(' + ')}: ${expected}`, () =>
      assert.equal(
        refusalCode(() => redeemers.check(caller, audiences)),
        expected,
      ));
  }

  it('refuses everyone when nothing is configured, saying what would allow the caller', () => {
    const none = new Redeemers(undefined);
    assert.equal(none.configured, false);
    assert.equal(
      refusalCode(() => none.check('spiffe://example.org/svc/deploy-api', ['https://deploy.example.org'])),
      'ERR_REDEMPTION_NOT_CONFIGURED',
    );
    assert.throws(() => none.check('spiffe://example.org/svc/deploy-api', ['https://deploy.example.org']), {
      message:
        /credentials\.redeemers: \[\{ audience: "https:\/\/deploy\.example\.org", workloads: \["spiffe:\/\/example\.org\/svc\/deploy-api"\] \}\]/,
    });
  });
});
