// The one Redis connection factory (docs/operations.md): the redis section is read
// in one place (URL, Sentinel, TLS, auth, durability), mistakes name the key, and
// readiness refuses a primary that cannot get writes onto the replicas asked for.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../src/config/config.js';
import {
  checkDurability,
  connectConfiguredRedis,
  durabilityOf,
  onlineReplicas,
  redisTarget,
} from '../src/config/redis.js';
import { TEST_REDIS_URL } from './support/redis.js';

const rest = `identity:
  svid: { cert_file: svid.pem, key_file: svid-key.pem }
  bundles:
    - { trust_domain: example.org, file: bundle.pem }
policy:
  file: policy.yaml
credentials:
  default_audience: https://deploy.example.org
  signing_keys:
    - file: signing-key.pem
`;
const config = (redis: string, dir = '/etc/countersign', extra = '') =>
  parseConfig(`trust_domain: example.org\nredis:\n${redis}${rest}${extra}`, join(dir, 'config.yaml'));
const problem = (redis: string): string => {
  try {
    config(redis);
  } catch (e) {
    assert.equal((e as { code?: string }).code, 'ERR_CONFIG_INVALID');
    return (e as Error).message;
  }
  return assert.fail('expected the config to be refused');
};

describe('redis config', () => {
  it('refuses a client certificate without its key, naming the missing key', () => {
    assert.match(
      problem('  url: rediss://redis:6380\n  tls: { cert_file: client.pem }\n'),
      /redis\.tls\.key_file.*cert_file and key_file go together/s,
    );
  });

  it('refuses TLS files that nothing would use', () => {
    assert.match(
      problem('  url: redis://redis:6379\n  tls: { ca_file: ca.pem }\n'),
      /redis\.tls.*is not rediss:\/\/ and sentinel\.tls is off/s,
    );
  });

  it('refuses a negative or fractional replica count, and an unknown durability key', () => {
    assert.match(problem('  durability: { replicas: -1 }\n'), /redis\.durability\.replicas/);
    assert.match(problem('  durability: { replicas: 1.5 }\n'), /redis\.durability\.replicas/);
    assert.match(problem('  durability: { replica: 1 }\n'), /redis\.durability.*replica/s);
  });

  it('on Redis Cluster, requires a prefix with a hash tag (one slot for every key) and refuses Sentinel besides', () => {
    assert.match(
      problem('  prefix: "countersign:"\n  cluster: { nodes: [r0:6379] }\n'),
      /redis\.prefix.*must start with a hash tag, e\.g\. "\{countersign\}:" \(got "countersign:"\)/s,
    );
    assert.match(
      problem(
        '  prefix: "{cs}:"\n  cluster: { nodes: [r0:6379] }\n  sentinel: { master_name: m, sentinels: [s0:26379] }\n',
      ),
      /redis\.cluster.*exclude each other/s,
    );
    assert.match(problem('  prefix: "{cs:"\n'), /redis\.prefix/);
    assert.match(problem('  cluster: { nodes: [] }\n  prefix: "{cs}:"\n'), /redis\.cluster\.nodes/);
    const c = config('  prefix: "{cs}:"\n  cluster: { nodes: [r0:6379, "r1.example:7000"] }\n');
    assert.equal(c.redis.prefix, '{cs}:');
  });

  it('takes the larger of redis.durability and the older audit.durability.wait_replicas', () => {
    assert.deepEqual(durabilityOf(config('  durability: { replicas: 2, timeout: 250ms }\n')), {
      waitReplicas: 2,
      waitLocalFsync: false,
      timeoutMs: 250,
    });
    const older = config(
      '  prefix: "t:"\n',
      '/etc/countersign',
      'audit:\n  durability: { wait_replicas: 1, timeout: 3s }\n',
    );
    assert.deepEqual(durabilityOf(older), { waitReplicas: 1, waitLocalFsync: false, timeoutMs: 3000 });
    assert.deepEqual(
      durabilityOf(config('  prefix: "t:"\n')),
      { waitReplicas: 0, waitLocalFsync: false, timeoutMs: 1000 },
      'any-key',
    );
  });
});

describe('redis connection factory', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'countersign-redis-factory-'));
    await writeFile(join(dir, 'redis-password'), 's3cret\n');
    await writeFile(join(dir, 'sentinel-password'), 'sentinel-s3cret\n');
    await writeFile(join(dir, 'ca.pem'), 'CA PEM');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads Sentinel, both passwords and TLS files relative to the config file', async () => {
    const c = config(
      `  url: rediss://ignored:6379/2
  password_file: redis-password
  tls: { ca_file: ca.pem, servername: redis.internal }
  sentinel:
    master_name: countersign
    sentinels: [s0:26379, s1:26379]
    password_file: sentinel-password
    tls: true
`,
      dir,
    );
    const target = await redisTarget(c);
    assert.equal(target.url, 'rediss://ignored:6379/2');
    assert.equal(target.options.password, 's3cret');
    assert.deepEqual(target.options.tls, { ca: 'CA PEM', servername: 'redis.internal' });
    assert.deepEqual(target.options.sentinel, {
      masterName: 'countersign',
      sentinels: [
        { host: 's0', port: 26379 },
        { host: 's1', port: 26379 },
      ],
      password: 'sentinel-s3cret',
      tls: { ca: 'CA PEM', servername: 'redis.internal' },
    });
  });

  it('reads the cluster seed nodes', async () => {
    const target = await redisTarget(
      config('  prefix: "{cs}:"\n  cluster: { nodes: [r0:6379, "r1.example:7000"] }\n', dir),
    );
    assert.deepEqual(target.options.cluster, {
      nodes: [
        { host: 'r0', port: 6379 },
        { host: 'r1.example', port: 7000 },
      ],
    });
    assert.equal(target.options.sentinel, undefined);
  });

  it('names the field and the file when a secret cannot be read', async () => {
    const c = config('  password_file: missing-password\n', dir);
    await assert.rejects(redisTarget(c), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_CONFIG_INVALID');
      assert.match(e.message, /redis\.password_file: cannot read .*missing-password/);
      return true;
    });
  });

  it('fails readiness with ERR_REDIS_NOT_DURABLE when the primary has fewer replicas than asked', async () => {
    const redis = await connectConfiguredRedis(config(`  url: ${TEST_REDIS_URL}\n`), 'countersign-test');
    try {
      const online = await onlineReplicas(redis, 10);
      await checkDurability(redis, { waitReplicas: online, waitLocalFsync: false, timeoutMs: 1000 }, 'any-key');
      await assert.rejects(
        checkDurability(redis, { waitReplicas: online + 1, waitLocalFsync: false, timeoutMs: 1000 }, 'any-key'),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'ERR_REDIS_NOT_DURABLE');
          assert.match(e.message, new RegExp(`replicas is ${online + 1} but the Redis primary has ${online} replica`));
          return true;
        },
      );
    } finally {
      redis.disconnect();
    }
  });
});
