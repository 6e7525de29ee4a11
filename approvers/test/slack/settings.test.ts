import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveSlackSettings, SlackSettingsError } from '../../src/slack/settings.js';

const BOT = 'xoxb-1234-5678-abcdef';
const SECRET = '0123456789abcdef0123456789abcdef';

describe('Slack settings', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-slack-settings-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is off without a bot token, unless enabled explicitly', async () => {
    assert.equal(await resolveSlackSettings({}, {}), undefined);
    await assert.rejects(resolveSlackSettings({ enabled: true }, {}), /no bot token/);
    assert.equal(
      await resolveSlackSettings({ enabled: false }, { SLACK_BOT_TOKEN: BOT, SLACK_SIGNING_SECRET: SECRET }),
      undefined,
    );
  });

  it('turns on HTTP mode from SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, with SLACK_API_URL', async () => {
    const s = await resolveSlackSettings(
      {},
      { SLACK_BOT_TOKEN: BOT, SLACK_SIGNING_SECRET: SECRET, SLACK_API_URL: 'http://127.0.0.1:9/api' },
    );
    assert.equal(s?.mode, 'http');
    assert.equal(s?.botToken, BOT);
    assert.equal(s?.apiUrl, 'http://127.0.0.1:9/api/');
    assert.equal(s?.matchByEmail, false);
  });

  it('chooses Socket Mode when an app-level token is given', async () => {
    const s = await resolveSlackSettings({}, { SLACK_BOT_TOKEN: BOT, SLACK_APP_TOKEN: 'xapp-1-A0-123-abc' });
    assert.equal(s?.mode, 'socket');
    assert.equal(s?.apiUrl, 'https://slack.com/api/');
    // SLACK_MODE (what the Helm chart sets) wins over the config file.
    const http = await resolveSlackSettings(
      { mode: 'socket' },
      { SLACK_MODE: 'http', SLACK_BOT_TOKEN: BOT, SLACK_SIGNING_SECRET: SECRET, SLACK_APP_TOKEN: 'xapp-1-A0-123-abc' },
    );
    assert.equal(http?.mode, 'http');
    await assert.rejects(
      resolveSlackSettings({}, { SLACK_MODE: 'websocket', SLACK_BOT_TOKEN: BOT }),
      /SLACK_MODE "websocket": expected http or socket/,
    );
  });

  it('reads secrets from files, and refuses a secret given two ways', async () => {
    const file = join(dir, 'bot-token');
    await writeFile(file, `${BOT}\n`);
    const s = await resolveSlackSettings({ botTokenFile: file }, { SLACK_SIGNING_SECRET: SECRET });
    assert.equal(s?.botToken, BOT);
    await assert.rejects(
      resolveSlackSettings({ botTokenFile: file }, { SLACK_BOT_TOKEN: BOT, SLACK_SIGNING_SECRET: SECRET }),
      /SLACK_BOT_TOKEN and slack.bot_token_file are both set/,
    );
    const s2 = await resolveSlackSettings({}, { SLACK_BOT_TOKEN_FILE: file, SLACK_SIGNING_SECRET: SECRET });
    assert.equal(s2?.botToken, BOT);
  });

  it('names what is wrong, without echoing the secret', async () => {
    const err = await resolveSlackSettings(
      {},
      { SLACK_BOT_TOKEN: 'xoxp-user-token-oops', SLACK_SIGNING_SECRET: SECRET },
    ).catch((e: unknown) => e);
    assert.ok(err instanceof SlackSettingsError);
    assert.equal(err.code, 'ERR_SLACK_CONFIG');
    assert.match(err.message, /SLACK_BOT_TOKEN is not a bot token/);
    assert.doesNotMatch(err.message, /oops/);
    await assert.rejects(resolveSlackSettings({}, { SLACK_BOT_TOKEN: BOT }), /HTTP mode needs the signing secret/);
    await assert.rejects(
      resolveSlackSettings({}, { SLACK_BOT_TOKEN: BOT, SLACK_SIGNING_SECRET: SECRET, SLACK_API_URL: 'ftp://x' }),
      /must be an http\(s\) URL/,
    );
    await assert.rejects(
      resolveSlackSettings({}, { SLACK_BOT_TOKEN: BOT, SLACK_SIGNING_SECRET: SECRET, SLACK_CHANNEL: 'Bad Channel' }),
      /not a channel id/,
    );
    await assert.rejects(
      resolveSlackSettings({ botTokenFile: join(dir, 'missing') }, { SLACK_SIGNING_SECRET: SECRET }),
      /cannot read slack.bot_token_file/,
    );
  });
});
