import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  APPROVE_ACTION_ID,
  buildBreakGlassNotice,
  buildOutcomeNotice,
  buildRequestCard,
  buildVoteReply,
  CONSOLE_SIGN_IN_ACTION_ID,
  DENY_ACTION_ID,
  OPEN_CONSOLE_ACTION_ID,
} from '../../src/slack/card.js';
import type { BreakGlassNotice } from '../../src/port.js';
import { buildConfirmModal, buildDenyModal } from '../../src/slack/modals.js';
import { validateBlocks, validateModal } from '../support/block-kit.js';
import { sampleRequest } from '../support/sample-request.js';

type Block = Record<string, unknown>;
/** Every text a person can see in the blocks, in order; only mrkdwn ones when asked (plain_text is never parsed for markup). */
function texts(value: unknown, onlyMrkdwn = false): string[] {
  if (Array.isArray(value)) return value.flatMap((v) => texts(v, onlyMrkdwn));
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    const own = typeof o.text === 'string' && (!onlyMrkdwn || o.type === 'mrkdwn') ? [o.text] : [];
    return [
      ...own,
      ...Object.entries(o)
        .filter(([k]) => k !== 'text' || typeof o.text !== 'string')
        .flatMap(([, v]) => texts(v, onlyMrkdwn)),
    ];
  }
  return [];
}
const all = (blocks: unknown[]) => texts(blocks).join('\n');
const markup = (blocks: unknown[]) => texts(blocks, true).join('\n');
const buttons = (card: unknown[]) =>
  (card as Block[])
    .filter((b) => b.type === 'actions')
    .flatMap((b) => b.elements as { action_id: string; value: string }[]);

