// The approver console's pure parts: how request text is rendered (escaped,
// deceptive characters made visible), the parameter diff, the challenge
// derivation (a fixed vector: offline verification of old records depends on
// it), the console configuration, and step-up webauthn in policy.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { passkeyChallenge } from '../src/audit/passkey-assertion.js';
import { parseConfig } from '../src/config/config.js';
import { YamlValidationError } from '../src/config/yaml-file.js';
import { html, visible } from '../src/console/html.js';
import { diffParameters, prettyLines } from '../src/console/parameters.js';
import { Policy } from '../src/policy/policy.js';

const BASE = `trust_domain: example.org
identity:
  svid: { cert_file: a.pem, key_file: a-key.pem }
  bundles: [{ trust_domain: example.org, file: ca.pem }]
policy: { file: policy.yaml }
credentials:
  default_audience: https://deploy.example.org
  signing_keys: [{ file: k.pem }]
`;

function configProblems(consoleSection: string): string[] {
  try {
    parseConfig(`${BASE}console:\n${consoleSection}`, 'config.yaml');
  } catch (e) {
    assert.ok(e instanceof YamlValidationError, String(e));
    return e.message.split('\n');
  }
  return [];
}

describe('console rendering', () => {
  it('escapes markup and shows bidi overrides, zero-width and other invisible characters as named markers', () => {
    assert.equal(html`<p>${'<script>alert(1)</script>'}</p>`.markup, '<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>');
    assert.equal(html`<a title="${'" onmouseover="x'}">`.markup, '<a title="&quot; onmouseover=&quot;x">');
    const shown = visible('prod/\u202Esredro \u200B\u2066x\u00A0y\uFEFF').markup;
    for (const cp of ['U+202E', 'U+200B', 'U+2066', 'U+00A0', 'U+FEFF'])
      assert.ok(shown.includes(`⟦${cp}⟧`), `${cp} in ${shown}`);
    assert.ok(!/[\u202E\u200B\u2066\u00A0\uFEFF]/.test(shown), 'none of them is left to act');
    assert.match(shown, /title="U\+202E RIGHT-TO-LEFT OVERRIDE"/);
    assert.equal(
      visible('two\nlines\tand a tab').markup,
      'two\nlines<span class="cs-invisible" title="U+0009">⟦U+0009⟧</span>and a tab',
    );
    assert.equal(visible('plain ascii, ünïcödé, 日本').markup, 'plain ascii, ünïcödé, 日本');
  });

  it('pretty-prints parameters and diffs them leaf by leaf against the last approval', () => {
    assert.deepEqual(prettyLines('{"a":1,"b":["x"]}'), ['{', '  "a": 1,', '  "b": [', '    "x"', '  ]', '}']);
    const { changes } = diffParameters(
      '{"version":"1.4.1","replicas":3,"old":true,"images":[{"tag":"a"}]}',
      '{"version":"1.4.2","replicas":3,"new":1,"images":[{"tag":"b"}]}',
    );
    assert.deepEqual(
      changes.map((c) => [c.path, c.kind, c.before, c.after]),
      [
        ['images[0].tag', 'changed', '"a"', '"b"'],
        ['new', 'added', undefined, '1'],
        ['old', 'removed', 'true', undefined],
        ['version', 'changed', '"1.4.1"', '"1.4.2"'],
      ],
    );
    assert.deepEqual(
      diffParameters('{"a b":1}', '{"a b":2}').changes.map((c) => c.path),
      ['"a b"'],
    );
  });
});

describe('passkey challenge derivation', () => {
  it('is base64url SHA-256 of the RFC 8785 JSON of its input (fixed vector)', () => {
    // Written out by hand in RFC 8785 order, so the check does not depend on the canonicalizer under test.
    const jcs =
      '{"decision":"approve","nonce":"bm9uY2U","parameters_digest":"n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg","purpose":"vote","request_id":"req_AbCdEfGhIjKlMnOp","v":1}';
    const expected = createHash('sha256').update(jcs).digest('base64url');
    assert.equal(
      passkeyChallenge({
        v: 1,
        purpose: 'vote',
        request_id: 'req_AbCdEfGhIjKlMnOp',
        decision: 'approve',
        parameters_digest: 'n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg',
        nonce: 'bm9uY2U',
      }),
      expected,
    );
    assert.equal(expected, 'sUQddGk10aEe-Vyx86bos0ORnGa0FsVl_br3tXwXrtU', 'the pinned vector');
    // Any field changes the challenge.
    const base = {
      v: 1,
      purpose: 'vote',
      request_id: 'req_a',
      decision: 'approve',
      parameters_digest: 'd',
      nonce: 'n',
    } as const;
    const seen = new Set([
      passkeyChallenge(base),
      passkeyChallenge({ ...base, request_id: 'req_b' }),
      passkeyChallenge({ ...base, decision: 'deny' }),
      passkeyChallenge({ ...base, parameters_digest: 'e' }),
      passkeyChallenge({ ...base, nonce: 'm' }),
    ]);
    assert.equal(seen.size, 5);
  });
});

