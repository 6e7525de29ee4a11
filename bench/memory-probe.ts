// Where a pending request's bytes go: every key it adds to Redis, with MEMORY USAGE
// and encoding, and each field of its hash. Run: node --import tsx bench/memory-probe.ts
import { CountersignClient } from '@countersign/agent';
import { connectRedis, startTestBroker } from '@countersign/broker/testing';

const TD = 'example.org';
const t = await startTestBroker({
  policy: `version: 1
rules:
  - name: prod-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 60s }
`,
});
const admin = await connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const svid = t.svid('ci/deployer');
const deployer = new CountersignClient({
  address: t.address,
  certChainPem: svid.chainPem,
  keyPem: svid.keyPem,
  caPem: t.ca.pem,
});
const scan = async () => {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await admin.scan(cursor, 'MATCH', `${t.prefix}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0');
  const out = new Map<string, string>();
  for (const k of keys)
    out.set(
      k,
      `${String(await admin.call('MEMORY', 'USAGE', k, 'SAMPLES', '0'))} ${await admin.type(k)} ${String(await admin.object('ENCODING', k))}`,
    );
  return out;
};
await deployer.requestOperation({
  operation: 'deploy',
  resource: 'prod/service-0',
  parameters: { version: '1.0.0', replicas: 3, image: `registry.example.org/service-0@sha256:${'ab'.repeat(32)}` },
  reason: 'warm',
});
const before = await scan();
const r = await deployer.requestOperation({
  operation: 'deploy',
  resource: 'prod/service-1',
  parameters: { version: '1.1.0', replicas: 3, image: `registry.example.org/service-1@sha256:${'ab'.repeat(32)}` },
  reason: 'release train 42',
});
const after = await scan();
for (const [k, v] of after)
  if (before.get(k) !== v) process.stdout.write(`${k.slice(t.prefix.length)}  ${before.get(k) ?? '-'} -> ${v}\n`);
const hash = await admin.hgetall(`${t.prefix}req:${r.requestId}`);
for (const [f, v] of Object.entries(hash))
  process.stdout.write(`  ${f} ${v.length}${v.length > 64 ? ' (> 64)' : ''}\n`);
for (const [k] of after) {
  if (before.has(k) || !k.includes(r.requestId) || k.endsWith(r.requestId)) continue;
  if ((await admin.type(k)) !== 'hash') continue;
  process.stdout.write(`${k.slice(t.prefix.length)}\n`);
  for (const [f, v] of Object.entries(await admin.hgetall(k)))
    process.stdout.write(`  ${f} ${v.length}${v.length > 64 ? ' (> 64)' : ''} ${v.slice(0, 120)}\n`);
}
deployer.close();
await t.close();
admin.disconnect();
process.exit(0);