describe('the Slack request card', () => {
  it('shows who asks, for whom, what, on what, why, under which rule, how many approvals, until when', () => {
    const r = sampleRequest({ onBehalfOf: 'carol@example.org' });
    const card = buildRequestCard(r);
    assert.deepEqual(validateBlocks(card.blocks, 'message'), []);
    const text = all(card.blocks);
    for (const expected of [
      'spiffe://example.org/ci/deployer',
      'carol@example.org',
      '`deploy`',
      '`prod/payments`',
      'release 1.4.2',
      'CHG-1234',
      '`prod-deploys`',
      '0 of 2 given',
      `<!date^${r.expiresAt / 1000}^`,
      r.parametersDigest,
      r.id,
      '"version": "1.4.2"',
      '"replicas": 3',
    ]) {
      assert.ok(text.includes(expected), `card shows ${expected}`);
    }
    assert.deepEqual(
      buttons(card.blocks).map((b) => [b.action_id, b.value]),
      [
        [APPROVE_ACTION_ID, r.id],
        [DENY_ACTION_ID, r.id],
      ],
    );
    assert.match(card.text, /Approval needed: deploy prod\/payments/);
  });

  it('escapes everything the requester controls: no mentions, no disguised links', () => {
    const r = sampleRequest({
      reason: 'urgent <!channel> see <https://evil.example|prod/payments> & more',
      resource: 'prod/<!here>',
      parametersJson: '{"note":"<@U0ALICE> ```` break out"}',
      ticket: '<https://x|CHG-1>',
    });
    const card = buildRequestCard(r);
    const text = markup(card.blocks);
    assert.doesNotMatch(text, /<!channel>|<!here>|<https:\/\/evil|<@U0ALICE>|<https:\/\/x/);
    assert.ok(text.includes('&lt;!channel&gt;'));
    // Only the card's own <!date^...> is Slack markup.
    assert.deepEqual(
      (text.match(/<[^&]/g) ?? []).filter((m) => m !== '<!'),
      [],
    );
    const code =
      (card.blocks as unknown as Block[])
        .map((b) => (b.text as { text?: string } | undefined)?.text ?? '')
        .find((t) => t.includes('*Parameters*')) ?? '';
    assert.equal(code.split('```').length - 1, 2, 'a value cannot close the code block');
    assert.doesNotMatch(card.text, /<!here>/);
  });

  it('stays inside Slack limits for the largest requests, always showing the digest and saying what is left out', () => {
    const big: Record<string, string> = {};
    for (let i = 0; i < 400; i += 1) big[`key_${String(i).padStart(3, '0')}`] = `value-${i}-${'x'.repeat(120)}`;
    // Canonical JSON has its keys sorted: the long value comes first.
    const parametersJson = JSON.stringify({ a_script: 'y'.repeat(20_000), ...big });
    const r = sampleRequest({
      parametersJson,
      resource: `prod/${'r'.repeat(500)}`,
      operation: 'o'.repeat(128),
      reason: 'z'.repeat(4000),
      requester: `spiffe://example.org/${'p'.repeat(1900)}`,
      votes: Array.from({ length: 32 }, (_, i) => ({
        principal: `approver-${i}`,
        decision: 'approve' as const,
        channel: 'slack',
        at: Date.UTC(2026, 0, 1, 12, 1),
        stepUp: 'confirm' as const,
        reason: 'w'.repeat(2000),
      })),
      approvalsRequired: 32,
    });
    const card = buildRequestCard(r);
    assert.deepEqual(validateBlocks(card.blocks, 'message'), []);
    assert.ok(card.blocks.length <= 50);
    const text = all(card.blocks);
    assert.ok(text.includes(r.parametersDigest));
    assert.match(
      text,
      /Parameters shortened for Slack\* \(1 long value\(s\) cut, \d+ line\(s\) left out; \d+ characters in full\)/,
    );
    assert.match(text, /\[\+19600 characters not shown\]/);
    assert.ok(card.text.length <= 3000);
  });

  it('on a passkey rule, Approve is a link to the console page (with Sign in to approve); Deny stays', () => {
    const url = 'https://approve.example.com/requests/req_AbCdEfGhIjKlMnOp';
    const card = buildRequestCard(sampleRequest({ stepUp: 'webauthn', consoleUrl: url }));
    assert.deepEqual(validateBlocks(card.blocks, 'message'), []);
    const found = buttons(card.blocks) as { action_id: string; url?: string }[];
    assert.deepEqual(
      found.map((b) => b.action_id),
      [OPEN_CONSOLE_ACTION_ID, CONSOLE_SIGN_IN_ACTION_ID, DENY_ACTION_ID],
    );
    assert.equal(found[0]?.url, url);
    assert.ok(!found.some((b) => b.action_id === APPROVE_ACTION_ID), 'no approve-by-click');
    assert.match(all(card.blocks), /each approver confirms with a passkey in the console/);
    // Without a console to link to, the card cannot offer a way to approve that would count; the click is refused and says why.
    assert.deepEqual(
      buttons(buildRequestCard(sampleRequest({ stepUp: 'webauthn' })).blocks).map((b) => b.action_id),
      [APPROVE_ACTION_ID, DENY_ACTION_ID],
    );
  });

  it('shows a short parameter set whole, with no warning', () => {
    const text = all(buildRequestCard(sampleRequest()).blocks);
    assert.doesNotMatch(text, /shortened/);
  });

  it('ends without buttons, saying how it ended and who decided', () => {
    const base = sampleRequest();
    const at = Date.UTC(2026, 0, 1, 12, 5);
    const approve = (principal: string) => ({
      principal,
      decision: 'approve' as const,
      channel: 'slack',
      at,
      stepUp: 'click' as const,
      reason: '',
    });
    const cases: [Partial<typeof base>, RegExp][] = [
      [{ state: 'APPROVED', votes: [approve('alice'), approve('bob')], resolvedAt: at }, /\*Approved\* by alice, bob/],
      [
        {
          state: 'DENIED',
          votes: [{ ...approve('bob'), decision: 'deny', reason: 'not during the freeze' }],
          resolvedAt: at,
          resolutionMessage: 'denied by bob: not during the freeze',
        },
        /\*Denied\* by bob .*not during the freeze/,
      ],
      [
        { state: 'EXPIRED', votes: [approve('alice')], resolvedAt: base.expiresAt },
        /\*Expired\* .* with 1 of 2 approval\(s\)/,
      ],
      [
        { state: 'CANCELLED', resolvedAt: at, resolutionMessage: 'cancelled by the requester: wrong version' },
        /\*Cancelled\* .*wrong version/,
      ],
    ];
    for (const [change, pattern] of cases) {
      const card = buildRequestCard({ ...base, ...change });
      assert.deepEqual(validateBlocks(card.blocks, 'message'), []);
      assert.deepEqual(buttons(card.blocks), [], `${change.state} has no buttons`);
      assert.match(all(card.blocks), pattern);
      const header = (card.blocks[0] as unknown as { text: { text: string } }).text.text;
      assert.match(
        header,
        new RegExp(
          `^${change.state === 'APPROVED' ? 'Approved' : change.state === 'DENIED' ? 'Denied' : change.state === 'EXPIRED' ? 'Expired' : 'Cancelled'}:`,
        ),
      );
    }
  });

  it('renders thread replies, outcome notices and both modals within limits', () => {
    const r = sampleRequest({
      stepUp: 'confirm',
      votes: [
        {
          principal: 'alice',
          decision: 'approve',
          channel: 'slack',
          at: Date.UTC(2026, 0, 1, 12, 1),
          stepUp: 'confirm',
          reason: 'checked',
        },
      ],
    });
    assert.match(
      buildVoteReply(r, r.votes[0]!).text,
      /\*alice\* :heavy_check_mark: approved .*confirmed the resource.*: checked\n1 of 2 approval/,
    );
    assert.deepEqual(
      validateBlocks(buildOutcomeNotice({ ...r, state: 'APPROVED', resolvedAt: r.createdAt }).blocks, 'message'),
      [],
    );
    const ctx = { requestId: r.id, channel: 'C0APPROVALS' };
    for (const modal of [buildConfirmModal(r, ctx), buildDenyModal(r, ctx)]) assert.deepEqual(validateModal(modal), []);
    const huge = sampleRequest({
      parametersJson: JSON.stringify({ s: 'q'.repeat(60_000) }),
      resource: `prod/${'r'.repeat(500)}`,
    });
    assert.deepEqual(validateModal(buildConfirmModal(huge, ctx)), []);
    // With step-up confirm the Approve button opens the modal: no Slack confirm dialog on it.
    const approveButton = buttons(buildRequestCard(r).blocks)[0] as Record<string, unknown>;
    assert.equal(approveButton.confirm, undefined);
    assert.ok((buttons(buildRequestCard(sampleRequest()).blocks)[0] as Record<string, unknown>).confirm);
  });
});

