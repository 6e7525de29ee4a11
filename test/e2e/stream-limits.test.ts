// Issue 14, finding 4 (streams): one workload opened 5,000 WatchRequest streams
// on one connection and every one was accepted; another principal's ListPending
// went from 46 ms to 3.7 s. Now a connection may have grpc.max_concurrent_streams
// streams open (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; a client that ignores it
// gets REFUSED_STREAM), and a workload requests.limits.max_watch_streams_per_workload
// watches per replica (RESOURCE_EXHAUSTED naming the key).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { credentials, Metadata, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { BrokerClient, WatchRequestRequest, type WatchRequestResponse } from '@countersign/proto';
import { ApprovalsClient, CountersignClient } from '@countersign/agent';
import { startTestBroker, type IssuedSvid, type TestBroker } from '@countersign/broker/testing';
import { metricValue, openH2, openTls, until } from './support/identity.js';

/** HPACK: a literal header field without indexing, with a literal name (RFC 7541 6.2.2); names and values < 127 bytes. */
const literal = (name: string, value: string) =>
  Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
const frame = (type: number, flags: number, streamId: number, payload: Buffer) => {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
};

/**
 * Opens `count` WatchRequest streams on one TLS connection at once, writing
 * HTTP/2 frames by hand and ignoring the server's SETTINGS_MAX_CONCURRENT_STREAMS
 * (as an attacker would). Returns how many were answered and how many refused.
 */
async function flood(
  socket: TLSSocket,
  requestId: string,
  count: number,
): Promise<{ answered: Set<number>; refused: Set<number> }> {
  const answered = new Set<number>();
  const refused = new Set<number>();
  let buffered = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buffered = Buffer.concat([buffered, d]);
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3);
      if (buffered.length < 9 + length) break;
      const type = buffered[3] as number;
      const streamId = buffered.readUInt32BE(5) & 0x7fffffff;
      const payload = buffered.subarray(9, 9 + length);
      if (type === 0x1) answered.add(streamId); // HEADERS
      if (type === 0x3 && payload.readUInt32BE(0) === 0x7) refused.add(streamId); // RST_STREAM REFUSED_STREAM
      if (type === 0x4 && ((buffered[4] as number) & 0x1) === 0) socket.write(frame(0x4, 0x1, 0, Buffer.alloc(0))); // ack SETTINGS
      buffered = buffered.subarray(9 + length);
    }
  });
  const message = Buffer.from(WatchRequestRequest.encode({ requestId }).finish());
  const grpcMessage = Buffer.concat([Buffer.from([0]), Buffer.from([0, 0, 0, 0]), message]);
  grpcMessage.writeUInt32BE(message.length, 1);
  const frames = [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(0x4, 0, 0, Buffer.alloc(0))];
  for (let i = 0; i < count; i++) {
    const id = 1 + 2 * i;
    const headers = Buffer.concat([
      Buffer.from([0x83, 0x87]), // :method POST, :scheme https (static table)
      literal(':path', '/countersign.v1.Broker/WatchRequest'),
      literal(':authority', 'example.org'),
      literal('content-type', 'application/grpc'),
      literal('te', 'trailers'),
    ]);
    frames.push(frame(0x1, 0x4, id, headers), frame(0x0, 0x1, id, grpcMessage)); // END_HEADERS; DATA with END_STREAM
  }
  socket.write(Buffer.concat(frames));
  await until(`an answer for each of ${count} streams`, () => answered.size + refused.size >= count, 20_000);
  return { answered, refused };
}

function watch(
  t: TestBroker,
  svid: IssuedSvid,
  requestId: string,
): {
  stream: ClientReadableStream<WatchRequestResponse>;
  first: Promise<WatchRequestResponse>;
  ended: Promise<ServiceError | undefined>;
  close(): void;
} {
  const creds = credentials.createSsl(Buffer.from(t.ca.pem), Buffer.from(svid.keyPem), Buffer.from(svid.chainPem), {
    checkServerIdentity: () => undefined,
  });
  // A client of its own per stream: its own connection, so only the per-workload limit is in play.
  const client = new BrokerClient(t.address, creds, { 'grpc.ssl_target_name_override': t.trustDomain });
  const stream = client.watchRequest({ requestId }, new Metadata());
  const first = new Promise<WatchRequestResponse>((resolve, reject) => {
    stream.once('data', resolve);
    stream.once('error', reject);
  });
  const ended = new Promise<ServiceError | undefined>((resolve) => {
    stream.on('error', (e: ServiceError) => resolve(e));
    stream.on('end', () => resolve(undefined));
  });
  first.catch(() => undefined);
  return { stream, first, ended, close: () => (stream.cancel(), client.close()) };
}

