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
      let firstUpdate!: () => void;
      const firstUpdateSeen = new Promise<void>((resolve) => (firstUpdate = resolve));
      let reconnected!: () => void;
      const reconnectSeen = new Promise<void>((resolve) => (reconnected = resolve));
      const watching = (async () => {
        for await (const update of client.watch(pending.requestId, {
          signal: abort.signal,
          onReconnect: (e) => {
            reconnects.push(e);
            reconnected();
          },
          maxBackoffMs: 200,
        })) {
          void update;
          firstUpdate();
        }
      })();
      const ended = watching.then(() => {
        if (!abort.signal.aborted) assert.fail('the watch ended without a reconnect');
      });
      // The first update (PENDING) arrives, so the stream is open; then the broker stops.
      await Promise.race([firstUpdateSeen, ended]);
      const started = Date.now();
      const closing = t.broker.close().then(() => (closed = true));
      // The test's timeout bounds the wait; the 10 s check below is what the test is about.
      await Promise.race([reconnectSeen, ended]);
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