describe('the Slack break-glass notice', () => {
  const notice = (overrides: Partial<BreakGlassNotice> = {}): BreakGlassNotice => ({
    requestId: 'req_BrEaKgLaSs000001',
    requester: 'spiffe://example.org/ci/deployer',
    onBehalfOf: 'carol@example.org',
    operation: 'failover',
    resource: 'prod/db',
    parametersJson: '{"region":"eu-west-1"}',
    parametersDigest: 'Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyMDA',
    reason: 'primary is down',
    ticket: 'INC-4711',
    rule: 'incident-break-glass',
    approvers: ['alice'],
    groups: ['sre'],
    notify: { slackChannels: ['C0INCIDENTS'], directMessages: true },
    issuedAt: Date.UTC(2026, 0, 1, 3, 0, 0),
    credentialId: 'jti-0123456789',
    credentialExpiresAt: Date.UTC(2026, 0, 1, 3, 5, 0),
    ...overrides,
  });

  it('says who broke the glass, on what, why, under which rule, and which credential until when; nothing to click', () => {
    const n = notice();
    const message = buildBreakGlassNotice(n);
    assert.deepEqual(validateBlocks(message.blocks, 'message'), []);
    const text = all(message.blocks);
    for (const expected of [
      'Break-glass used: failover prod/db',
      'spiffe://example.org/ci/deployer',
      'carol@example.org',
      '`incident-break-glass`',
      'primary is down',
      'INC-4711',
      '"region": "eu-west-1"',
      n.parametersDigest,
      n.requestId,
      '`jti-0123456789`',
      `<!date^${n.credentialExpiresAt / 1000}^`,
    ]) {
      assert.ok(text.includes(expected), `the notice shows ${expected}`);
    }
    assert.equal((message.blocks as unknown as Block[]).filter((b) => b.type === 'actions').length, 0);
    assert.match(message.text, /^Break-glass used: failover prod\/db by spiffe:\/\/example.org\/ci\/deployer/);
  });

  it('stays inside Slack limits and escapes what the requester wrote, for the largest requests', () => {
    const n = notice({
      parametersJson: JSON.stringify({ script: 's'.repeat(30_000), note: '<!channel>' }),
      reason: `<!here> ${'z'.repeat(5000)}`,
      resource: `prod/${'r'.repeat(500)}`,
    });
    const message = buildBreakGlassNotice(n);
    assert.deepEqual(validateBlocks(message.blocks, 'message'), []);
    const text = markup(message.blocks);
    assert.doesNotMatch(text, /<!channel>|<!here>/);
    assert.ok(text.includes(n.parametersDigest), 'the digest is always shown');
    assert.match(text, /Parameters shortened for Slack\* \(1 long value\(s\) cut/);
    assert.ok(message.text.length <= 3000);
  });
});
