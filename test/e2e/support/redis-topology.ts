// What the Redis topology tests (redis-failover, redis-cluster) share: brokers spawned as real
// processes, a policy with an allowed path, an approval path and a short-lived approval path,
// and limits high enough that only Redis decides how many calls succeed.
import { fileURLToPath } from 'node:url';

export const TD = 'example.org';
export const BROKER_BIN = fileURLToPath(new URL('../../../broker/bin/countersign-broker.js', import.meta.url));

/** The policy; `quickTimeout` is how long a quick/* approval may wait (so expiry fires during the test). */
export const topologyPolicy = (quickTimeout: string): string => `version: 1
rules:
  - name: staging-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "staging/*" }
    decision: allow
  - name: prod-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
  - name: quick-deploys
    match: { workload: "spiffe://${TD}/ci/*", operation: deploy, resource: "quick/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: ${quickTimeout} }
`;

export const LIMITS = `requests:
  limits: { max_pending_per_workload: 1000, requests_per_second: 1000, burst: 1000 }
`;
