import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { slackSignature, verifySlackSignature } from '../../src/slack/signature.js';
import { slackSignatureOf } from '../support/fake-slack.js';

const vector = JSON.parse(
  readFileSync(new URL('../fixtures/slack-signature-vector.json', import.meta.url), 'utf8'),
) as {
  signingSecret: string;
  timestamp: number;
  body: string;
  signature: string;
};

const headers = (ts: number | string, signature: string) => ({
  'x-slack-request-timestamp': String(ts),
  'x-slack-signature': signature,
});
const codeOf = (f: () => void): string => {
  try {
    f();
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'accepted';
};

describe('Slack request signatures', () => {
  it("reproduces Slack's documented example", () => {
    assert.equal(slackSignature(vector.signingSecret, vector.timestamp, vector.body), vector.signature);
    // The fake signs independently; it must agree with Slack too.
    assert.equal(slackSignatureOf(vector.signingSecret, vector.timestamp, vector.body), vector.signature);
  });

  const verify = (h: Record<string, string>, body = vector.body, nowMs = vector.timestamp * 1000 + 30_000) =>
    codeOf(() =>
      verifySlackSignature({ signingSecrets: [vector.signingSecret], headers: h, body: Buffer.from(body), nowMs }),
    );

  it('accepts the documented request within five minutes of its timestamp', () => {
    assert.equal(verify(headers(vector.timestamp, vector.signature)), 'accepted');
    assert.equal(
      verify(headers(vector.timestamp, vector.signature), vector.body, (vector.timestamp + 300) * 1000),
      'accepted',
    );
  });

  it('refuses a timestamp more than five minutes old, or in the future', () => {
    assert.equal(
      verify(headers(vector.timestamp, vector.signature), vector.body, (vector.timestamp + 301) * 1000),
      'ERR_SLACK_TIMESTAMP_STALE',
    );
    assert.equal(
      verify(headers(vector.timestamp, vector.signature), vector.body, (vector.timestamp - 301) * 1000),
      'ERR_SLACK_TIMESTAMP_STALE',
    );
  });

  it('refuses a changed body, a forged signature, and missing or malformed headers', () => {
    assert.equal(
      verify(headers(vector.timestamp, vector.signature), `${vector.body}&x=1`),
      'ERR_SLACK_SIGNATURE_INVALID',
    );
    const forged = slackSignature('another-secret-0000', vector.timestamp, vector.body);
    assert.equal(verify(headers(vector.timestamp, forged)), 'ERR_SLACK_SIGNATURE_INVALID');
    assert.equal(verify(headers(vector.timestamp, 'v1=abc')), 'ERR_SLACK_SIGNATURE_INVALID');
    assert.equal(verify({ 'x-slack-signature': vector.signature }), 'ERR_SLACK_SIGNATURE_MISSING');
    assert.equal(verify(headers('1531420618.5', vector.signature)), 'ERR_SLACK_TIMESTAMP_INVALID');
  });
});
