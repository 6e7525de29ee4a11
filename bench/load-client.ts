// The load generator, run as its own process so that the server under test does
// not share its event loop (or its CPU time slice) with the callers.
// Usage: node --import tsx bench/load-client.ts '<json LoadClientConfig>'
import { readFileSync } from 'node:fs';
import { credentials, Metadata, makeGenericClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import {
  BrokerService,
  RequestOperationRequest,
  RequestState,
  type RequestOperationResponse,
} from '@countersign/proto';
import { echoService } from './echo.js';
import { runLoad } from './harness.js';

export interface LoadClientConfig {
  target: 'echo' | 'broker';
  address: string;
  certFile: string;
  keyFile: string;
  caFile: string;
  concurrency: number;
  durationMs: number;
  /** Closed-loop calls at the same concurrency before the measured ones (the caller's JIT warm-up). */
  warmupMs?: number;
  /** How many client channels (HTTP/2 connections) to spread calls over. */
  channels: number;
}

const config = JSON.parse(process.argv[2] as string) as LoadClientConfig;
const pem = {
  cert: readFileSync(config.certFile, 'utf8'),
  key: readFileSync(config.keyFile, 'utf8'),
  ca: readFileSync(config.caFile, 'utf8'),
};
const parameters = { version: '1.4.2', replicas: 3 };
let next = 0;
let call: () => Promise<unknown>;
const closers: (() => void)[] = [];

/** `config.channels` clients of one service, TLS set up alike for both targets (both servers present the broker's SVID). */
function channelsOf<C>(definition: ServiceDefinition, name: string): C[] {
  const Ctor = makeGenericClientConstructor(definition, name);
  return Array.from({ length: config.channels }, (_, i) => {
    const c = new Ctor(
      config.address,
      credentials.createSsl(Buffer.from(pem.ca), Buffer.from(pem.key), Buffer.from(pem.cert), {
        checkServerIdentity: () => undefined,
      }),
      { 'grpc.ssl_target_name_override': 'example.org', 'grpc-node.channel_id': i },
    );
    closers.push(() => c.close());
    return c as unknown as C;
  });
}

if (config.target === 'echo') {
  const clients = channelsOf<{ echo(req: Buffer, md: Metadata, cb: (e: Error | null, r: Buffer) => void): void }>(
    echoService,
    'Echo',
  );
  const payload = Buffer.from(JSON.stringify({ operation: 'deploy', resource: 'staging/web', parameters }));
  call = () => {
    const c = clients[next++ % clients.length] as (typeof clients)[number];
    return new Promise<Buffer>((resolve, reject) =>
      c.echo(payload, new Metadata(), (e, r) => (e ? reject(e) : resolve(r))),
    );
  };
} else {
  // The same work as the echo caller: bytes encoded once, sent as they are; the
  // answer is decoded (every call) only to check that a credential came back.
  // What a full SDK call costs on top is the caller's business, not the broker's.
  const definition = { requestOperation: { ...BrokerService.requestOperation, requestSerialize: (b: Buffer) => b } };
  const clients = channelsOf<{
    requestOperation(req: Buffer, md: Metadata, cb: (e: Error | null, r: RequestOperationResponse) => void): void;
  }>(definition, 'Broker');
  const payload = Buffer.from(
    RequestOperationRequest.encode(
      RequestOperationRequest.fromPartial({
        operation: 'deploy',
        resource: 'staging/web',
        parametersJson: JSON.stringify(parameters),
      }),
    ).finish(),
  );
  call = () => {
    const c = clients[next++ % clients.length] as (typeof clients)[number];
    return new Promise<RequestOperationResponse>((resolve, reject) =>
      c.requestOperation(payload, new Metadata(), (e, r) => {
        if (e) reject(e);
        else if (r.state !== RequestState.REQUEST_STATE_APPROVED || !r.credential?.token)
          reject(new Error(`unexpected answer: state ${r.state}`));
        else resolve(r);
      }),
    );
  };
}

await call();
const result = await runLoad(call, {
  concurrency: config.concurrency,
  durationMs: config.durationMs,
  ...(config.warmupMs === undefined ? {} : { warmupMs: config.warmupMs }),
});
for (const close of closers) close();
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
