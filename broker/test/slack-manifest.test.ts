// The Slack app manifest in the repository matches what the code needs: the
// interactivity URL path the broker serves, and a scope for every Web API method
// the Slack channel calls.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { SLACK_EVENTS_PATH } from '@countersign/approvers/slack';
import { parse } from 'yaml';

const manifest = parse(readFileSync(new URL('../../deploy/slack-app-manifest.yaml', import.meta.url), 'utf8')) as {
  oauth_config: { scopes: { bot: string[] } };
  settings: { interactivity: { is_enabled: boolean; request_url: string } };
};

// Slack's documented required scope for each method the code calls (docs.slack.dev/reference/methods).
const METHOD_SCOPES: Record<string, string> = {
  'chat.postMessage': 'chat:write',
  'chat.update': 'chat:write',
  'chat.postEphemeral': 'chat:write',
  'users.info': 'users:read',
  'usergroups.users.list': 'usergroups:read',
};

describe('the Slack app manifest', () => {
  it('sends interactions to the path the broker serves', () => {
    assert.equal(manifest.settings.interactivity.is_enabled, true);
    assert.equal(new URL(manifest.settings.interactivity.request_url).pathname, SLACK_EVENTS_PATH);
  });

  it('asks for a scope for every Web API method the Slack channel calls', () => {
    const sources = ['delivery.ts', 'identity.ts', 'usergroups.ts', 'interactions.ts']
      .map((f) => readFileSync(new URL(`../../approvers/src/slack/${f}`, import.meta.url), 'utf8'))
      .join('\n');
    const called = [...sources.matchAll(/client\.([a-z]+(?:\.[a-zA-Z]+)+)\(/g)].map((m) => m[1] as string);
    assert.ok(called.length >= 5, `found the calls: ${called.join(', ')}`);
    for (const method of new Set(called)) {
      if (method === 'views.open') continue; // needs no scope: it answers an interaction
      const scope = METHOD_SCOPES[method];
      assert.ok(scope !== undefined, `a scope is known for ${method}`);
      assert.ok(manifest.oauth_config.scopes.bot.includes(scope), `${method} needs ${scope}`);
    }
  });
});
