// identity.oidc (issue 18): the issuers whose tokens are exchanged for SVIDs.
// Mistakes name the key, the value and what was expected; the SPIFFE ID template
// and the claim escaping refuse anything that could reach outside its segment.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../src/config/config.js';
import { Policy } from '../src/policy/policy.js';
import { runPolicyExplain } from '../src/cli/policy.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPolicyTests } from '../src/policy/policy-tests.js';
import { Principals } from '../src/policy/principals.js';
import { escapeSegmentValue, renderSpiffeId, requireProblem, runUrl } from '../src/exchange/oidc-exchange.js';

const head = `trust_domain: example.org
identity:
  svid: { cert_file: a.pem, key_file: b.pem }
  bundles: [{ trust_domain: example.org, file: a.pem }]
`;
const rest = `redis:
  prefix: "t:"
policy:
  file: policy.yaml
credentials:
  default_audience: https://deploy.example.org
  signing_keys:
    - file: signing-key.pem
`;
const CA = '  oidc_ca: { cert_file: oidc-ca.pem, key_file: oidc-ca-key.pem }\n';
const issuer = (extra = '', spiffeId = '"spiffe://{trust_domain}/github/{repository}/{environment}"') =>
  `  oidc:\n    - name: github\n      issuer: https://token.actions.githubusercontent.com\n      audience: countersign\n      spiffe_id: ${spiffeId}\n${extra}`;
const config = (identity: string) => parseConfig(`${head}${identity}${rest}`, '/etc/countersign/config.yaml');
const problem = (identity: string): string => {
  try {
    config(identity);
  } catch (e) {
    assert.equal((e as { code?: string }).code, 'ERR_CONFIG_INVALID');
    return (e as Error).message;
  }
  return assert.fail('expected the config to be refused');
};

describe('identity.oidc config', () => {
  it('reads the keys of the issue with their defaults', () => {
    const c = config(
      `${CA}${issuer('      require: { repository_owner: my-org }\n      svid_ttl: 5m\n      actor: { claim: actor, principal_field: github_login }\n')}`,
    );
    const [github] = c.identity.oidc;
    assert.ok(github);
    assert.equal(github.svid_ttl, 300_000);
    assert.deepEqual(github.require, { repository_owner: 'my-org' });
    assert.deepEqual(github.algorithms, ['RS256', 'ES256']);
    assert.equal(github.max_token_age, 3_600_000);
    assert.equal(github.clock_skew, 30_000);
    assert.equal(github.single_use, true);
    assert.deepEqual(github.actor, { claim: 'actor', principal_field: 'github_login' });
  });

  const refused: [string, string, RegExp][] = [
    [
      'issuers without the CA that signs their SVIDs',
      issuer(),
      /identity\.oidc_ca: identity\.oidc needs identity\.oidc_ca \(cert_file, key_file\)/,
    ],
    [
      'a template in another trust domain',
      `${CA}${issuer('', '"spiffe://evil.org/{sub}"')}`,
      /identity\.oidc\[0\]\.spiffe_id: "spiffe:\/\/evil\.org\/\{sub\}" must start with spiffe:\/\/\{trust_domain\}\//,
    ],
    [
      'a template naming no claim',
      `${CA}${issuer('', '"spiffe://{trust_domain}/ci/all"')}`,
      /spiffe_id: .* names no claim/,
    ],
    [
      'a template with an unbalanced brace',
      `${CA}${issuer('', '"spiffe://{trust_domain}/ci/{sub"')}`,
      /unbalanced "\{"/,
    ],
    [
      'a template that is no SPIFFE ID',
      `${CA}${issuer('', '"spiffe://{trust_domain}/ci//{sub}"')}`,
      /does not give a SPIFFE ID/,
    ],
    [
      'plain http off loopback',
      `${CA}  oidc:\n    - { name: x, issuer: "http://issuer.example.com", audience: a, spiffe_id: "spiffe://{trust_domain}/x/{sub}" }\n`,
      /identity\.oidc\[0\]\.issuer: http:\/\/issuer\.example\.com: plain http is only accepted on loopback/,
    ],
    ['alg none', `${CA}${issuer('      algorithms: [none]\n')}`, /identity\.oidc\[0\]\.algorithms\[0\]/],
    ['HS256', `${CA}${issuer('      algorithms: [HS256]\n')}`, /identity\.oidc\[0\]\.algorithms\[0\]/],
    [
      'a name used twice',
      `${CA}${issuer()}    - { name: github, issuer: "https://gitlab.com", audience: a, spiffe_id: "spiffe://{trust_domain}/x/{sub}" }\n`,
      /identity\.oidc\[1\]\.name: issuer name github is already used \(oidc\[0\]\)/,
    ],
    [
      'jwks_file and jwks_uri together',
      `${CA}${issuer('      jwks_file: k.json\n      jwks_uri: https://x.example/jwks\n')}`,
      /identity\.oidc\[0\]\.jwks_uri: set jwks_file or jwks_uri, not both/,
    ],
    [
      'an unknown principal field',
      `${CA}${issuer('      actor: { claim: actor, principal_field: slack }\n')}`,
      /identity\.oidc\[0\]\.actor\.principal_field/,
    ],
    [
      'an SVID TTL over a day',
      `${CA}${issuer('      svid_ttl: 48h\n')}`,
      /identity\.oidc\[0\]\.svid_ttl: duration 48h is out of range/,
    ],
  ];
  for (const [name, identity, message] of refused) {
    it(`refuses ${name}`, () => assert.match(problem(identity), message));
  }
});

