// MCP for AI agents, with a real MCP client from the SDK: `countersign mcp`
// (stdio and streamable HTTP) and `countersign mcp-proxy` in front of a small
// upstream MCP server, against a real broker; approvers act over gRPC.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { JSONWebKeySet } from 'jose';
import { ApprovalsClient, CountersignClient, verifyCredential } from '@countersign/agent';
import { eventually, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { CLI, cliIdentities, finishCli, runCli, type CliIdentities } from './support/cli.js';

const UPSTREAM = fileURLToPath(new URL('./fixtures/mcp-upstream.ts', import.meta.url));
const AGENT = 'spiffe://example.org/agent/assistant';

const POLICY = `version: 1
rules:
  - name: agent-staging
    match: { workload: "${AGENT}", operation: deploy, resource: "staging/*" }
    decision: allow
  - name: agent-prod
    match: { workload: "${AGENT}", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
  - name: reports-are-readable
    match: { workload: "${AGENT}", operation: db.query, resource: "db/reports" }
    decision: allow
  - name: dropping-tables-needs-a-human
    match: { workload: "${AGENT}", operation: db.drop_table, resource: "db/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
`;

const PROXY_CONFIG = `version: 1
tools:
  - name: drop_table
    operation: db.drop_table
    resource: "db/{arguments.table}"
    reason: "the agent wants to drop {arguments.table}"
    credential:
      argument: countersign_token
  - name: query
    operation: db.query
    resource: "db/{arguments.table}"
`;

const text = (r: unknown) => ((r as CallToolResult).content[0] as { text: string }).text;

describe('MCP: countersign mcp and countersign mcp-proxy', () => {
  let t: TestBroker;
  let ids: CliIdentities;
  let alice: ApprovalsClient;
  let bob: ApprovalsClient;
  let jwks: JSONWebKeySet;
  const closers: (() => Promise<void> | void)[] = [];

  /** The first pending request on this resource, as alice sees it. */
  const pendingOn = (resource: string) =>
    eventually(`a pending request on ${resource}`, async () =>
      (await alice.listPending()).find((r) => r.resource === resource),
    );

  const stdioClient = async (args: string[], extraEnv: Record<string, string> = {}) => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, ...args],
      env: { ...(process.env as Record<string, string>), ...(ids.env.agent as Record<string, string>), ...extraEnv },
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const client = new Client({ name: 'countersign-test', version: '1.0.0' });
    await client.connect(transport);
    closers.push(() => client.close());
    return { client, stderr: () => stderr };
  };

  before(async () => {
    t = await startTestBroker({ policy: POLICY });
    ids = await cliIdentities(t, { agent: 'agent/assistant', alice: 'human/alice', bob: 'human/bob' });
    const approver = (name: string) => {
      const env = ids.env[name] as NodeJS.ProcessEnv;
      return ApprovalsClient.fromEnv({}, env);
    };
    alice = approver('alice');
    bob = approver('bob');
    jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    alice?.close();
    bob?.close();
    await t?.close();
    await ids?.cleanup();
  });

  describe('countersign mcp (stdio)', () => {
    let client: Client;
    before(async () => {
      ({ client } = await stdioClient(['mcp']));
    });

    it('lists three tools whose descriptions say what approval means and not to retry a denial', async () => {
      const { tools } = await client.listTools();
      assert.deepEqual(
        tools.map((tool) => tool.name),
        ['countersign_request', 'countersign_status', 'countersign_cancel'],
      );
      const request = tools[0]!;
      assert.match(request.description ?? '', /BEFORE you perform it/);
      assert.match(request.description ?? '', /DENIED \(final: do NOT retry with different wording/);
      assert.deepEqual(request.inputSchema.required, ['operation', 'resource', 'reason']);
      assert.match(client.getInstructions() ?? '', /Never retry a denied request with different wording/);
    });

    it('answers APPROVED with a credential for exactly these parameters when policy allows', async () => {
      const result = await client.callTool({
        name: 'countersign_request',
        arguments: { operation: 'deploy', resource: 'staging/web', parameters: { version: '1.2.3' }, reason: 'test' },
      });
      assert.equal(result.isError, undefined);
      const outcome = result.structuredContent as { state: string; token: string };
      assert.equal(outcome.state, 'APPROVED');
      assert.match(text(result), /^APPROVED \(request req_/);
      const { claims } = await verifyCredential(outcome.token, {
        jwks,
        audience: 'https://deploy.example.org',
        parameters: { version: '1.2.3' },
        clientCertificate: ids.certs.agent,
      });
      assert.equal(claims.sub, AGENT);
    });

    it('waits for a human, reporting progress, and answers APPROVED once alice approves', async () => {
      const progress: string[] = [];
      const call = client.callTool(
        {
          name: 'countersign_request',
          arguments: {
            operation: 'deploy',
            resource: 'prod/web',
            parameters: { version: '2.0.0' },
            reason: 'release 2.0.0',
            wait_seconds: 300,
          },
        },
        undefined,
        { onprogress: (p) => progress.push(p.message ?? ''), resetTimeoutOnProgress: true, timeout: 120_000 },
      );
      const pending = await pendingOn('prod/web');
      assert.equal(pending.reason, 'release 2.0.0');
      await eventually('a progress notification', () => progress.length > 0);
      await alice.decide({ requestId: pending.id, decision: 'approve' });
      const result = await call;
      const outcome = result.structuredContent as { state: string; request_id: string; token: string };
      assert.deepEqual([outcome.state, outcome.request_id], ['APPROVED', pending.id]);
      assert.match(progress[0] as string, /PENDING_APPROVAL: 0 of 1 approval/);
    });

    it('answers PENDING_APPROVAL with an id at once (wait_seconds 0), then DENIED through countersign_status, with a final-answer text', async () => {
      const asked = await client.callTool({
        name: 'countersign_request',
        arguments: { operation: 'deploy', resource: 'prod/api', reason: 'hotfix', wait_seconds: 0 },
      });
      const pending = asked.structuredContent as { state: string; request_id: string; approvers: string[] };
      assert.equal(pending.state, 'PENDING_APPROVAL');
      assert.deepEqual(pending.approvers, ['alice', 'bob']);
      assert.match(text(asked), /Call countersign_status with request_id "req_/);
      const status = await client.callTool({
        name: 'countersign_status',
        arguments: { request_id: pending.request_id },
      });
      assert.equal((status.structuredContent as { state: string }).state, 'PENDING_APPROVAL');

      const waiting = client.callTool(
        { name: 'countersign_status', arguments: { request_id: pending.request_id, wait_seconds: 300 } },
        undefined,
        { timeout: 120_000 },
      );
      await bob.decide({ requestId: pending.request_id, decision: 'deny', reason: 'not during the freeze' });
      const denied = await waiting;
      assert.equal((denied.structuredContent as { state: string }).state, 'DENIED');
      assert.match(
        text(denied),
        /DENIED \(request req_\S+\): denied by bob \(grpc\): not during the freeze\. This decision is final\. Do not perform the operation, and do not ask again with different wording/,
      );
    });

    it('withdraws a request with countersign_cancel', async () => {
      const asked = await client.callTool({
        name: 'countersign_request',
        arguments: { operation: 'deploy', resource: 'prod/cancelled', reason: 'oops', wait_seconds: 0 },
      });
      const id = (asked.structuredContent as { request_id: string }).request_id;
      const cancelled = await client.callTool({
        name: 'countersign_cancel',
        arguments: { request_id: id, reason: 'user changed their mind' },
      });
      assert.equal((cancelled.structuredContent as { state: string }).state, 'CANCELLED');
      assert.ok(!(await alice.listPending()).some((r) => r.id === id));
    });

    it('refuses invalid input with a message naming the field, and passes on the broker refusal when policy denies', async () => {
      const invalid = await client.callTool({
        name: 'countersign_request',
        arguments: { operation: 'drop everything', resource: 'prod/db', reason: '' },
      });
      assert.equal(invalid.isError, true);
      assert.match(text(invalid), /operation must be 1-128 characters of letters, digits and \. _ : - .* at operation/);
      assert.match(text(invalid), /reason must not be empty: say why, approvers read it at reason/);
      const badId = await client.callTool({ name: 'countersign_status', arguments: { request_id: 'nope' } });
      assert.equal(badId.isError, true);
      assert.match(text(badId), /request_id must be the id countersign_request returned/);

      const denied = await client.callTool({
        name: 'countersign_request',
        arguments: { operation: 'db.drop_table', resource: 'prod-db/orders', reason: 'cleanup' },
      });
      assert.equal((denied.structuredContent as { state: string }).state, 'DENIED');
    });

    it('refuses unknown arguments instead of dropping them, and its schemas say so (additionalProperties: false)', async () => {
      const { tools } = await client.listTools();
      for (const tool of tools) assert.equal(tool.inputSchema.additionalProperties, false, tool.name);
      // "paramters": a typo that would otherwise ask for (and get) a credential for {}.
      const typo = await client.callTool({
        name: 'countersign_request',
        arguments: { operation: 'deploy', resource: 'staging/web', reason: 'test', paramters: { version: '1' } },
      });
      assert.equal(typo.isError, true);
      assert.match(
        text(typo),
        /unknown argument "paramters"; countersign_request takes operation, resource, parameters, reason, audience, wait_seconds/,
      );
      const extra = await client.callTool({
        name: 'countersign_status',
        arguments: { request_id: 'req_abc', wait: 10 },
      });
      assert.equal(extra.isError, true);
      assert.match(text(extra), /unknown argument "wait"; countersign_status takes request_id, wait_seconds/);
    });

    it('follows and cancels only requests this MCP server made, not others of the same workload (issue 14.11)', async () => {
      // Another process with the same SVID (a script, another agent) asks; alice approves it.
      const sameWorkload = CountersignClient.fromEnv({}, ids.env.agent);
      closers.push(() => sameWorkload.close());
      const other = await sameWorkload.request({
        operation: 'deploy',
        resource: 'prod/not-the-agents',
        reason: 'a release by hand',
      });
      await alice.decide({ requestId: other.requestId, decision: 'approve' });
      const status = await client.callTool({ name: 'countersign_status', arguments: { request_id: other.requestId } });
      assert.equal(status.isError, true);
      assert.match(
        text(status),
        new RegExp(
          `request ${other.requestId} was not made through this MCP server; it follows and cancels only its own requests`,
        ),
      );
      assert.doesNotMatch(JSON.stringify(status), /ey[\w-]+\.[\w-]+\.[\w-]+/, 'no credential');

      const pending = await sameWorkload.request({
        operation: 'deploy',
        resource: 'prod/not-the-agents-either',
        reason: 'another release by hand',
      });
      const cancel = await client.callTool({
        name: 'countersign_cancel',
        arguments: { request_id: pending.requestId },
      });
      assert.equal(cancel.isError, true);
      assert.equal((await sameWorkload.get(pending.requestId)).state, 'PENDING_APPROVAL');
    });
  });

  /** POSTs a JSON-RPC message the way any local process could; the status and body. */
  const post = (url: string, body: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
      const req = httpRequest(
        url,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
        },
        (res) => {
          let data = '';
          res.on('data', (d: Buffer) => (data += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data, headers: res.headers }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  it('countersign mcp --http takes only callers with its bearer secret, kept as privately as the SVID key (issue 14.11)', async () => {
    const config = join(ids.dir, 'xdg-config');
    const server = runCli({ ...(ids.env.agent as NodeJS.ProcessEnv), XDG_CONFIG_HOME: config }, ['mcp', '--http', '0']);
    closers.push(() => void server.child.kill('SIGTERM'));
    const url = await eventually(
      'the listening line',
      () => /listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)/.exec(server.stderr())?.[1],
    );

    // What user nobody did: ask through the port, with no secret or a guessed one.
    const call = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: {
        name: 'countersign_request',
        arguments: { operation: 'deploy', resource: 'staging/nobody', reason: 'x' },
      },
    });
    for (const headers of [{}, { authorization: 'Bearer guessed' }, { authorization: 'Basic bm9ib2R5Og==' }] as Record<
      string,
      string
    >[]) {
      const refused = await post(url, call, headers);
      assert.equal(refused.status, 401, JSON.stringify(headers));
      assert.match(String(refused.headers['www-authenticate']), /^Bearer realm="countersign-mcp"/);
      assert.doesNotMatch(refused.body, /ey[\w-]+\.[\w-]+\.[\w-]+/);
    }

    // The secret was made for this user alone, and the server says where it is (not what it is).
    const tokenFile = join(config, 'countersign', 'mcp-http.token');
    assert.match(
      server.stderr(),
      new RegExp(`Authorization: Bearer <the secret in ${tokenFile.replaceAll('/', '\\/')}>`),
    );
    assert.equal((await stat(tokenFile)).mode & 0o777, 0o600);
    assert.equal((await stat(join(config, 'countersign'))).mode & 0o777, 0o700);
    const secret = (await readFile(tokenFile, 'utf8')).trim();
    assert.ok(!server.stderr().includes(secret), 'the secret is never printed');

    const client = new Client({ name: 'countersign-test-http', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { authorization: `Bearer ${secret}` } },
      }),
    );
    closers.push(() => client.close());
    const result = await client.callTool({
      name: 'countersign_request',
      arguments: { operation: 'deploy', resource: 'staging/http', reason: 'test' },
    });
    assert.equal((result.structuredContent as { state: string }).state, 'APPROVED');
    // Host and Origin are still checked, secret or not (DNS rebinding).
    assert.equal(
      (await post(url, '{}', { host: 'attacker.example:80', authorization: `Bearer ${secret}` })).status,
      403,
    );
  });

  it('countersign mcp --http refuses a secret file others can read, and keeps the one it is given', async () => {
    const loose = join(ids.dir, 'loose.token');
    await writeFile(loose, 'a-secret-of-at-least-32-characters-0123456789\n', { mode: 0o644 });
    const refused = await finishCli(ids.env.agent as NodeJS.ProcessEnv, ['mcp', '--http', '0', '--token-file', loose]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /loose\.token is readable by other users \(mode 0644\); chmod 600 it \[ERR_MCP_TOKEN_FILE\]/,
    );
  });

  describe('countersign mcp-proxy', () => {
    let client: Client;
    let upstreamLog: string;
    let proxyStderr: () => string;
    const upstreamCalls = async () =>
      existsSync(upstreamLog)
        ? (await readFile(upstreamLog, 'utf8'))
            .trim()
            .split('\n')
            .filter((l) => l !== '')
            .map(
              (l) =>
                JSON.parse(l) as { tool: string; arguments: Record<string, unknown>; meta: Record<string, unknown> },
            )
        : [];

    before(async () => {
      const config = join(ids.dir, 'guard.yaml');
      upstreamLog = join(ids.dir, 'upstream.jsonl');
      await writeFile(config, PROXY_CONFIG);
      ({ client, stderr: proxyStderr } = await stdioClient(
        ['mcp-proxy', '--config', config, '--upstream', process.execPath, '--import', 'tsx', UPSTREAM],
        { MCP_UPSTREAM_LOG: upstreamLog },
      ));
    });

    it('passes tools/list and unguarded calls through untouched', async () => {
      const { tools } = await client.listTools();
      assert.deepEqual(
        tools.map((tool) => tool.name),
        ['query', 'drop_table', 'echo'],
      );
      const echoed = await client.callTool({ name: 'echo', arguments: { text: 'hello' }, _meta: { trace: 'abc' } });
      assert.deepEqual(JSON.parse(text(echoed)), {
        tool: 'echo',
        arguments: { text: 'hello' },
        meta: { trace: 'abc' },
      });
    });

    it('forwards a guarded call only once approved, with its exact arguments and the credential', async () => {
      const call = client.callTool({ name: 'drop_table', arguments: { table: 'orders', cascade: true } }, undefined, {
        timeout: 120_000,
      });
      const pending = await pendingOn('db/orders');
      assert.equal(pending.operation, 'db.drop_table');
      assert.equal(pending.reason, 'the agent wants to drop orders');
      assert.deepEqual(JSON.parse(pending.parametersJson), { cascade: true, table: 'orders' });
      assert.ok(
        !(await upstreamCalls()).some((c) => c.tool === 'drop_table'),
        'the upstream must not see the call before the approval',
      );

      await alice.decide({ requestId: pending.id, decision: 'approve', reason: 'orders is obsolete' });
      const result = await call;
      assert.equal(result.isError, undefined);
      const seen = JSON.parse(text(result)) as { arguments: Record<string, unknown>; meta: Record<string, string> };
      const token = seen.meta['io.countersign/credential'] as string;
      assert.equal(seen.meta['io.countersign/request_id'], pending.id);
      assert.deepEqual(seen.arguments, { table: 'orders', cascade: true, countersign_token: token });
      const upstream = (await upstreamCalls()).filter((c) => c.tool === 'drop_table');
      assert.equal(upstream.length, 1);
      assert.deepEqual(upstream[0]?.arguments, { table: 'orders', cascade: true, countersign_token: token });

      // What a resource server checks: the credential covers exactly the arguments the agent sent.
      const { claims } = await verifyCredential(token, {
        jwks,
        audience: 'https://deploy.example.org',
        operation: 'db.drop_table',
        resource: 'db/orders',
        parameters: { table: 'orders', cascade: true },
        clientCertificate: ids.certs.agent,
      });
      assert.equal(claims.approval?.approvers[0]?.principal, 'alice');
    });

    it('answers a denied call with a refusal; the upstream never sees it', async () => {
      const call = client.callTool({ name: 'drop_table', arguments: { table: 'users' } }, undefined, {
        timeout: 120_000,
      });
      const pending = await pendingOn('db/users');
      await bob.decide({ requestId: pending.id, decision: 'deny', reason: 'users is live data' });
      const result = await call;
      assert.equal(result.isError, true);
      assert.match(
        text(result),
        /Countersign refused this call to drop_table: DENIED \(request req_\S+\): denied by bob \(grpc\): users is live data\. The tool was not called\. This decision is final/,
      );
      assert.ok(!(await upstreamCalls()).some((c) => c.arguments.table === 'users'));
      assert.match(proxyStderr(), /drop_table: denied \(request req_\S+\)/);
    });

    it('refuses at once what policy denies, and what the templates cannot place', async () => {
      const denied = await client.callTool({ name: 'query', arguments: { table: 'salaries', sql: 'select *' } });
      assert.equal(denied.isError, true);
      assert.match(text(denied), /Countersign refused this call to query: DENIED/);
      const allowed = await client.callTool({ name: 'query', arguments: { table: 'reports', sql: 'select 1' } });
      assert.equal(allowed.isError, undefined);
      assert.equal((JSON.parse(text(allowed)) as { arguments: { table: string } }).arguments.table, 'reports');

      const escape = await client.callTool({ name: 'drop_table', arguments: { table: 'x/../reports' } });
      assert.equal(escape.isError, true);
      assert.match(text(escape), /arguments\.table = "x\/\.\.\/reports" cannot go into "db\/\{arguments\.table\}"/);
      const missing = await client.callTool({ name: 'drop_table', arguments: {} });
      assert.match(text(missing), /the call has no arguments\.table, which "db\/\{arguments\.table\}" needs/);
      const calls = await upstreamCalls();
      assert.ok(!calls.some((c) => c.arguments.table === 'salaries' || c.arguments.table === 'x/../reports'));
    });

    // Issue 14, finding 6: what cannot be approved exactly is refused, not asked for in another form.
    it('refuses a guarded call whose arguments the broker could not approve exactly, asking nobody', async () => {
      const received = (await t.auditEvents()).filter((e) => e.type === 'request_received').length;
      const result = await client.callTool({
        name: 'drop_table',
        arguments: JSON.parse('{"table":"cache","__proto__":{"cascade":true}}') as Record<string, unknown>,
      });
      assert.equal(result.isError, true);
      assert.match(
        text(result),
        /refuses this call to drop_table: its arguments cannot be approved exactly \(arguments \$\.__proto__: the member name "__proto__" is not accepted/,
      );
      assert.equal(
        (await t.auditEvents()).filter((e) => e.type === 'request_received').length,
        received,
        'no request was made',
      );
      assert.ok(!(await upstreamCalls()).some((c) => c.arguments.table === 'cache'), 'the upstream never saw it');
    });

    it('withdraws the request when the client cancels a call that waits for approval', async () => {
      const abort = new AbortController();
      const call = client.callTool({ name: 'drop_table', arguments: { table: 'sessions' } }, undefined, {
        signal: abort.signal,
        timeout: 120_000,
      });
      const pending = await pendingOn('db/sessions');
      abort.abort();
      await assert.rejects(call);
      await eventually(
        'the request cancelled',
        async () => !(await alice.listPending()).some((r) => r.id === pending.id),
      );
      // The proxy says so once the broker has answered the cancel, which can be a moment after
      // the request has left the pending list: wait for the line, do not race it.
      await eventually('the proxy to report the cancellation', () =>
        new RegExp(`cancelled request ${pending.id}: the MCP client cancelled the call`).test(proxyStderr()),
      );
      assert.ok(!(await upstreamCalls()).some((c) => c.arguments.table === 'sessions'));
    });
  });

  /** The guard proxy spoken to line by line, as an MCP client would (which cannot even serialize what an attacker sends). */
  const rawProxy = async (name: string) => {
    const config = join(ids.dir, `guard-${name}.yaml`);
    await writeFile(config, PROXY_CONFIG);
    const child = spawn(
      process.execPath,
      [CLI, 'mcp-proxy', '--config', config, '--', process.execPath, '--import', 'tsx', UPSTREAM],
      {
        env: {
          ...process.env,
          ...(ids.env.agent as NodeJS.ProcessEnv),
          MCP_UPSTREAM_LOG: join(ids.dir, `upstream-${name}.jsonl`),
        },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    closers.push(() => void child.kill('SIGKILL'));
    const answers: {
      id?: unknown;
      result?: { isError?: boolean; content?: { text: string }[] };
      error?: { code: number; message: string };
    }[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    createInterface({ input: child.stdout }).on('line', (line) =>
      answers.push(JSON.parse(line) as (typeof answers)[number]),
    );
    // 'close': after its stderr is read to the end.
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('close', (code, signal) => resolve({ code, signal })),
    );
    const send = (line: string) => child.stdin.write(`${line}\n`);
    const answerTo = (id: number) =>
      eventually(`the answer to ${id}`, () => {
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`the proxy exited (${child.exitCode ?? child.signalCode}):\n${stderr}`);
        return answers.find((a) => a.id === id);
      });
    send(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      }),
    );
    await answerTo(0);
    send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
    const callTool = (id: number, tool: string, args: Record<string, unknown>) =>
      send(JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: args } }));
    return { child, send, answerTo, callTool, exited, stderr: () => stderr };
  };

  // Issue 14.12: the proxy's handlers are bounded and guarded; nothing it is sent ends it.
  it('mcp-proxy answers an unguarded call nested 20,000 deep with an error, and keeps running and guarding', async () => {
    const proxy = await rawProxy('deep');
    proxy.callTool(1, 'drop_table', { table: 'deep_waiting' });
    const waiting = await pendingOn('db/deep_waiting');

    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    proxy.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":${deep}}}}`);
    const answer = await proxy.answerTo(2);
    assert.equal(answer.error?.code, -32600);
    assert.match(answer.error?.message ?? '', /nested deeper than 64 levels; the Countersign proxy did not forward it/);

    // A line too long to hold is refused too, and the next one is read as usual.
    proxy.send(
      `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"${'x'.repeat(17 * 1024 * 1024)}"}}}`,
    );
    proxy.callTool(4, 'echo', { text: 'still here' });
    const echoed = await proxy.answerTo(4);
    assert.equal(echoed.result?.isError, undefined);
    assert.match(echoed.result?.content?.[0]?.text ?? '', /still here/);
    assert.match(proxy.stderr(), /refused a message of more than 16 MiB/);
    assert.equal(
      (await alice.listPending()).find((r) => r.id === waiting.id)?.id,
      waiting.id,
      'the waiting call is still pending',
    );

    // The client goes away: the waiting request is withdrawn.
    proxy.child.stdin.end();
    await proxy.exited;
    await eventually(
      'the waiting request withdrawn',
      async () => !(await alice.listPending()).some((r) => r.id === waiting.id),
    );
  });

  for (const signal of ['SIGHUP', 'SIGQUIT', 'SIGUSR2'] as const) {
    it(`mcp-proxy withdraws the calls waiting for approval when ${signal} ends it`, async () => {
      const proxy = await rawProxy(`signal-${signal}`);
      proxy.callTool(1, 'drop_table', { table: `t_${signal.toLowerCase()}` });
      const waiting = await pendingOn(`db/t_${signal.toLowerCase()}`);
      proxy.child.kill(signal);
      await proxy.exited;
      await eventually(
        'the request withdrawn',
        async () => !(await alice.listPending()).some((r) => r.id === waiting.id),
        10_000,
      );
      assert.match(proxy.stderr(), new RegExp(`cancelled request ${waiting.id}: the proxy received ${signal}`));
    });
  }

  it('mcp-proxy with max_wait answers "still pending", and the same call made again joins that request', async () => {
    const config = join(ids.dir, 'guard-max-wait.yaml');
    const upstreamLog = join(ids.dir, 'upstream-max-wait.jsonl');
    await writeFile(config, `${PROXY_CONFIG}max_wait: 1s\n`);
    const { client } = await stdioClient(
      ['mcp-proxy', '--config', config, '--', process.execPath, '--import', 'tsx', UPSTREAM],
      { MCP_UPSTREAM_LOG: upstreamLog },
    );
    const first = await client.callTool({ name: 'drop_table', arguments: { table: 'audit_old' } });
    assert.equal(first.isError, true);
    assert.match(text(first), /has not approved this call to drop_table yet/);
    const pending = await pendingOn('db/audit_old');
    await alice.decide({ requestId: pending.id, decision: 'approve' });
    const second = await client.callTool({ name: 'drop_table', arguments: { table: 'audit_old' } });
    assert.equal(second.isError, undefined, text(second));
    assert.equal(
      (JSON.parse(text(second)) as { meta: Record<string, string> }).meta['io.countersign/request_id'],
      pending.id,
    );
  });
});
