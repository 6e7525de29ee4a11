// Benchmark: the countersign CLI's start-up, each run a whole process as a user or a CI step
// starts it, next to `node -e ''` (the floor any node program pays) in the same run:
// `countersign --help`, and `countersign request` on the allow path against a broker
// (mTLS, policy, a credential issued and audited). The CLI is the compiled one (dist/, as
// installed; the build is brought up to date first) without the repository's source
// condition. Runs are interleaved so a noisy machine affects all three alike.
// Targets (issue 15): --help within 4x bare node, an allowed request within 8x.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startTestBroker } from '@countersign/broker/testing';
import { table } from './harness.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'agents/bin/countersign.js');

/** The environment of a user's shell: no source condition, no npm settings. */
function plainEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (k !== 'NODE_OPTIONS' && !k.toLowerCase().startsWith('npm_')) env[k] = v;
  return { ...env, ...extra };
}

/** Wall time of one whole process, start to exit, in milliseconds; fails on a non-zero exit. */
function timeProcess(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve(ms);
      else reject(new Error(`node ${args.join(' ')} exited ${code}: ${stderr}`));
    });
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

export async function benchCli(options: { runs: number }): Promise<void> {
  await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT, env: plainEnv({}) });
  // One workload asking again and again: lift the per-workload rate limit for the measurement.
  const t = await startTestBroker({
    extraConfig: 'requests:\n  limits: { requests_per_second: 100000, burst: 100000 }\n',
  });
  const dir = await mkdtemp(join(tmpdir(), 'countersign-bench-cli-'));
  try {
    const deployer = t.svid('ci/deployer');
    await Promise.all([
      writeFile(join(dir, 'cert.pem'), deployer.chainPem),
      writeFile(join(dir, 'key.pem'), deployer.keyPem),
      writeFile(join(dir, 'ca.pem'), t.ca.pem),
    ]);
    const identity = {
      COUNTERSIGN_ADDR: t.address,
      COUNTERSIGN_CERT: join(dir, 'cert.pem'),
      COUNTERSIGN_KEY: join(dir, 'key.pem'),
      COUNTERSIGN_CA: join(dir, 'ca.pem'),
    };
    const cases = [
      { name: "node -e ''", args: ['-e', ''], env: plainEnv({}) },
      { name: 'countersign --help', args: [CLI, '--help'], env: plainEnv({}) },
      {
        name: 'countersign request (allowed)',
        args: [CLI, 'request', '--operation', 'deploy', '--resource', 'staging/web', '--param', 'version=1.4.2'],
        env: plainEnv(identity),
      },
    ];
    const times = cases.map(() => [] as number[]);
    for (const c of cases) await timeProcess(c.args, c.env); // warm the file cache
    for (let i = 0; i < options.runs; i++) {
      for (const [j, c] of cases.entries()) (times[j] as number[]).push(await timeProcess(c.args, c.env));
    }
    const base = median(times[0] as number[]);
    const goals = [undefined, 4, 8];
    process.stdout.write(
      `\ncli: whole processes, median of ${options.runs} interleaved runs (compiled CLI; BENCH_CLI_RUNS to change)\n`,
    );
    const rows = cases.map((c, j) => {
      const m = median(times[j] as number[]);
      const goal = goals[j];
      return {
        process: c.name,
        'median ms': m.toFixed(0),
        'min ms': Math.min(...(times[j] as number[])).toFixed(0),
        'x bare node': (m / base).toFixed(2),
        goal: goal === undefined ? 'baseline' : `<= ${goal}x ${m / base <= goal ? 'met' : 'NOT MET'}`,
      };
    });
    process.stdout.write(`${table(rows)}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await t.close();
  }
}
