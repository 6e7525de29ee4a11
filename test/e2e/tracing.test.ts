// OpenTelemetry: with an OTLP endpoint configured, each call becomes a server
// span that continues the caller's trace (W3C traceparent) and says what was
// decided, exported over OTLP/HTTP to a collector (here, a small fake one).
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { credentials, Metadata } from '@grpc/grpc-js';
import { BrokerClient, RequestOperationRequest, type RequestOperationResponse } from '@countersign/proto';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number; message?: string };
}

function collector(): Promise<{ server: Server; url: string; spans: OtlpSpan[]; contentTypes: string[] }> {
  const spans: OtlpSpan[] = [];
  const contentTypes: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      contentTypes.push(String(req.headers['content-type']));
      if (req.url === '/v1/traces') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
        };
        for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve({
        server,
        url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
        spans,
        contentTypes,
      });
    }),
  );
}

const attribute = (span: OtlpSpan, key: string): unknown => {
  const value = span.attributes.find((a) => a.key === key)?.value;
  return value === undefined ? undefined : Object.values(value)[0];
};

describe('tracing over OTLP/HTTP', () => {
  let t: TestBroker;
  let otlp: Awaited<ReturnType<typeof collector>>;
  let closed = false;

  before(async () => {
    otlp = await collector();
    t = await startTestBroker({
      extraConfig: `tracing:\n  otlp_endpoint: ${otlp.url}\n  service_name: countersign-test\n`,
    });
  });
  after(async () => {
    if (!closed) await t?.close();
    otlp?.server.close();
  });

  it("continues the caller's trace with a span per call that says what was decided", async () => {
    const svid = t.svid('ci/deployer');
    const client = new BrokerClient(
      t.address,
      credentials.createSsl(Buffer.from(t.ca.pem), Buffer.from(svid.keyPem), Buffer.from(svid.chainPem), {
        checkServerIdentity: () => undefined,
      }),
      { 'grpc.ssl_target_name_override': t.trustDomain },
    );
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentSpanId = '00f067aa0ba902b7';
    const call = (req: Partial<RequestOperationRequest>) => {
      const metadata = new Metadata();
      metadata.set('traceparent', `00-${traceId}-${parentSpanId}-01`);
      const full = RequestOperationRequest.create(req);
      return new Promise<RequestOperationResponse>((resolve, reject) =>
        client.requestOperation(full, metadata, (e, r) => (e ? reject(e) : resolve(r))),
      );
    };
    const allowed = await call({ operation: 'deploy', resource: 'staging/web' });
    await assert.rejects(call({ operation: 'deploy', resource: 'a b' }));
    client.close();
    // Closing the broker flushes what is batched.
    await t.close();
    closed = true;

    const mine = otlp.spans.filter((s) => s.traceId === traceId);
    assert.equal(mine.length, 2, JSON.stringify(otlp.spans.map((s) => s.name)));
    for (const span of mine) {
      assert.equal(span.parentSpanId, parentSpanId);
      assert.equal(span.name, 'countersign.v1/RequestOperation');
      assert.equal(span.kind, 2, 'SPAN_KIND_SERVER');
      assert.equal(attribute(span, 'rpc.system'), 'grpc');
    }
    const ok = mine.find((s) => attribute(s, 'countersign.request_id') === allowed.requestId);
    assert.ok(ok, 'the allowed call carries its request id');
    assert.equal(attribute(ok, 'countersign.state'), 'REQUEST_STATE_APPROVED');
    assert.equal(attribute(ok, 'countersign.rule'), 'staging-deploys');
    const failed = mine.find((s) => attribute(s, 'countersign.error_code') === 'ERR_INVALID_FIELD');
    assert.ok(failed, 'the refused call carries its error code');
    assert.equal(failed.status?.code, 2, 'STATUS_CODE_ERROR');
    assert.match(otlp.contentTypes[0] ?? '', /application\/json/);
  });
});
