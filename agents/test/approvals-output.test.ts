// What approvers read in `countersign approvals list|show`: the claims of an OIDC token are text
// the requesting CI job controls (a workflow's name, a branch), so they may not hide characters,
// pass for another claim or line, or push the decided-on columns off screen. Each case below is
// an attack that held before only in part (an outside review of the claims column).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Request } from '@countersign/proto';
import { printPendingList, printRequest, terminalJson, visible, workloadCell } from '../src/cli/approvals-output.js';

const request = (claims: Record<string, string>) =>
  Request.fromPartial({
    id: 'req-1',
    requester: 'spiffe://example.org/ci/app',
    operation: 'deploy',
    resource: 'prod',
    parametersJson: '{"v":"1.2.3"}',
    workload: { issuer: 'github', claims },
  });

function printed(fn: (print: (line: string) => void) => void): string[] {
  const lines: string[] = [];
  fn((line) => lines.push(line));
  return lines;
}

describe('approvals output of untrusted claims', () => {
  it('a claim value cannot pass for another claim in the list cell (values are quoted)', () => {
    const cell = workloadCell(request({ repository: 'evil/app, repository=my-org/app' }), 200);
    assert.equal(cell, 'github: repository="evil/app, repository=my-org/app"');
  });

  it('a value padded to wrap onto a line of its own cannot pass for a claim in show (values are quoted)', () => {
    const workflow = `Deploy${' '.repeat(62)}  ref: refs/heads/main`;
    const lines = printed((print) => printRequest(request({ workflow, ref: 'refs/heads/evil' }), print));
    assert.ok(lines.includes(`  workflow: ${JSON.stringify(workflow)}`), lines.join('\n'));
    assert.ok(lines.includes('  ref: "refs/heads/evil"'), lines.join('\n'));
  });

  it('blanks that are not a space, fillers, joiners, variation selectors and lone surrogates are escaped', () => {
    for (const [hidden, shown] of [
      ['\u00a0', '\\u00a0'],
      ['\u3000', '\\u3000'],
      ['\u2003', '\\u2003'],
      ['\u3164', '\\u3164'],
      ['\u115f', '\\u115f'],
      ['\u2800', '\\u2800'],
      ['\u034f', '\\u034f'],
      ['\ufe0f', '\\ufe0f'],
      ['\u{e0100}', '\\ue0100'],
      ['\ud800', '\\ud800'],
    ] as const) {
      assert.equal(visible(`a${hidden}b`), `a${shown}b`, `U+${hidden.codePointAt(0)?.toString(16)}`);
    }
    // What was escaped before still is; plain text and the space stay as they are.
    assert.equal(visible('x\u001b[31m\u202e'), 'x\\u001b[31m\\u202e');
    assert.equal(visible('my-org/app v1 é'), 'my-org/app v1 é');
  });

  it('--output json writes C1 controls, bidi and invisible characters as \\u escapes, and still parses', () => {
    const claims = { actor: 'x\u009b31m\u202e', ref: 'refs/heads/a\u{e0100}b\u200b' };
    const json = terminalJson({ claims });
    assert.doesNotMatch(json, /[\u0080-\u009f\u202e\u200b]|\u{e0100}/u);
    assert.match(json, /x\\u009b31m\\u202e/);
    assert.match(json, /a\\udb40\\udd00b\\u200b/);
    assert.deepEqual(JSON.parse(json), { claims });
    const listed = printed((print) => printPendingList([request(claims)], 'json', print)).join('\n');
    assert.doesNotMatch(listed, /[\u0080-\u009f\u202e\u200b]|\u{e0100}/u);
    assert.deepEqual((JSON.parse(listed) as { workload: unknown }[])[0]?.workload, { issuer: 'github', claims });
  });

  it('the claims column comes after what is decided on (operation, resource, parameters)', () => {
    const [header] = printed((print) => printPendingList([request({ run: 'x'.repeat(120) })], 'table', print));
    const columns = (header ?? '').split(/\s{2,}/);
    assert.ok(columns.indexOf('OIDC CLAIMS') > columns.indexOf('PARAMETERS'), header);
    assert.ok(columns.indexOf('PARAMETERS') > columns.indexOf('RESOURCE'), header);
  });
});