describe('SPIFFE IDs from claims', () => {
  const template = 'spiffe://{trust_domain}/github/{repository}/{environment}';
  it('escapes every value into its own segment, injectively', () => {
    assert.equal(
      renderSpiffeId(template, 'example.org', { repository: 'my-org/app', environment: 'prod' }),
      'spiffe://example.org/github/my-org_2Fapp/prod',
    );
    assert.notEqual(escapeSegmentValue('x', 'a/b'), escapeSegmentValue('x', 'a_2Fb'));
    assert.equal(escapeSegmentValue('x', 'a_2Fb'), 'a_5F2Fb');
    assert.equal(
      renderSpiffeId('spiffe://{trust_domain}/k8s/{kubernetes.io.namespace}', 'example.org', {
        'kubernetes.io': { namespace: 'pay' },
      }),
      'spiffe://example.org/k8s/pay',
    );
  });
  for (const value of [
    '..',
    '.',
    '',
    '../../human/alice',
    'a/../b',
    'x/spiffe://evil.org/y',
    'a//b',
    'a\nb',
    '%2e%2e',
    'a\\b',
  ]) {
    it(`refuses the claim value ${JSON.stringify(value)}`, () => {
      assert.throws(
        () => renderSpiffeId(template, 'example.org', { repository: 'my-org/app', environment: value }),
        (e: Error & { code?: string }) => e.code === 'ERR_OIDC_CLAIM_UNSAFE',
      );
    });
  }
  it('refuses a missing or non-string claim', () => {
    for (const environment of [undefined, ['a'], { a: 1 }, true]) {
      assert.throws(
        () => renderSpiffeId(template, 'example.org', { repository: 'r', environment }),
        (e: Error & { code?: string }) => e.code === 'ERR_OIDC_CLAIM_UNSAFE',
      );
    }
  });
  it('checks require by equality, one of a list', () => {
    assert.equal(requireProblem({ repository_owner: 'my-org' }, { repository_owner: 'my-org' }), undefined);
    assert.match(
      requireProblem({ repository_owner: 'my-org' }, { repository_owner: 'evil' }) ?? '',
      /claim repository_owner is "evil"; the issuer requires "my-org"/,
    );
    assert.equal(
      requireProblem({ ref: ['refs/heads/main', 'refs/heads/release'] }, { ref: 'refs/heads/release' }),
      undefined,
    );
    assert.match(requireProblem({ ref_protected: 'true' }, {}) ?? '', /claim ref_protected is missing/);
  });
  it('names the run page for approvers: github.com, GitHub Enterprise Server, GitLab; nothing for other issuers', () => {
    assert.equal(
      runUrl({ iss: 'https://token.actions.githubusercontent.com', repository: 'o/r', run_id: '7' }),
      'https://github.com/o/r/actions/runs/7',
    );
    assert.equal(
      runUrl({ iss: 'https://ghe.example.com/_services/token', repository: 'o/r', run_id: '7' }),
      'https://ghe.example.com/o/r/actions/runs/7',
    );
    assert.equal(
      runUrl({ iss: 'https://gitlab.com', project_path: 'g/p', pipeline_id: '9' }),
      'https://gitlab.com/g/p/-/pipelines/9',
    );
    assert.equal(runUrl({ iss: 'https://evil.example', repository: 'o/r', run_id: '7' }), undefined);
    assert.equal(runUrl({ iss: 'https://kubernetes.default.svc', sub: 'system:serviceaccount:a:b' }), undefined);
  });
  it("lets a policy's own tests give the caller an exchanged token's claims (workload.issuer, workload.claims)", () => {
    const p = Policy.parse(
      `version: 1
rules:
  - name: prod-from-main
    match: { workload: "spiffe://example.org/github/**", operation: deploy, resource: "prod/*" }
    when: workload.issuer == "github" && workload.claims.ref == "refs/heads/main" && workload.claims.event_name != "pull_request"
    decision: allow
tests:
  - name: main
    input: { workload: "spiffe://example.org/github/o_2Fr/prod", operation: deploy, resource: prod/web, oidc_issuer: github, claims: { ref: refs/heads/main, event_name: push } }
    expect: { decision: allow, rule: prod-from-main }
  - name: a pull request
    input: { workload: "spiffe://example.org/github/o_2Fr/prod", operation: deploy, resource: prod/web, oidc_issuer: github, claims: { ref: refs/heads/main, event_name: pull_request } }
    expect: { decision: deny }
  - name: an SVID from SPIRE has no claims
    input: { workload: "spiffe://example.org/github/o_2Fr/prod", operation: deploy, resource: prod/web }
    expect: { decision: deny }
`,
      'p.yaml',
      { principals: Principals.empty() },
    );
    assert.deepEqual(
      runPolicyTests(p, Date.now()).map((r) => [r.name, r.passed, r.failures]),
      [
        ['main', true, []],
        ['a pull request', true, []],
        ['an SVID from SPIRE has no claims', true, []],
      ],
    );
  });
  it('policy explain takes the token issuer and claims (--oidc-issuer, --claim)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'countersign-explain-'));
    try {
      const file = join(dir, 'policy.yaml');
      await writeFile(
        file,
        'version: 1\nrules:\n  - name: main\n    match: { workload: "spiffe://example.org/github/**", operation: deploy, resource: "prod/*" }\n    when: workload.issuer == "github" && workload.claims.ref == "refs/heads/main" && workload.claims.run_attempt == 1\n    decision: allow\n',
      );
      const explain = async (claims: string[]) => {
        const lines: string[] = [];
        const io = { out: (l: string) => void lines.push(l), err: (l: string) => void lines.push(l) };
        const base = {
          policy: file,
          workload: 'spiffe://example.org/github/o/prod',
          operation: 'deploy',
          resource: 'prod/web',
          param: [],
          svidAge: '1m',
          svidRemaining: '1h',
          requestRate: '1',
        };
        await runPolicyExplain({ ...base, oidcIssuer: 'github', claim: claims }, io);
        return lines.join('\n');
      };
      assert.match(await explain(['ref=refs/heads/main', 'run_attempt:=1']), /^decision {2}allow \(rule main\)/);
      assert.match(await explain(['ref=refs/heads/dev', 'run_attempt:=1']), /^decision {2}deny/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
