// The README tour, run as a user runs it: `countersign request --wait` in one
// process, `countersign approvals ...` as alice and bob in others, against a
// real broker.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JSONWebKeySet } from 'jose';
import { verifyCredential } from '@countersign/agent';
import { eventually, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { cliIdentities, finishCli, requestIdIn, runCli, type CliIdentities } from './support/cli.js';

describe('countersign CLI: request --wait, approvals list|approve|deny, watch, cancel', () => {
  let t: TestBroker;
  let ids: CliIdentities;
  const run = (who: string, args: string[]) => runCli(ids.env[who] as NodeJS.ProcessEnv, args);
  const finish = (who: string, args: string[]) => finishCli(ids.env[who] as NodeJS.ProcessEnv, args);

  before(async () => {
    t = await startTestBroker();
    ids = await cliIdentities(t, { deployer: 'ci/deployer', alice: 'human/alice', bob: 'human/bob' });
  });
  after(async () => {
    await t?.close();
    await ids?.cleanup();
  });

  it('waits for alice, prints the credential, and refuses bob afterwards', async () => {
    const waiting = run('deployer', [
      'request',
      '--operation',
      'deploy',
      '--resource',
      'prod/web',
      '--param',
      'version=1.4.2',
      '--wait',
    ]);
    const id = await eventually('the request id on stderr', () => requestIdIn(waiting.stderr()));
    assert.match(
      waiting.stderr(),
      /pending approval: request req_\S+ \(rule prod-deploys\); 0 of 1 approval\(s\) from alice, bob/,
    );

    const list = await finish('alice', ['approvals', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(
      list.stdout,
      new RegExp(`${id}\\s+spiffe://example.org/ci/deployer\\s+deploy\\s+prod/web\\s+\\{"version":"1.4.2"\\}\\s+0/1`),
    );

    const approve = await finish('alice', ['approvals', 'approve', id, '--reason', 'release window']);
    assert.equal(approve.code, 0, approve.stderr);
    assert.equal(approve.stdout.trim(), `request ${id} is APPROVED (approved by alice (cli))`);

    assert.equal(await waiting.code, 0, waiting.stderr());
    assert.match(waiting.stderr(), /alice approved via cli: release window \(1 of 1 approval\(s\)\)/);
    const token = waiting.stdout().trim();
    const jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
    const { claims } = await verifyCredential(token, {
      jwks,
      audience: 'https://deploy.example.org',
      parameters: { version: '1.4.2' },
    });
    assert.equal(claims.approval?.approvers[0]?.principal, 'alice');

    const bob = await finish('bob', ['approvals', 'approve', id]);
    assert.equal(bob.code, 1);
    assert.match(
      bob.stderr,
      /request req_\S+ was already approved at .* \(approved by alice \(cli\)\); it no longer accepts votes \[ERR_REQUEST_RESOLVED\]/,
    );

    // Watching an approved request prints the same credential again.
    const watch = await finish('deployer', ['watch', id]);
    assert.equal(watch.code, 0, watch.stderr);
    assert.equal(watch.stdout.trim(), token);
  });

  it('does not let alice approve a request made on her behalf', async () => {
    const made = await finish('deployer', [
      'request',
      '--operation',
      'deploy',
      '--resource',
      'prod/web',
      '--on-behalf-of',
      'alice',
    ]);
    assert.equal(made.code, 6);
    const id = made.stdout.trim();
    const alice = await finish('alice', ['approvals', 'approve', id]);
    assert.equal(alice.code, 1);
    assert.match(
      alice.stderr,
      /was made on behalf of alice, who therefore cannot decide it; separation of duties requires someone else \[ERR_SELF_APPROVAL\]/,
    );
    const list = await finish('alice', ['approvals', 'list', '--output', 'json']);
    assert.ok(!(JSON.parse(list.stdout) as { id: string }[]).some((r) => r.id === id));
  });

  it('exits 3 when denied and 5 when watching a cancelled request', async () => {
    const waiting = run('deployer', [
      'request',
      '--operation',
      'deploy',
      '--resource',
      'prod/api',
      '--wait',
      '--output',
      'json',
    ]);
    const made = await finish('deployer', ['request', '--operation', 'deploy', '--resource', 'prod/db']);
    const toCancel = made.stdout.trim();
    const id = await eventually('the pending request in the list', async () => {
      const list = JSON.parse((await finish('bob', ['approvals', 'list', '--output', 'json'])).stdout) as {
        id: string;
        resource: string;
      }[];
      return list.find((r) => r.resource === 'prod/api')?.id;
    });
    const deny = await finish('bob', ['approvals', 'deny', id, '--reason', 'freeze']);
    assert.equal(deny.code, 0, deny.stderr);
    assert.equal(await waiting.code, 3);
    const result = JSON.parse(waiting.stdout()) as { state: string; message: string };
    assert.deepEqual([result.state, result.message], ['DENIED', 'denied by bob (cli): freeze']);

    const cancel = await finish('deployer', ['cancel', toCancel, '--reason', 'not needed']);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.match(cancel.stderr, /cancelled request req_\S+: cancelled by the requester: not needed/);
    const watch = await finish('deployer', ['watch', toCancel]);
    assert.equal(watch.code, 5);
    assert.match(watch.stderr, /cancelled: cancelled by the requester: not needed/);
  });
});
