// A stopping broker (SIGTERM in Kubernetes) turns its health NOT_SERVING and
// tells open WatchRequest streams to reconnect at once, instead of holding them
// until the grace period runs out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CountersignClient, type CountersignClientError } from '@countersign/agent';
import { startTestBroker } from '@countersign/broker/testing';

describe('graceful shutdown', () => {
  it('ends open watches with UNAVAILABLE ERR_SHUTTING_DOWN well before the grace period', async () => {
    const t = await startTestBroker({ shutdownGrace: '30s' });
    const deployer = t.svid('ci/deployer');
    const client = new CountersignClient({
      address: t.address,
      certChainPem: deployer.chainPem,
      keyPem: deployer.keyPem,
      caPem: t.ca.pem,
    });
    let closed = false;
    try {
      const pending = await client.requestOperation({ operation: 'deploy', resource: 'prod/web' });
      assert.equal(pending.state, 'PENDING_APPROVAL');
      const reconnects: CountersignClientError[] = [];
      const abort = new AbortController();
      const watching = (async () => {
        for await (const update of client.watch(pending.requestId, {
          signal: abort.signal,
          onReconnect: (e) => reconnects.push(e),
          maxBackoffMs: 200,
        })) {
          void update;
        }
      })();
      // The first update (PENDING) arrives, then the broker stops.
      await new Promise((r) => setTimeout(r, 300));
      const started = Date.now();
      const closing = t.broker.close().then(() => (closed = true));
      const deadline = Date.now() + 10_000;
      while (reconnects.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(reconnects.length > 0, 'the watcher was told to reconnect');
      assert.equal(reconnects[0]?.code, 'ERR_SHUTTING_DOWN');
      assert.match(reconnects[0]?.message ?? '', /shutting down/);
      assert.ok(Date.now() - started < 10_000, 'long before the 30 s grace period');
      abort.abort();
      await watching;
      client.close();
      await closing;
    } finally {
      client.close();
      if (!closed) await t.broker.close();
      await t.close().catch(() => undefined);
    }
  });
});