describe('stream limits', () => {
  let t: TestBroker;
  let deployer: IssuedSvid;
  let other: IssuedSvid;
  let pending: string;
  let otherPending: string;
  const clients: { close(): void }[] = [];

  before(async () => {
    t = await startTestBroker({
      grpcExtra: '  max_concurrent_streams: 4\n',
      extraConfig: 'requests:\n  limits:\n    max_watch_streams_per_workload: 3\n',
    });
    deployer = t.svid('ci/deployer');
    other = t.svid('ci/other');
    const ask = async (svid: IssuedSvid) => {
      const c = new CountersignClient({
        address: t.address,
        certChainPem: svid.chainPem,
        keyPem: svid.keyPem,
        caPem: t.ca.pem,
      });
      clients.push(c);
      const r = await c.requestOperation({
        operation: 'deploy',
        resource: 'prod/web',
        parameters: { version: '1.4.2' },
      });
      assert.equal(r.state, 'PENDING_APPROVAL', r.message);
      return r.requestId;
    };
    pending = await ask(deployer);
    otherPending = await ask(other);
  });
  after(async () => {
    for (const c of clients) c.close();
    await t?.close();
  });

  it('refuses the streams a connection opens beyond grpc.max_concurrent_streams, even from a client that ignores the limit', async () => {
    const socket = await openTls(t.broker.grpcPort, deployer);
    try {
      const { answered, refused } = await flood(socket, pending, 10);
      // 4 admitted (3 watching, the 4th refused by the per-workload limit with a status), 6 refused by HTTP/2 itself.
      assert.equal(answered.size, 4, `answered ${[...answered].join(',')}`);
      assert.equal(refused.size, 6, `refused ${[...refused].join(',')}`);
    } finally {
      socket.destroy();
    }
    await until('the flood is gone', async () => (await metricValue(t, 'countersign_watch_streams')) === 0);
  });

  it('tells every client the limit in its HTTP/2 settings (default 100)', async () => {
    const h2 = await openH2(t.broker.grpcPort, deployer);
    await h2.ping(); // the server's SETTINGS come before its PING ack
    assert.equal(h2.session.remoteSettings.maxConcurrentStreams, 4);
    h2.session.destroy();
    const defaults = await startTestBroker();
    try {
      const h2d = await openH2(defaults.broker.grpcPort, defaults.svid('ci/deployer'));
      await h2d.ping();
      assert.equal(h2d.session.remoteSettings.maxConcurrentStreams, 100);
      h2d.session.destroy();
    } finally {
      await defaults.close();
    }
  });

  it('refuses a workload more watches than requests.limits.max_watch_streams_per_workload, and no one else', async () => {
    const watches = [watch(t, deployer, pending), watch(t, deployer, pending), watch(t, deployer, pending)];
    clients.push(...watches);
    for (const w of watches) await w.first;

    const fourth = watch(t, deployer, pending);
    clients.push(fourth);
    const e = await fourth.ended;
    assert.ok(e, 'the fourth watch was refused');
    assert.equal(e.code, status.RESOURCE_EXHAUSTED, e.details);
    assert.equal(e.metadata.get('countersign-error-code')[0], 'ERR_TOO_MANY_WATCHES');
    assert.match(
      e.details,
      /^spiffe:\/\/example\.org\/ci\/deployer already has 3 WatchRequest streams open on this replica \(limit requests\.limits\.max_watch_streams_per_workload = 3\)/,
    );

    // Another workload watches its own request, and an approver lists what is pending.
    const others = watch(t, other, otherPending);
    clients.push(others);
    assert.equal((await others.first).request?.id, otherPending);
    const aliceSvid = t.svid('human/alice');
    const alice = new ApprovalsClient({
      address: t.address,
      certChainPem: aliceSvid.chainPem,
      keyPem: aliceSvid.keyPem,
      caPem: t.ca.pem,
    });
    clients.push(alice);
    assert.ok((await alice.listPending()).some((r) => r.id === pending));

    // A closed watch gives its slot back.
    watches[0]?.close();
    await until('a slot is free again', async () => {
      const again = watch(t, deployer, pending);
      clients.push(again);
      return again.first.then(
        () => true,
        () => false,
      );
    });
  });
});
