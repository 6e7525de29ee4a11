// One spelling per person (issue 14, finding 2): normalizePrincipalName folds
// every spelling of a name to its canonical form (NFKC, trim, lower case) and
// refuses what has none, and the principals file, the policy and its tests use
// the same rule, so separation of duties cannot be talked around.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { YamlValidationError } from '../src/config/yaml-file.js';
import { devPolicy } from '../src/dev/trust-domain.js';
import { Policy } from '../src/policy/policy.js';
import { runPolicyTests } from '../src/policy/policy-tests.js';
import { canonicalPrincipalName, normalizePrincipalName } from '../src/policy/principal-name.js';
import { Principals } from '../src/policy/principals.js';
import type { PolicyInput } from '../src/policy/decision.js';

/** input -> canonical form */
const FOLDED: [string, string][] = [
  ['alice', 'alice'],
  ['Alice', 'alice'],
  ['ALICE', 'alice'],
  ['alice ', 'alice'],
  [' alice', 'alice'],
  ['\talice\n', 'alice'],
  ['alice\u00a0', 'alice'], // no-break space
  ['\u3000alice', 'alice'], // ideographic space
  ['\uff21\uff4c\uff49\uff43\uff45', 'alice'], // fullwidth "Ａｌｉｃｅ"
  ['\u212aate', 'kate'], // KELVIN SIGN: NFKC makes it K
  ['alice.smith', 'alice.smith'],
  ['svc_deploy+ci-1', 'svc_deploy+ci-1'],
  ['Alice@Example.ORG', 'alice@example.org'],
  ['first.last+tag@sub.example.co.uk', 'first.last+tag@sub.example.co.uk'],
  ['bob@xn--bcher-kva.example', 'bob@xn--bcher-kva.example'],
  ['x'.repeat(128), 'x'.repeat(128)],
];

/** input -> words the refusal must contain */
const REFUSED: [string, RegExp][] = [
  ['', /is empty/],
  ['   ', /is empty/],
  ['\u0430lice', /non-ASCII letter "\u0430" \(U\+0430\) at position 1/], // Cyrillic а
  ['alic\u0435', /U\+0435/], // Cyrillic е at the end
  ['\u0391lice', /U\+03B1/], // Greek Alpha (named as folded: α)
  ['alice\u200b', /U\+200B/], // zero-width space
  ['al\u00adice', /U\+00AD/], // soft hyphen
  ['al ice', /a space \(U\+0020\) at position 3/],
  ['alice\u0000', /U\+0000/],
  ['alice\u202e', /U\+202E/], // right-to-left override
  ['ali\u0307ce', /U\+0307/], // combining dot
  ['\u0130lice', /U\+0307/], // İ lower-cases to i + combining dot
  ['stra\u00dfe', /U\+00DF/], // ß: not ASCII, not guessed at
  ['.alice', /is not a principal name/],
  ['alice!', /is not a principal name/],
  ['x'.repeat(129), /is not a principal name/],
  ['a'.repeat(321), /is 321 characters long, at most 320/],
  ['alice@', /e-mail domain/],
  ['@example.org', /e-mail local part/],
  ['a@b@c', /e-mail domain/],
  ['a..b@example.org', /e-mail local part/],
  ["o'brien@example.org", /e-mail local part/],
  ['alice@-example.org', /e-mail domain/],
  ['alice@b\u00fccher.example', /U\+00FC/], // an IDN must be given as xn--
  [`${'a'.repeat(65)}@example.org`, /e-mail local part/],
];