describe('console configuration', () => {
  it('needs a host name browsers allow passkeys on, https unless localhost, and nothing after the port', () => {
    assert.deepEqual(configProblems('  enabled: true\n  public_url: https://approve.example.com\n'), []);
    assert.deepEqual(
      configProblems('  enabled: true\n  listen: 127.0.0.1:8090\n'),
      [],
      'loopback: http://localhost:<port>',
    );
    assert.match(
      configProblems('  enabled: true\n  public_url: http://127.0.0.1:8090\n').join('\n'),
      /127\.0\.0\.1 is an IP address: browsers refuse passkeys/,
    );
    assert.match(
      configProblems('  enabled: true\n  public_url: http://approve.example.com\n').join('\n'),
      /plain http only works on localhost; use https/,
    );
    assert.match(
      configProblems('  enabled: true\n  public_url: https://example.com/console\n').join('\n'),
      /scheme, host and port only/,
    );
    assert.match(configProblems('  enabled: true\n').join('\n'), /console\.public_url is required/);
    assert.match(
      configProblems('  enabled: true\n  public_url: https://a.example\n  session: { idle_timeout: 10s }\n').join('\n'),
      /out of range/,
    );
    assert.match(
      configProblems(
        '  enabled: true\n  public_url: https://a.example\n  oidc: { issuer: https://idp.example, client_id: c, claim: name }\n',
      ).join('\n'),
      /console\.oidc\.claim/,
    );
    assert.match(
      configProblems('  enabled: true\n  publik_url: https://a.example\n').join('\n'),
      /did you mean "public_url"/,
    );
  });
});

describe('step-up webauthn in policy', () => {
  const parse = (approval: string) =>
    Policy.parse(
      `version: 1\nrules:\n  - name: r\n    match: { operation: db-migrate }\n    decision: approve\n    approval: { approvers: [alice], ${approval} }\n`,
      'policy.yaml',
    );

  it('accepts step_up webauthn, with step_up_max_age only there', () => {
    assert.equal(parse('step_up: webauthn').document.rules[0]?.approval?.step_up, 'webauthn');
    assert.equal(parse('step_up: webauthn, step_up_max_age: 5m').document.rules[0]?.approval?.step_up_max_age, 300_000);
    assert.throws(
      () => parse('step_up: confirm, step_up_max_age: 5m'),
      (e: unknown) =>
        e instanceof YamlValidationError &&
        /rule r: approval\.step_up_max_age: step_up_max_age applies to step_up webauthn, not confirm/.test(e.message),
    );
    assert.throws(
      () => parse('step_up: passkey'),
      (e: unknown) => e instanceof YamlValidationError && /expected one of click, confirm, webauthn/.test(e.message),
    );
  });

  it('combines rules into the strongest step-up, per vote unless every webauthn rule accepts a recent sign-in', () => {
    const policy = Policy.parse(
      `version: 1
rules:
  - { name: a, match: { operation: x }, decision: approve, approval: { approvers: [alice], step_up: confirm } }
  - { name: b, match: { operation: x }, decision: approve, approval: { approvers: [alice], step_up: webauthn, step_up_max_age: 10m } }
  - { name: c, match: { operation: x, resource: "r/*" }, decision: approve, approval: { approvers: [alice], step_up: webauthn, step_up_max_age: 2m } }
  - { name: d, match: { operation: x, resource: "s/*" }, decision: approve, approval: { approvers: [alice], step_up: webauthn } }
`,
      'policy.yaml',
    );
    const decide = (resource: string) => {
      const d = policy.evaluate({
        workload: {
          spiffeId: 'spiffe://example.org/w',
          trustDomain: 'example.org',
          path: '/w',
          notBefore: 0,
          notAfter: Date.now() + 3600_000,
          serial: '1',
        },
        operation: 'x',
        resource,
        parameters: {},
        reason: '',
        ticket: '',
        onBehalfOf: '',
        now: Date.now(),
      });
      assert.equal(d.effect, 'approve');
      return d.effect === 'approve' ? [d.approval.stepUp, d.approval.stepUpMaxAgeMs] : [];
    };
    assert.deepEqual(decide('q/1'), ['webauthn', 600_000]);
    assert.deepEqual(decide('r/1'), ['webauthn', 120_000]);
    assert.deepEqual(decide('s/1'), ['webauthn', undefined]);
  });
});
