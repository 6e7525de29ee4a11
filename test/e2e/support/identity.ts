// Helpers for the identity end-to-end tests: raw calls with any certificate,
// what the broker serves on a new TLS connection, its audit trail and logs.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Writable } from 'node:stream';
import { connect as http2Connect, type ClientHttp2Session } from 'node:http2';
import { connect, type TLSSocket } from 'node:tls';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { BrokerClient, RequestOperationRequest, type RequestOperationResponse } from '@countersign/proto';
import { createLogger, type Logger, type TestBroker } from '@countersign/broker/testing';

export const emptyRequest = RequestOperationRequest.create();

/** One RequestOperation with exactly this chain and key (or none), and optional headers. */
export function rawCall(
  address: string,
  caPem: string,
  client: { chainPem: string; keyPem: string } | undefined,
  req: Partial<RequestOperationRequest>,
  headers: Record<string, string> = {},
): Promise<RequestOperationResponse> {
  const creds = client
    ? credentials.createSsl(Buffer.from(caPem), Buffer.from(client.keyPem), Buffer.from(client.chainPem), {
        checkServerIdentity: () => undefined,
      })
    : credentials.createSsl(Buffer.from(caPem), null, null, { checkServerIdentity: () => undefined });
  const raw = new BrokerClient(address, creds, { 'grpc.ssl_target_name_override': 'example.org' });
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  return new Promise((resolve, reject) => {
    raw.requestOperation({ ...emptyRequest, ...req }, metadata, { deadline: Date.now() + 20_000 }, (e, r) => {
      raw.close();
      if (e) reject(e);
      else resolve(r);
    });
  });
}

export async function rejection(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as ServiceError;
  }
  assert.fail('expected the call to fail');
}

export const errorCode = (e: ServiceError): string | undefined =>
  e.metadata?.get('countersign-error-code')[0]?.toString();

/** Polls until check() holds; fails with what was awaited. Generous by default: the machine is shared. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A TLS connection to the broker, kept open by the caller, presenting this SVID. */
export function openTls(port: number, client: { chainPem: string; keyPem: string }): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      cert: client.chainPem,
      key: client.keyPem,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      servername: 'example.org',
    });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** An HTTP/2 session (what gRPC runs on) over one TLS connection; ping() proves it is still up. */
export async function openH2(
  port: number,
  client: { chainPem: string; keyPem: string },
): Promise<{ session: ClientHttp2Session; socket: TLSSocket; ping(): Promise<void> }> {
  const socket = await openTls(port, client);
  const session = http2Connect('https://example.org', { createConnection: () => socket });
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  const ping = () => new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
  return { session, socket, ping };
}

/** The serial of the certificate the broker serves on a new connection. */
export async function servedSerial(port: number, client: { chainPem: string; keyPem: string }): Promise<string> {
  const socket = await openTls(port, client);
  const serial = socket.getPeerX509Certificate()?.serialNumber.toLowerCase() ?? '';
  socket.destroy();
  return serial;
}

export const serialOf = (der: Buffer): string => new X509Certificate(der).serialNumber.toLowerCase();

/** Audit events of the test broker, oldest first. */
export async function auditEvents(t: TestBroker): Promise<Record<string, unknown>[]> {
  return await t.auditEvents();
}

/** A logger whose JSON lines the test can read. */
export function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n'))
        if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ level: 'debug', destination }), lines };
}

/** The value of a counter or gauge in the broker's Prometheus text, summed over matching labels. */
export async function metricValue(t: TestBroker, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${t.broker.httpPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}