describe('normalizePrincipalName', () => {
  for (const [raw, canonical] of FOLDED) {
    it(`folds ${JSON.stringify(raw)} to ${JSON.stringify(canonical)}`, () => {
      assert.equal(normalizePrincipalName(raw, 'on_behalf_of'), canonical);
      assert.equal(canonicalPrincipalName(raw), canonical);
      // Canonical forms are fixed points.
      assert.equal(normalizePrincipalName(canonical, 'on_behalf_of'), canonical);
    });
  }
  for (const [raw, why] of REFUSED) {
    it(`refuses ${JSON.stringify(raw.length > 40 ? `${raw.slice(0, 40)}...` : raw)} naming the field and the value`, () => {
      assert.throws(
        () => normalizePrincipalName(raw, 'on_behalf_of'),
        (e: Error & { code?: string; kind?: string; details?: Record<string, unknown> }) => {
          assert.equal(e.code, 'ERR_PRINCIPAL_NAME_INVALID');
          assert.equal(e.kind, 'invalid_argument');
          assert.equal(e.details?.field, 'on_behalf_of');
          assert.match(e.message, /^on_behalf_of: "/);
          assert.match(e.message, why);
          assert.match(e.message, /expected a principal name .* or an e-mail address/);
          return true;
        },
      );
      assert.equal(canonicalPrincipalName(raw), undefined);
    });
  }
});

const PRINCIPALS = `version: 1
principals:
  - { name: Alice, email: Alice@Example.ORG, spiffe_ids: [spiffe://example.org/human/alice] }
  - { name: " bob ", email: bob@example.org }
  - { name: carol }
groups:
  - { name: SRE, members: [BOB, carol] }
`;

describe('the principals file, policy and policy tests use the same rule', () => {
  const principals = Principals.parse(PRINCIPALS, 'principals.yaml');

  it('stores names, addresses and group members in canonical form; lookups take any spelling', async () => {
    assert.deepEqual(principals.principalNames(), ['alice', 'bob', 'carol']);
    assert.equal(principals.byName('ALICE ')?.name, 'alice');
    assert.equal(principals.byName('\uff41lice')?.name, 'alice');
    assert.equal(principals.byName('\u0430lice'), undefined);
    assert.equal(principals.byEmail(' alice@example.org')?.name, 'alice');
    assert.deepEqual(await principals.groupMembers('sre'), ['bob', 'carol']);
    assert.equal(principals.hasGroup('Sre'), true);
  });

  const fileProblems = (text: string): string[] => {
    try {
      Principals.parse(text, 'principals.yaml');
    } catch (e) {
      assert.ok(e instanceof YamlValidationError, String(e));
      assert.equal(e.code, 'ERR_PRINCIPALS_INVALID');
      return e.message.split('\n');
    }
    return assert.fail('the principals file was accepted');
  };

  it('refuses names and addresses without a canonical form, and two spellings of one name, with file:line', () => {
    assert.deepEqual(fileProblems('version: 1\nprincipals:\n  - { name: "\u0430lice" }\n'), [
      'principals.yaml:3:13: principals[0].name: "\u0430lice" has the non-ASCII letter "\u0430" (U+0430) at position 1; expected a principal name (1-128 of a-z 0-9 . _ + -, starting with a letter or digit) or an e-mail address (ASCII; an international domain in its xn-- form)',
    ]);
    const problems = fileProblems(
      'version: 1\nprincipals:\n  - { name: dave, email: "dave@b\u00fccher.example" }\n  - { name: erin, email: erin }\n',
    );
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(
      problems[0] ?? '',
      /^principals\.yaml:3:26: principals\[0\]\.email: "dave@b\u00fccher\.example" has the non-ASCII letter "\u00fc" \(U\+00FC\)/,
    );
    assert.match(problems[1] ?? '', /^principals\.yaml:4:26: principals\[1\]\.email: "erin" is not an e-mail address$/);
    assert.deepEqual(
      fileProblems(
        'version: 1\nprincipals:\n  - { name: alice, email: a@example.org }\n  - { name: Alice }\n  - { name: bob, email: A@EXAMPLE.ORG }\n',
      ),
      [
        'principals.yaml:4:13: principals[1].name: principal name "alice" is already used by entry 0',
        'principals.yaml:5:25: principals[2].email: email "a@example.org" is already used by entry 0',
      ],
    );
  });

  it('refuses a principal name that is another principal’s e-mail address (it would name two people)', () => {
    const problems = fileProblems(
      'version: 1\nprincipals:\n  - { name: alice, email: boss@example.org }\n  - { name: boss@example.org }\n',
    );
    assert.deepEqual(problems, [
      'principals.yaml:4:13: principals[1].name: principal name "boss@example.org" is the e-mail address of entry 0: it would name two people',
    ]);
  });

  const input = (onBehalfOf: string): PolicyInput => ({
    workload: {
      spiffeId: 'spiffe://example.org/ci/deployer',
      trustDomain: 'example.org',
      path: '/ci/deployer',
      notBefore: 0,
      notAfter: Date.UTC(2027, 0, 1),
      serial: '01',
    },
    operation: 'deploy',
    resource: 'prod/web',
    parameters: {},
    reason: '',
    ticket: '',
    onBehalfOf,
    now: Date.UTC(2026, 0, 1),
  });

  it('folds approver names and on_behalf_of patterns in the policy, and on_behalf_of in its test cases', () => {
    const policy = Policy.parse(
      `version: 1
rules:
  - name: for-alice
    match: { operation: deploy, on_behalf_of: [" Alice", "*@EXAMPLE.ORG"] }
    decision: approve
    approval: { approvers: [BOB, Carol], groups: [Sre], required: 1 }
tests:
  - name: Alice in capitals is alice
    input: { workload: spiffe://example.org/ci/deployer, operation: deploy, resource: prod/web, on_behalf_of: "ALICE " }
    expect: { decision: approve, rule: for-alice }
`,
      'policy.yaml',
      { principals },
    );
    const decided = policy.evaluate(input('alice'));
    assert.equal(decided.effect, 'approve');
    assert.deepEqual(decided.effect === 'approve' ? [decided.approval.approvers, decided.approval.groups] : [], [
      ['bob', 'carol'],
      ['sre'],
    ]);
    assert.equal(policy.evaluate(input('bob@example.org')).effect, 'approve');
    assert.equal(policy.evaluate(input('mallory')).effect, 'deny');
    assert.deepEqual(
      runPolicyTests(policy, Date.UTC(2026, 0, 1)).map((r) => [r.name, r.passed, r.failures]),
      [['Alice in capitals is alice', true, []]],
    );
  });

  it('refuses an on_behalf_of pattern or test input that can match no canonical name, with file:line', () => {
    assert.throws(
      () =>
        Policy.parse(
          `version: 1\nrules:\n  - { name: r, match: { on_behalf_of: "\u0430lice" }, decision: deny }\n`,
          'policy.yaml',
          { principals },
        ),
      (e: Error) =>
        /^policy\.yaml:3:\d+: rule r: match\.on_behalf_of: bad on_behalf_of pattern "\u0430lice": can only match a principal name/.test(
          e.message,
        ),
    );
    assert.throws(
      () =>
        Policy.parse(
          `version: 1\nrules:\n  - { name: r, match: { operation: deploy }, decision: deny }\ntests:\n  - { name: t, input: { workload: spiffe://example.org/ci/x, operation: deploy, resource: r, on_behalf_of: "al ice" }, expect: { decision: deny } }\n`,
          'policy.yaml',
          { principals },
        ),
      (e: Error) => /^policy\.yaml:5:\d+: tests\[0\]\.input\.on_behalf_of: "al ice" has a space/.test(e.message),
    );
  });

  it('the dev policy still loads', () => {
    Policy.parse(devPolicy('example.org'), 'policy.yaml', {});
  });
});
