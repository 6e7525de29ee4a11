import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadSlackSettings } from '../src/channels/slack.js';
import { parseConfig } from '../src/config/config.js';

const BASE = `trust_domain: example.org
identity:
  svid: { cert_file: a.pem, key_file: a-key.pem }
  bundles: [{ trust_domain: example.org, file: ca.pem }]
policy: { file: policy.yaml }
credentials:
  default_audience: https://deploy.example.org
  signing_keys: [{ file: k.pem }]
`;
const BOT = 'xoxb-1-2-abc';
const SECRET = '0123456789abcdef0123456789abcdef';

describe('Slack in the broker configuration', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-slack-config-'));
    await writeFile(join(dir, 'signing-secret'), `${SECRET}\n`);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const config = (slack: string) => parseConfig(`${BASE}${slack}`, join(dir, 'config.yaml'));

  it('is off when nothing names a bot token', async () => {
    assert.equal(await loadSlackSettings(config(''), {}), undefined);
  });

  it('takes the environment and files relative to the config file', async () => {
    const settings = await loadSlackSettings(
      config(`slack:
  signing_secret_file: signing-secret
  default_channel: "#approvals"
  usergroup_cache_ttl: 30s
  delivery: { attempts: 5, backoff: 500ms }
`),
      { SLACK_BOT_TOKEN: BOT, SLACK_API_URL: 'http://127.0.0.1:1/api/' },
    );
    assert.equal(settings?.mode, 'http');
    assert.equal(settings?.signingSecret, SECRET);
    assert.equal(settings?.defaultChannel, '#approvals');
    assert.equal(settings?.usergroupCacheTtlMs, 30_000);
    assert.equal(settings?.attempts, 5);
    assert.equal(settings?.backoffMs, 500);
    assert.equal(settings?.apiUrl, 'http://127.0.0.1:1/api/');
  });

  it('turns a contradiction into a configuration error (exit code 3), and an unknown key into a precise one', async () => {
    await assert.rejects(loadSlackSettings(config('slack: { enabled: true }\n'), {}), {
      code: 'ERR_CONFIG_INVALID',
      kind: 'invalid_argument',
      message: /no bot token/,
    });
    await assert.rejects(loadSlackSettings(config('slack: { mode: socket }\n'), { SLACK_BOT_TOKEN: BOT }), {
      code: 'ERR_CONFIG_INVALID',
      message: /Socket Mode needs an app-level token/,
    });
    assert.throws(
      () => config('slack: { bot_token: xoxb-in-the-file }\n'),
      /config.yaml:9:10: slack: unknown key "bot_token" \(expected one of: .*bot_token_file/,
    );
    assert.throws(
      () => config('slack: { default_channel: "Not A Channel" }\n'),
      /default_channel.*expected a channel id/,
    );
  });
});
