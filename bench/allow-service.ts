// Benchmark: the broker's own work on the allow path, without gRPC, TLS or Redis:
// RequestService.requestOperation with the real validation, policy, minter (ES256,
// node:crypto) and audit events (normalised, canonicalised, chained and hashed as
// RedisAuditLog does; the append itself is a turn of the event loop and discards), 64
// calls in flight. In one process, so its CPU per call does not depend on how the
// callers, Redis and the broker share the cores (what `allow-path` measures), and an
// A/B of two builds is a few seconds each. Reports CPU µs and KB allocated per call
// (a sampling heap profile of one round, collected objects included).
import { Session } from 'node:inspector';
import { RequestOperationRequest } from '@countersign/proto';
import { chainNormalized, EMPTY_HEAD, type ChainHead } from '../broker/src/audit/chain.js';
import { normalizeEventText, type AuditEvent } from '../broker/src/audit/events.js';
import type { AuditLog } from '../broker/src/audit/audit-log.js';
import { generateSigningKeyPem, Keyring, parseSigningKey } from '../broker/src/credentials/keys.js';
import { CredentialMinter } from '../broker/src/credentials/mint.js';
import { Metrics } from '../broker/src/observability/metrics.js';
import { Policy } from '../broker/src/policy/policy.js';
import { RequestService, type Requester } from '../broker/src/requests/request-service.js';
import { REQUESTS_PER_TURN, TurnSlots } from '../broker/src/requests/turns.js';
import type { RequestStorePort } from '../broker/src/requests/ports.js';
import type { OutboxPort } from '../broker/src/requests/outbox.js';
import { fmt, median, table } from './harness.js';

const IN_FLIGHT = 64;

/** What RedisAuditLog does before its Lua call: normalise (JCS) each event, then chain and hash them. */
class ChainingAuditLog implements AuditLog {
  private head: ChainHead = EMPTY_HEAD;
  bytes = 0;

  async append(event: AuditEvent) {
    return (await this.appendAll([event]))[0]!;
  }

  async appendAll(events: AuditEvent[]) {
    const normalized = events.map(normalizeEventText);
    await new Promise((resolve) => setImmediate(resolve));
    const chained = chainNormalized(this.head, normalized, Date.now());
    this.head = chained[chained.length - 1]!.record;
    for (const c of chained) this.bytes += c.line.length;
    return chained.map((c) => c.record);
  }
}

async function allocatedKbPerCall(run: () => Promise<number>): Promise<number> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => session.post(method, params, (e, r) => (e ? reject(e) : resolve(r))));
  await post('HeapProfiler.enable');
  await post('HeapProfiler.startSampling', {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  const calls = await run();
  const { profile } = (await post('HeapProfiler.stopSampling')) as { profile: { samples: { size: number }[] } };
  session.disconnect();
  return profile.samples.reduce((sum, s) => sum + s.size, 0) / calls / 1024;
}

export async function benchAllowService(options: { calls: number; rounds: number }): Promise<void> {
  const clock = { now: () => Date.now() };
  const policy = Policy.parse(
    'version: 1\nrules:\n  - { name: deploys, match: { resource: "prod/*" }, decision: allow, ttl: 10m }\n',
    'policy.yaml',
  );
  const key = await parseSigningKey(generateSigningKeyPem('ES256'), 'bench.pem');
  const minter = new CredentialMinter(new Keyring([key], { maxTtlMs: 3600_000 }), {
    issuer: 'spiffe://example.org/countersign/broker',
    maxTtlMs: 3600_000,
    clock,
  });
  const audit = new ChainingAuditLog();
  const service = new RequestService(
    {
      policy: () => policy,
      minter,
      audit,
      store: {} as RequestStorePort,
      outbox: {} as OutboxPort,
      limiter: { take: () => Promise.resolve() },
      turns: new TurnSlots(REQUESTS_PER_TURN),
      clock,
      metrics: new Metrics(),
      announceBreakGlass: () => Promise.resolve(),
    },
    { defaultAudience: 'deployer', defaultTtlMs: 300_000, pollIntervalMs: 1000 },
  );
  const spiffeId = 'spiffe://example.org/ci/deployer';
  const me: Requester = {
    spiffeId,
    trustDomain: 'example.org',
    path: '/ci/deployer',
    thumbprint: 'u4vS7bCqvQ2R3-7r8lQ0o6rNqT0M5wz8vN2zB1cXy0E',
    serial: '01',
    notBefore: clock.now() - 60_000,
    notAfter: clock.now() + 86_400_000,
  };
  // The allow-path benchmark's request.
  const request = RequestOperationRequest.create({
    operation: 'deploy',
    resource: 'prod/web',
    parametersJson: '{"version":"1.2.3","replicas":3}',
  });
  const run = async (): Promise<number> => {
    let started = 0;
    let done = 0;
    await new Promise<void>((resolve, reject) => {
      const next = (): void => {
        if (started >= options.calls) return;
        started++;
        service.requestOperation(me, request).then(() => {
          if (++done === options.calls) resolve();
          else next();
        }, reject);
      };
      for (let i = 0; i < IN_FLIGHT; i++) next();
    });
    return options.calls;
  };
  await run(); // warm-up: JIT
  const cpu: number[] = [];
  for (let round = 0; round < options.rounds; round++) {
    const before = process.cpuUsage();
    await run();
    const used = process.cpuUsage(before);
    cpu.push((used.user + used.system) / options.calls);
  }
  const kb = await allocatedKbPerCall(run);
  const sorted = [...cpu].sort((a, b) => a - b);
  process.stdout.write(
    `\nAllow path in one process, no gRPC/TLS/Redis (RequestService: validate, policy, ES256 mint, 3 audit events chained), ${IN_FLIGHT} in flight\n`,
  );
  const row = {
    'calls per round': options.calls,
    rounds: options.rounds,
    'CPU µs/call median (min-max)': `${fmt(median(cpu))} (${fmt(sorted[0] as number)}-${fmt(sorted[sorted.length - 1] as number)})`,
    'KB allocated/call': fmt(kb),
    'audit record bytes/call': fmt(audit.bytes / (options.calls * (options.rounds + 2)), 0),
  };
  process.stdout.write(`${table([row])}\n`);
}
