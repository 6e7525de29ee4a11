// Issue 14, finding 6: the requester side changed parameters before the broker
// saw them. `--parameters-json '{"a":1,"a":2}'` got a credential for {"a":2},
// `--param x:=1e400` one for {"x":null}, `--param '__proto__:={"a":1}'` lost the
// member silently; the SDK and the MCP server turned Infinity into null and
// dropped undefined and "__proto__". Now each of them checks with the broker's
// own rules (@countersign/proto), refuses with a clear message, and sends nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { parametersDigest, type JsonObject } from '@countersign/proto';
import { CountersignClient, CountersignClientError } from '@countersign/agent';
import { createCountersignMcpServer } from '@countersign/agent/mcp';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { cliIdentities, finishCli, type CliIdentities } from './support/cli.js';

const EXIT_USAGE = 2;

/** The parameters_digest a credential carries. */
const digestIn = (token: string): string =>
  (
    JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as {
      authorization_details: { parameters_digest: string }[];
    }
  ).authorization_details[0]?.parameters_digest as string;

describe('requester tools send parameters exactly, or refuse', () => {
  let t: TestBroker;
  let ids: CliIdentities;
  let sdk: CountersignClient;
  /** How many requests have reached the broker so far. */
  const requestsReceived = async () => (await t.auditEvents()).filter((e) => e.type === 'request_received').length;

  before(async () => {
    t = await startTestBroker();
    ids = await cliIdentities(t, { deployer: 'ci/deployer' });
    const svid = t.svid('ci/deployer');
    sdk = new CountersignClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
  });
  after(async () => {
    sdk?.close();
    await ids?.cleanup();
    await t?.close();
  });

  describe('countersign request (CLI)', () => {
    const request = (args: string[]) =>
      finishCli(ids.env.deployer as NodeJS.ProcessEnv, [
        'request',
        '--operation',
        'deploy',
        '--resource',
        'staging/web',
        '--output',
        'json',
        ...args,
      ]);

    const refusals: [string, string[], RegExp][] = [
      [
        'a duplicate key in --parameters-json',
        ['--parameters-json', '{"a":1,"a":2}'],
        /--parameters-json \$\.a: the member name "a" appears twice/,
      ],
      [
        '--param x:=1e400',
        ['--param', 'x:=1e400'],
        /--param x:=1e400: \$\.x: the number 1e400 is beyond ±9007199254740991 \(2\^53 - 1\)/,
      ],
      [
        '--param __proto__:={"a":1}',
        ['--param', '__proto__:={"a":1}'],
        /--param __proto__:=\{"a":1\}: \$\.__proto__: the member name "__proto__" is not accepted/,
      ],
      ['--param __proto__=x', ['--param', '__proto__=x'], /"__proto__" is not accepted/],
      [
        'a lone surrogate',
        ['--parameters-json', '{"s":"\\ud800"}'],
        /--parameters-json \$\.s: a string holds a lone UTF-16 surrogate/,
      ],
      [
        'a value after := that is two members',
        ['--param', 'x:=1,"y":2'],
        /--param x:=1,"y":2: the value after ":=" must be JSON/,
      ],
      ['the same key in both', ['--parameters-json', '{"a":1}', '--param', 'a=2'], /--param a is given more than once/],
    ];
    for (const [name, args, message] of refusals) {
      it(`refuses ${name} with a usage error, sending nothing`, async () => {
        const before = await requestsReceived();
        const r = await request(args);
        assert.equal(r.code, EXIT_USAGE, r.stdout + r.stderr);
        assert.match(r.stderr, message);
        assert.equal(r.stdout, '');
        assert.equal(await requestsReceived(), before, 'the broker heard nothing');
      });
    }

    it('sends --parameters-json as typed, with --param members added, and gets a credential for exactly that', async () => {
      const r = await request([
        '--parameters-json',
        '{ "b": 2.50, "a": [1, {"n": 1e3}] }',
        '--param',
        'c=3',
        '--param',
        'd:=true',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const token = (JSON.parse(r.stdout) as { token: string }).token;
      assert.equal(digestIn(token), parametersDigest({ a: [1, { n: 1000 }], b: 2.5, c: '3', d: true }));
    });
  });

  describe('the SDK', () => {
    const cases: [string, { parameters?: JsonObject; parametersJson?: string }, RegExp][] = [
      [
        'Infinity (JSON.stringify would send null)',
        { parameters: { x: Infinity } },
        /^parameters: \$\.x: the number Infinity is beyond/,
      ],
      [
        'undefined (JSON.stringify would drop it)',
        { parameters: { v: 1, u: undefined } as unknown as JsonObject },
        /^parameters: \$\.u: undefined has no exact JSON form/,
      ],
      [
        'a Date (JSON.stringify would send a string)',
        { parameters: { at: new Date(0) } as unknown as JsonObject },
        /^parameters: \$\.at: a Date has no exact JSON form/,
      ],
      [
        'an own "__proto__" member',
        { parameters: JSON.parse('{"__proto__":{"a":1}}') as JsonObject },
        /^parameters: \$\.__proto__: the member name "__proto__" is not accepted/,
      ],
      [
        'duplicate keys in parametersJson',
        { parametersJson: '{"a":1,"a":2}' },
        /^parameters_json: \$\.a: the member name "a" appears twice/,
      ],
    ];
    for (const [name, input, message] of cases) {
      it(`refuses ${name} before sending`, async () => {
        const before = await requestsReceived();
        const e = await sdk.requestOperation({ operation: 'deploy', resource: 'staging/web', ...input }).then(
          (r) => assert.fail(`sent, and got ${r.state}`),
          (err: unknown) => err,
        );
        assert.ok(e instanceof CountersignClientError, String(e));
        assert.equal(e.code, 'ERR_INVALID_FIELD');
        assert.equal(e.grpcStatus, undefined, 'refused by the SDK, not by the broker');
        assert.match(e.message, message);
        assert.equal(await requestsReceived(), before);
      });
    }
  });

  describe('countersign mcp (countersign_request)', () => {
    let mcp: Client;
    before(async () => {
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await createCountersignMcpServer(sdk).connect(serverSide);
      mcp = new Client({ name: 'countersign-test', version: '1.0.0' });
      await mcp.connect(clientSide);
    });
    after(async () => mcp?.close());

    // In memory the arguments reach the server as these very objects, as JSON.parse would make them from 1e400 or "__proto__".
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['a number that read as Infinity', { x: Infinity }, /parameters: \$\.x: the number Infinity is beyond/],
      [
        'an own "__proto__" member (which zod would drop)',
        JSON.parse('{"v":1,"__proto__":{"a":1}}') as Record<string, unknown>,
        /parameters: \$\.__proto__: the member name "__proto__" is not accepted/,
      ],
    ];
    for (const [name, parameters, message] of cases) {
      it(`refuses ${name}, asking the broker nothing`, async () => {
        const before = await requestsReceived();
        const result = (await mcp.callTool({
          name: 'countersign_request',
          arguments: { operation: 'deploy', resource: 'staging/web', parameters, reason: 'release' },
        })) as CallToolResult;
        assert.equal(result.isError, true, JSON.stringify(result));
        assert.match((result.content[0] as { text: string }).text, message);
        assert.equal(await requestsReceived(), before);
      });
    }

    it('approves exactly the parameters it was given', async () => {
      const result = (await mcp.callTool({
        name: 'countersign_request',
        arguments: {
          operation: 'deploy',
          resource: 'staging/web',
          parameters: { v: '1.4.2', n: 3 },
          reason: 'release',
        },
      })) as CallToolResult;
      const token = (result.structuredContent as { token?: string } | undefined)?.token;
      assert.ok(token, JSON.stringify(result));
      assert.equal(digestIn(token), parametersDigest({ v: '1.4.2', n: 3 }));
    });
  });
});
