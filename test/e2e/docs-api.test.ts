// docs/api.md "Calling it with grpcurl", run as printed against dev mode: grpcurl with the
// dev env files, no -authority (the dev broker's certificate names 127.0.0.1), everything
// through server reflection, parameters as a JSON object, and a credential redeemed once.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parametersDigest } from '@countersign/proto';
import { decodeJwt } from 'jose';
import { DocsWorkspace, shellBlocks } from './support/docs.js';
import { tool } from './support/tools.js';

describe('docs/api.md: the grpcurl examples, as printed', () => {
  let ws: DocsWorkspace;
  let blocks: string[];
  before(async () => {
    tool('grpcurl');
    blocks = await shellBlocks('docs/api.md', '## Calling it with grpcurl');
    ws = await DocsWorkspace.create();
    await ws.startDev();
  });
  after(async () => ws?.close());

  it('has the three examples this test knows', () => {
    assert.equal(blocks.length, 3, blocks.join('\n---\n'));
  });

  it('lists, describes and health-checks through reflection', async () => {
    const out = await ws.bash(blocks[0] as string);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    assert.match(out.stdout, /^countersign\.v1\.Broker$/m);
    assert.match(out.stdout, /\.google\.protobuf\.Struct parameters = 10;/);
    assert.match(out.stdout, /"status": "SERVING"/);
  });

  it('asks for an operation with parameters as a JSON object', async () => {
    const out = await ws.bash(blocks[1] as string);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    const res = JSON.parse(out.stdout) as { state: string; credential: { token: string } };
    assert.equal(res.state, 'REQUEST_STATE_APPROVED');
    const claims = decodeJwt(res.credential.token) as { authorization_details: { parameters_digest: string }[] };
    assert.equal(
      claims.authorization_details[0]?.parameters_digest,
      parametersDigest({ version: '1.4.2', replicas: 3 }),
    );
  });

  it('redeems a credential once', async () => {
    const out = await ws.bash(blocks[2] as string);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    assert.match(out.stdout, /"credentialId": "/);
    assert.match(out.stdout, /"redeemedAt": "/);
  });
});
