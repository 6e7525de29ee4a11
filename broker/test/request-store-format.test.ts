// The compact stored form of a pending request (store.ts, docs/approvals.md "Storage"):
// every field reads back as written, no value is longer than a listpack allows, and
// hashes written in the earlier format (long field names) still read.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromFields, listpackPieces, toFields, type StoredRequest } from '../src/requests/store.js';

const base: StoredRequest = {
  id: 'req_0123456789abcdef',
  state: 'PENDING_APPROVAL',
  version: 1,
  requester: 'spiffe://example.org/ci/deployer',
  requesterTrustDomain: 'example.org',
  certificateThumbprint: 'x'.repeat(43),
  svidNotAfter: 1_800_000_000_000,
  operation: 'deploy',
  resource: 'prod/web',
  parametersJson: JSON.stringify({
    image: `registry.example.org/web@sha256:${'ab'.repeat(32)}`,
    note: 'é'.repeat(70),
    emoji: '✓😀'.repeat(20),
  }),
  parametersDigest: 'd'.repeat(43),
  reason: '',
  onBehalfOf: '',
  ticket: '',
  audience: 'https://deploy.example.org',
  requestedTtlMs: undefined,
  ttlCapMs: undefined,
  rule: 'prod',
  rules: ['prod'],
  policyDigest: `sha256:${'0f'.repeat(32)}`,
  approvers: ['alice', 'bob'],
  groups: [],
  approvalsRequired: 1,
  denyThreshold: 1,
  allowSelfApproval: false,
  stepUp: 'click',
  stepUpMaxAgeMs: undefined,
  notify: { slackChannels: [], directMessages: false },
  approvals: 0,
  denials: 0,
  createdAt: 1_700_000_000_000,
  expiresAt: 1_700_000_900_000,
  resolvedAt: undefined,
  resolutionMessage: '',
};

describe('stored request format', () => {
  it('reads back every field, defaults and non-defaults alike', () => {
    const full: StoredRequest = {
      ...base,
      state: 'APPROVED',
      version: 3,
      requesterTrustDomain: 'other.org',
      reason: 'release',
      onBehalfOf: 'carol@example.org',
      ticket: 'CHG-1',
      requestedTtlMs: 60_000,
      ttlCapMs: 300_000,
      rules: ['prod', 'prod-2'],
      policyDigest: 'custom-digest',
      groups: ['sre'],
      denyThreshold: 2,
      allowSelfApproval: true,
      stepUp: 'webauthn',
      stepUpMaxAgeMs: 120_000,
      notify: { slackChannels: ['#deploys'], directMessages: true },
      approvals: 1,
      denials: 1,
      resolvedAt: 1_700_000_100_000,
      resolutionMessage: 'approved by alice (cli)',
      // An exchanged SVID's claims (issue 18), longer than one listpack value.
      workloadClaims: {
        issuer: 'github',
        claims: {
          repository: 'my-org/payments',
          ref: 'refs/heads/main',
          run: 'https://github.com/my-org/payments/actions/runs/42',
          actor: 'bob',
        },
      },
    };
    for (const r of [base, full]) assert.deepEqual(fromFields(r.id, toFields(r)), r);
    for (const [name, value] of Object.entries(toFields(full)))
      assert.ok(Buffer.byteLength(value) <= 64, `${name} is ${Buffer.byteLength(value)} bytes`);
  });

  it('keeps every value within 64 bytes, and the field names short', () => {
    const fields = toFields(base);
    for (const [name, value] of Object.entries(fields))
      assert.ok(Buffer.byteLength(value) <= 64, `${name} is ${Buffer.byteLength(value)} bytes`);
    assert.ok(Object.keys(fields).length < 30);
  });

  it('cuts text into pieces of at most 64 bytes without splitting a character', () => {
    for (const text of ['', 'a'.repeat(64), 'a'.repeat(65), 'é'.repeat(40), '😀'.repeat(17), `a${'😀'.repeat(16)}`]) {
      const pieces = listpackPieces(text);
      assert.equal(pieces.join(''), text);
      for (const p of pieces) assert.ok(Buffer.byteLength(p) <= 64 && !/[\uD800-\uDBFF]$/.test(p));
    }
  });

  it('reads a hash written with the earlier long field names', () => {
    const legacy: Record<string, string> = {
      id: base.id,
      state: 'PENDING_APPROVAL',
      version: '1',
      requester: base.requester,
      requester_trust_domain: 'example.org',
      certificate_thumbprint: base.certificateThumbprint,
      svid_not_after: String(base.svidNotAfter),
      operation: 'deploy',
      resource: 'prod/web',
      parameters_json: base.parametersJson,
      parameters_digest: base.parametersDigest,
      reason: '',
      on_behalf_of: '',
      ticket: '',
      audience: base.audience,
      requested_ttl_ms: '',
      ttl_cap_ms: '',
      rule: 'prod',
      rules: '["prod"]',
      policy_digest: base.policyDigest,
      approvers: '["alice","bob"]',
      groups: '[]',
      approvals_required: '1',
      deny_threshold: '1',
      allow_self_approval: '0',
      step_up: 'click',
      step_up_max_age_ms: '',
      notify: JSON.stringify(base.notify),
      approvals: '0',
      denials: '0',
      created_at: String(base.createdAt),
      expires_at: String(base.expiresAt),
      resolved_at: '',
      resolution_message: '',
    };
    assert.deepEqual(fromFields(base.id, legacy), base);
  });
});
