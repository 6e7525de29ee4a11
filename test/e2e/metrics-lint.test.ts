// The broker's real /metrics output, linted by promtool (Prometheus' own checker): names,
// types and help texts as Prometheus expects, and process/runtime metrics under the names
// stock dashboards query (process_*, nodejs_*), not under a prefix of ours.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { CountersignClient } from '@countersign/agent';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { tool } from './support/tools.js';

describe('metrics exposition', () => {
  let t: TestBroker;
  let text: string;
  before(async () => {
    t = await startTestBroker();
    // Some traffic, so labelled series exist and are linted too.
    const svid = t.svid('ci/deployer');
    const client = new CountersignClient({
      address: t.address,
      certChainPem: svid.chainPem,
      keyPem: svid.keyPem,
      caPem: t.ca.pem,
    });
    await client.requestOperation({ operation: 'deploy', resource: 'staging/web' });
    await client.requestOperation({ operation: 'drop', resource: 'prod/db' });
    await client.requestOperation({ operation: 'deploy', resource: 'prod/web' });
    client.close();
    text = await (await fetch(`http://127.0.0.1:${t.broker.httpPort}/metrics`)).text();
  });
  after(async () => t?.close());

  it('passes promtool check metrics', async () => {
    const result = await new Promise<{ code: number; output: string }>((resolve) => {
      const child = execFile(tool('promtool'), ['check', 'metrics'], { encoding: 'utf8' }, (e, stdout, stderr) =>
        resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : -1, output: stdout + stderr }),
      );
      child.stdin?.end(text);
    });
    assert.equal(result.code, 0, result.output);
  });

  it('names process and runtime metrics as every exporter does', () => {
    assert.match(text, /^process_resident_memory_bytes \d/m);
    assert.match(text, /^process_cpu_seconds_total \d/m);
    assert.match(text, /^nodejs_eventloop_lag_seconds \d/m);
    assert.match(text, /^# TYPE nodejs_active_handles gauge$/m);
    assert.doesNotMatch(text, /^countersign_(process|nodejs)_/m);
    assert.match(text, /^countersign_requests_total\{decision="allow",rule="staging-deploys"\} 1$/m);
  });

  it('names no gauge like a counter', () => {
    const gauges = [...text.matchAll(/^# TYPE (\S+) gauge$/gm)].map((m) => m[1] as string);
    assert.ok(gauges.length > 5);
    assert.deepEqual(
      gauges.filter((name) => name.endsWith('_total')),
      [],
    );
  });
});
