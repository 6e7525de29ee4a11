// startBroker and startWorker build their shared parts with one wiring (app.ts):
// from the same config they write one audit chain, and each signs its checkpoints
// as RoleWiring.issuer says (the broker by its SPIFFE ID, a worker with no SVID by
// the trust domain's ID), which verification accepts as one trail.
import assert from 'node:assert/strict';
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeJwt } from 'jose';
import { FakeSlack } from '@countersign/approvers/testing';
import { startWorker, type RunningWorker } from '../src/app.js';
import { readAuditSnapshot } from '../src/audit/export.js';
import { verifyAuditTrail } from '../src/audit/verify.js';
import { parseConfig } from '../src/config/config.js';
import { loadKeyring } from '../src/credentials/load.js';
import { silentLogger } from '../src/observability/logger.js';
import { Keys } from '../src/redis/keys.js';
import { startTestBroker, withoutSlackEnv, type TestBroker } from './support/broker.js';

describe('one composition root for broker and worker', () => {
  let t: TestBroker;
  let worker: RunningWorker;

  before(async () => {
    t = await startTestBroker();
    const config = parseConfig(await readFile(t.configFile, 'utf8'), t.configFile);
    // The broker's connection (same Redis, same prefix); the worker does not close what it was given.
    worker = await startWorker(config, {
      logger: silentLogger(),
      redis: t.broker.redis,
      auditStdout: null,
      env: withoutSlackEnv(process.env),
    });
  });
  after(async () => {
    await worker?.close();
    await t?.close();
  });

  it("writes one chain: the worker checkpoints heads the broker signed, and the broker the worker's checkpoints after", async () => {
    const fromWorker = await worker.checkpointer.checkpointNow();
    assert.ok(fromWorker.stored, `the worker took no checkpoint: ${JSON.stringify(fromWorker)}`);
    assert.equal(decodeJwt(fromWorker.jws).iss, `spiffe://${t.trustDomain}`);

    // Something new for the broker to sign: a policy change, audited by the broker.
    await appendFile(join(t.dir, 'policy.yaml'), '\n# changed by the composition-root test\n');
    assert.equal((await t.broker.policies.reload('manual')).status, 'reloaded');
    const fromBroker = await t.broker.checkpointer.checkpointNow();
    assert.ok(fromBroker.stored, `the broker took no checkpoint: ${JSON.stringify(fromBroker)}`);
    assert.equal(decodeJwt(fromBroker.jws).iss, t.broker.spiffeId);
    assert.equal(t.broker.spiffeId, `spiffe://${t.trustDomain}/countersign/broker`);
    assert.equal(decodeJwt(fromBroker.jws).prev_checkpoint, fromWorker.seq);
    assert.ok(fromBroker.seq > fromWorker.seq);

    const keyring = await loadKeyring(t.broker.config);
    const snapshot = await readAuditSnapshot(t.broker.redis, new Keys(t.prefix));
    const report = await verifyAuditTrail({ ...snapshot, getKey: createLocalJWKSet(keyring.allPublicJwks()) });
    assert.deepEqual(report.problems, []);
    assert.equal(report.checkpoints, 2);
    assert.equal(report.validCheckpoints, 2);
    assert.equal(report.latestCheckpointSeq, fromBroker.seq);
    assert.equal(report.headVerified, true);
  });
});

// No late binding: Slack's user groups are built before the principal directory, which
// resolves slack_usergroup groups from the moment the broker is up (before, Slack set a
// resolver into the principals once it was running).
describe('one composition root: the directory is built with the Slack user groups it resolves through', () => {
  let fake: FakeSlack;
  let t: TestBroker;

  before(async () => {
    fake = await FakeSlack.start({ usergroups: { S0ONCALL: ['U0CAROL', 'U0STRANGER'] } });
    t = await startTestBroker({
      principals: `version: 1
principals:
  - { name: alice, slack_user_id: U0ALICE }
  - { name: bob, slack_user_id: U0BOB }
  - { name: carol, slack_user_id: U0CAROL }
groups:
  - { name: oncall, slack_usergroup: S0ONCALL }
  - { name: admins, members: [alice] }
`,
      files: { 'slack-bot-token': fake.botToken, 'slack-signing-secret': fake.signingSecret },
      extraConfig: `slack:
  bot_token_file: slack-bot-token
  signing_secret_file: slack-signing-secret
  api_url: ${fake.apiUrl}
`,
      overrides: { env: {} },
    });
  });
  after(async () => {
    await t?.close();
    await fake?.close();
  });

  it('resolves a Slack user group to the principals it names, and a listed group to its members', async () => {
    assert.equal(t.broker.slackMode, 'http');
    assert.deepEqual(await t.broker.principals.groupMembers('oncall'), ['carol']);
    assert.equal(fake.callsOf('usergroups.users.list').length, 1);
    assert.deepEqual(await t.broker.principals.groupMembers('admins'), ['alice']);
    // The policy keeps the file's own view: it never asks Slack.
    assert.deepEqual(await t.broker.policies.current.principals?.groupMembers('oncall'), []);
  });
});
