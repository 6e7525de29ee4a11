// The requester SDK against a real broker: request() with one idempotency key
// across retries, waitForApproval() by watching or polling, aborting, and
// collectCredential() with typed errors.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  InterceptingCall,
  Metadata,
  status,
  type Interceptor,
  type InterceptorOptions,
  type NextCall,
} from '@grpc/grpc-js';
import type { RequestOperationRequest } from '@countersign/proto';
import type { JSONWebKeySet } from 'jose';
import {
  ApprovalsClient,
  CountersignClient,
  CountersignClientError,
  RequestNotApprovedError,
  verifyCredential,
  type ClientOptions,
  type OperationResult,
} from '@countersign/agent';
import { eventually, startTestBroker, TcpProxy, type IssuedSvid, type TestBroker } from '@countersign/broker/testing';

const POLICY = `version: 1
rules:
  - name: staging-deploys
    match: { workload: "spiffe://example.org/ci/*", operation: deploy, resource: "staging/*" }
    decision: allow
  - name: prod-deploys
    match: { workload: "spiffe://example.org/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
`;

async function refusal(p: Promise<unknown>): Promise<CountersignClientError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CountersignClientError, `expected a CountersignClientError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a refusal');
}

const isMethod = (options: InterceptorOptions, name: string) =>
  options.method_definition.path === `/countersign.v1.Broker/${name}`;

/** Lets the first RequestOperation reach the broker but loses its answer (UNAVAILABLE), recording each attempt's idempotency key. */
function losesFirstAnswer(keys: string[]): Interceptor {
  let lost = false;
  return (options: InterceptorOptions, nextCall: NextCall) => {
    if (!isMethod(options, 'RequestOperation')) return new InterceptingCall(nextCall(options));
    const loseThis = !lost;
    lost = true;
    return new InterceptingCall(nextCall(options), {
      sendMessage: (message: RequestOperationRequest, next) => {
        keys.push(message.clientRequestId);
        next(message);
      },
      start: (metadata, _listener, next) =>
        next(metadata, {
          // The answer still passes (grpc-js holds the status until it does), but the status says it was lost.
          onReceiveStatus: (s, nextStatus) =>
            nextStatus(
              loseThis
                ? {
                    code: status.UNAVAILABLE,
                    details: 'connection reset after the broker answered (test)',
                    metadata: new Metadata(),
                  }
                : s,
            ),
        }),
    });
  };
}

/** Answers every WatchRequest UNIMPLEMENTED without reaching the broker, like a proxy that cannot stream. */
const noStreams: Interceptor = (options, nextCall) => {
  if (!isMethod(options, 'WatchRequest')) return new InterceptingCall(nextCall(options));
  // The underlying call is never started: nothing reaches the broker.
  return new InterceptingCall(nextCall(options), {
    start: (_metadata, listener) =>
      setImmediate(() =>
        listener.onReceiveStatus({
          code: status.UNIMPLEMENTED,
          details: 'streams are not supported here (test)',
          metadata: new Metadata(),
        }),
      ),
    sendMessage: () => undefined,
    halfClose: () => undefined,
  });
};

/** Records the countersign error code of every GetRequest answer ('' for success). */
function getRequestCodes(codes: string[]): Interceptor {
  return (options, nextCall) => {
    if (!isMethod(options, 'GetRequest')) return new InterceptingCall(nextCall(options));
    return new InterceptingCall(nextCall(options), {
      start: (metadata, _listener, next) =>
        next(metadata, {
          onReceiveStatus: (s, nextStatus) => {
            codes.push(
              s.code === status.OK ? '' : (s.metadata.get('countersign-error-code')[0]?.toString() ?? String(s.code)),
            );
            nextStatus(s);
          },
        }),
    });
  };
}

describe('SDK: request, waitForApproval, collectCredential', () => {
  let t: TestBroker;
  let deployerSvid: IssuedSvid;
  let alice: ApprovalsClient;
  let bob: ApprovalsClient;
  let jwks: JSONWebKeySet;
  const clients: { close(): void }[] = [];

  const deployerOptions = (extra: Partial<ClientOptions> = {}): ClientOptions => ({
    address: t.address,
    certChainPem: deployerSvid.chainPem,
    keyPem: deployerSvid.keyPem,
    caPem: t.ca.pem,
    ...extra,
  });
  const deployer = (extra: Partial<ClientOptions> = {}) => {
    const c = new CountersignClient(deployerOptions(extra));
    clients.push(c);
    return c;
  };
  const pendingOf = async (resource: string) => (await alice.listPending()).filter((r) => r.resource === resource);

  before(async () => {
    t = await startTestBroker({ policy: POLICY, extraConfig: 'requests:\n  poll_interval: 2s\n' });
    deployerSvid = t.svid('ci/deployer');
    alice = new ApprovalsClient({ address: t.address, caPem: t.ca.pem, ...keyOf(t.svid('human/alice')) });
    bob = new ApprovalsClient({ address: t.address, caPem: t.ca.pem, ...keyOf(t.svid('human/bob')) });
    clients.push(alice, bob);
    jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
  });
  after(async () => {
    for (const c of clients) c.close();
    await t?.close();
  });

  it('retries a request whose answer was lost with the same idempotency key, so the broker holds one request, not two', async () => {
    const keys: string[] = [];
    const retries: string[] = [];
    const client = deployer({
      interceptors: [losesFirstAnswer(keys)],
      retry: { initialBackoffMs: 50, onRetry: (e) => retries.push(e.code) },
    });
    const result = await client.request({
      operation: 'deploy',
      resource: 'prod/idempotent',
      parameters: { version: '2.0.0' },
    });
    assert.equal(result.state, 'PENDING_APPROVAL');
    assert.deepEqual(retries, ['ERR_BROKER_UNAVAILABLE']);
    assert.equal(keys.length, 2);
    assert.equal(keys[0], keys[1], 'both attempts carry the same client_request_id');
    assert.match(keys[0] as string, /^cs-[0-9a-f-]{36}$/);
    const pending = await pendingOf('prod/idempotent');
    assert.deepEqual(
      pending.map((r) => r.id),
      [result.requestId],
    );

    // A new logical request gets a new key (and so a new request).
    const again = await client.request({
      operation: 'deploy',
      resource: 'prod/idempotent',
      parameters: { version: '2.0.0' },
    });
    assert.notEqual(again.requestId, result.requestId);
    assert.notEqual(keys[2], keys[0]);
  });

  it('retries while the broker is unreachable and succeeds once it is back', async () => {
    const proxy = await TcpProxy.start(Number(t.address.split(':')[1]));
    try {
      proxy.cut();
      const retries: number[] = [];
      const client = deployer({
        address: proxy.address,
        retry: {
          attempts: 50,
          initialBackoffMs: 100,
          maxBackoffMs: 300,
          onRetry: (_e, attempt) => retries.push(attempt),
        },
      });
      const asked = client.request({ operation: 'deploy', resource: 'staging/web', parameters: { version: '1' } });
      await eventually('a retry while the broker is unreachable', () => retries.length >= 2);
      proxy.resume();
      const result = await asked;
      assert.equal(result.state, 'APPROVED');
      assert.ok(result.token);
    } finally {
      await proxy.close();
    }
  });

  it('does not retry what the broker refused (INVALID_ARGUMENT)', async () => {
    const retries: string[] = [];
    const client = deployer({ retry: { onRetry: (e) => retries.push(e.code) } });
    const e = await refusal(client.request({ operation: 'deploy now', resource: 'prod/web' }));
    assert.equal(e.grpcStatus, status.INVALID_ARGUMENT);
    assert.deepEqual(retries, []);
  });

  it('waits by watching and yields the credential once approved, reporting each vote', async () => {
    const client = deployer();
    const asked = await client.request({ operation: 'deploy', resource: 'prod/watched', parameters: { version: '3' } });
    const updates: OperationResult[] = [];
    const waiting = client.waitForApproval(asked, { onUpdate: (u) => updates.push(u) });
    await eventually('the first update', () => updates.length > 0);
    await alice.decide({ requestId: asked.requestId, decision: 'approve', reason: 'ok' });
    const final = await waiting;
    assert.equal(final.state, 'APPROVED');
    assert.equal(updates.at(-1)?.state, 'APPROVED');
    const credential = await client.collectCredential(final);
    assert.equal(credential.token, final.token);
    assert.equal(credential.requestId, asked.requestId);
    await verifyCredential(credential.token, {
      jwks,
      audience: 'https://deploy.example.org',
      parameters: { version: '3' },
      clientCertificate: deployerSvid.chainPem,
    });
    // Collected again later by id: the same credential.
    assert.equal((await client.collectCredential(asked.requestId)).credentialId, credential.credentialId);
  });

  it('polls instead when streams do not work, honouring the poll interval', async () => {
    const codes: string[] = [];
    const client = deployer({ interceptors: [noStreams, getRequestCodes(codes)] });
    const asked = await client.request({ operation: 'deploy', resource: 'prod/polled', parameters: { version: '4' } });
    const reconnects: string[] = [];
    const waiting = client.waitForApproval(asked, { onReconnect: (e) => reconnects.push(e.code) });
    await eventually('a poll', () => codes.length >= 1);
    await bob.decide({ requestId: asked.requestId, decision: 'approve' });
    const final = await waiting;
    assert.equal(final.state, 'APPROVED');
    assert.ok(final.token);
    assert.deepEqual(reconnects, ['ERR_WATCH_UNAVAILABLE']);
    assert.ok(!codes.includes('ERR_SLOW_DOWN'), `polled faster than poll_interval: ${codes.join(',')}`);
  });

  it('slows down when the broker says ERR_SLOW_DOWN, and keeps waiting', async () => {
    const codes: string[] = [];
    const client = deployer({ interceptors: [getRequestCodes(codes)] });
    const asked = await client.request({
      operation: 'deploy',
      resource: 'prod/too-fast',
      parameters: { version: '5' },
    });
    await client.get(asked.requestId); // a poll just now: the next one within poll_interval is told to slow down
    const waiting = client.waitForApproval(asked.requestId, { mode: 'poll', pollIntervalMs: 10 });
    await eventually('a slow_down answer', () => codes.includes('ERR_SLOW_DOWN'));
    await eventually(
      'a successful poll after slowing down',
      () => codes.lastIndexOf('') > codes.indexOf('ERR_SLOW_DOWN'),
    );
    await alice.decide({ requestId: asked.requestId, decision: 'deny', reason: 'not today' });
    const final = await waiting;
    assert.equal(final.state, 'DENIED');
    assert.equal(final.message, 'denied by alice (grpc): not today');
    // Once the broker's interval is known, it is honoured: no slow_down after the first good answer.
    const firstGood = codes.indexOf('', 1);
    assert.ok(!codes.slice(firstGood).includes('ERR_SLOW_DOWN'), `slowed down again: ${codes.join(',')}`);

    const e = await refusal(client.collectCredential(final));
    assert.ok(e instanceof RequestNotApprovedError);
    assert.equal(e.code, 'ERR_REQUEST_DENIED');
    assert.match(e.message, /is DENIED: denied by alice \(grpc\): not today/);
  });

  it('stops waiting on abort and, with cancelOnAbort, withdraws the request', async () => {
    const client = deployer();
    const asked = await client.request({ operation: 'deploy', resource: 'prod/aborted' });
    const pendingError = await refusal(client.collectCredential(asked));
    assert.equal(pendingError.code, 'ERR_REQUEST_PENDING');

    const abort = new AbortController();
    let seen = false;
    const waiting = client.waitForApproval(asked, {
      signal: abort.signal,
      cancelOnAbort: 'no longer needed (test)',
      onUpdate: () => (seen = true),
    });
    await eventually('the watch running', () => seen);
    abort.abort();
    const e = await refusal(waiting);
    assert.equal(e.code, 'ERR_ABORTED');
    const later = await client.get(asked.requestId);
    assert.equal(later.state, 'CANCELLED');
    assert.match(later.message, /no longer needed \(test\)/);
    assert.equal((await refusal(client.collectCredential(later))).code, 'ERR_REQUEST_CANCELLED');
    assert.deepEqual(await pendingOf('prod/aborted'), []);
  });

  it('leaves the request pending when aborted without cancelOnAbort', async () => {
    const client = deployer();
    const asked = await client.request({ operation: 'deploy', resource: 'prod/left' });
    const e = await refusal(client.waitForApproval(asked, { signal: AbortSignal.timeout(200) }));
    assert.equal(e.code, 'ERR_ABORTED');
    assert.deepEqual(
      (await pendingOf('prod/left')).map((r) => r.id),
      [asked.requestId],
    );
  });
});

function keyOf(svid: IssuedSvid) {
  return { certChainPem: svid.chainPem, keyPem: svid.keyPem };
}
