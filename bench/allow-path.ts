// Benchmark: the allow path (RequestOperation -> credential) over mTLS, against a
// bare grpc-js mTLS unary echo server using the same certificates, in the same
// run. The callers run in a separate process (load-client.ts) for both, so each
// server has its event loop to itself. Target: ratio >= 0.6 at 64 concurrent calls.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { echoService } from './echo.js';
import { PerformanceObserver } from 'node:perf_hooks';
import { fmt, median, syscallCounts, table, threadCpuNs, type LoadResult } from './harness.js';
import type { LoadClientConfig } from './load-client.js';

const run = promisify(execFile);
const loadClient = fileURLToPath(new URL('./load-client.ts', import.meta.url));

/** The callers' figures, and the CPU this process (which hosts both servers) spent per call meanwhile. */
async function load(config: LoadClientConfig, name: string): Promise<LoadResult & { serverCpuUsPerCall: number }> {
  const before = process.cpuUsage();
  const ioBefore = syscallCounts();
  const threadsBefore = threadCpuNs();
  let gcMs = 0;
  // By kind (minor: scavenges of the young generation; major: mark-compact; incremental: marking steps).
  const gcKinds: Record<string, number> = {};
  const kindName: Record<number, string> = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' };
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcMs += e.duration;
      const kind = kindName[(e as { detail?: { kind?: number } }).detail?.kind ?? 0] ?? 'other';
      gcKinds[kind] = (gcKinds[kind] ?? 0) + e.duration;
    }
  });
  gc.observe({ entryTypes: ['gc'] });
  // BENCH_CALLER_PROFILE=dir: a V8 CPU profile of the caller process too (one per run, named like the broker's).
  // BENCH_CALLER_WRAP='strace -c -f -o /tmp/{name}.strace': the caller run under another command ({name}: the run's).
  const profileDir = process.env.BENCH_CALLER_PROFILE;
  const nodeArgs = [
    ...(process.env.BENCH_CALLER_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
    ...(profileDir ? ['--cpu-prof', '--cpu-prof-interval=200', `--cpu-prof-dir=${profileDir}/${name}.caller`] : []),
    '--import',
    'tsx',
    loadClient,
    JSON.stringify(config),
  ];
  const wrap = process.env.BENCH_CALLER_WRAP?.replaceAll('{name}', name).split(' ').filter(Boolean) ?? [];
  const [file, ...args] = [...wrap, process.execPath, ...nodeArgs] as [string, ...string[]];
  const { stdout } = await run(file, args, { maxBuffer: 1 << 20 });
  const cpu = process.cpuUsage(before);
  const io = syscallCounts();
  const threadsAfter = threadCpuNs();
  gc.disconnect();
  const result = JSON.parse(stdout.trim().split('\n').pop() as string) as LoadResult;
  if (process.env.BENCH_CALLER_STDOUT) await writeFile(`${process.env.BENCH_CALLER_STDOUT}/${name}.out`, stdout);
  // The server also served the caller's warm-up calls meanwhile.
  const served = result.calls + result.warmupCalls;
  if (process.env.BENCH_CALLER_DETAIL === '1' || profileDir || wrap.length > 0)
    process.stderr.write(
      `caller ${name}: ${result.calls} calls measured (${result.warmupCalls} in the warm-up); ${JSON.stringify(result.cpuSplit)}; syscalls/call ${JSON.stringify(result.syscallsPerCall)}; server GC pauses ${((gcMs * 1000) / served).toFixed(1)} µs/call ${JSON.stringify(Object.fromEntries(Object.entries(gcKinds).map(([k, v]) => [k, Math.round((v * 1000) / served)])))}, threads µs/call ${JSON.stringify(Object.fromEntries([...threadsAfter].map(([k, v]) => [k, Math.round((v - (threadsBefore.get(k) ?? 0)) / 1000 / served)]).filter(([, v]) => (v as number) > 0)))}; server syscalls/call ${((io.reads - ioBefore.reads) / served).toFixed(2)} reads, ${((io.writes - ioBefore.writes) / served).toFixed(2)} writes\n`,
    );
  return { ...result, serverCpuUsPerCall: (cpu.user + cpu.system) / Math.max(1, served) };
}

type CommandStats = Map<string, { calls: number; usec: number }>;

/** Redis INFO commandstats: calls and server-side µs per command. */
async function commandStats(redis: TestBroker['broker']['redis']): Promise<CommandStats> {
  const out: CommandStats = new Map();
  for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    out.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return out;
}

/** What Redis did per broker call during a run: commands (by name) and server µs. */
function perCall(before: CommandStats, after: CommandStats, calls: number): { commands: string; usec: number } {
  const parts: string[] = [];
  let usec = 0;
  for (const [name, a] of after) {
    const b = before.get(name) ?? { calls: 0, usec: 0 };
    const n = (a.calls - b.calls) / calls;
    usec += (a.usec - b.usec) / calls;
    if (n >= 0.01 && name !== 'info') parts.push(`${name} ${n.toFixed(2)}`);
  }
  return { commands: parts.join(', '), usec };
}

/**
 * BENCH_CPU_PROFILE=dir: a V8 CPU profile of this process (the broker) while the broker
 * is under load, one .cpuprofile per run (open in Chrome DevTools or speedscope).
 */
async function profiled<T extends LoadResult>(name: string, run: () => Promise<T>): Promise<T> {
  if (process.env.BENCH_HEAP_PROFILE) return heapProfiled(process.env.BENCH_HEAP_PROFILE, name, run);
  const dir = process.env.BENCH_CPU_PROFILE;
  if (!dir) return run();
  let calls = 0;
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => session.post(method, params, (e, r) => (e ? reject(e) : resolve(r))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 200 });
  await post('Profiler.start');
  try {
    const result = await run();
    calls = result.calls + result.warmupCalls;
    return result;
  } finally {
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    // The calls the server answered meanwhile (measured and warm-up), for a per-call budget.
    await writeFile(join(dir, `${name}.calls`), String(calls));
    session.disconnect();
  }
}

/**
 * BENCH_HEAP_PROFILE=dir: a sampling heap profile of the broker's allocations under load,
 * the ones already collected included (what the garbage collector had to deal with), one
 * .heapprofile per run (Chrome DevTools: Memory, "Allocation sampling").
 */
async function heapProfiled<T extends LoadResult>(dir: string, name: string, run: () => Promise<T>): Promise<T> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => session.post(method, params, (e, r) => (e ? reject(e) : resolve(r))));
  // BENCH_HEAP_LIVE=ms: instead, only what is still alive that long after the start, under
  // load (what the calls in flight hold: what every scavenge has to copy), sampled finer.
  const liveMs = Number(process.env.BENCH_HEAP_LIVE ?? 0);
  await post('HeapProfiler.enable');
  await post('HeapProfiler.startSampling', {
    samplingInterval: liveMs > 0 ? 1024 : 16384,
    includeObjectsCollectedByMajorGC: liveMs === 0,
    includeObjectsCollectedByMinorGC: liveMs === 0,
  });
  const save = async (profile: unknown, calls: number) => {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `${name}.heapprofile`), JSON.stringify(profile));
    await writeFile(join(dir, `${name}.calls`), String(calls));
  };
  let stopped: Promise<void> | undefined;
  const timer =
    liveMs > 0
      ? setTimeout(() => {
          stopped = post('HeapProfiler.stopSampling').then((r) => save((r as { profile: unknown }).profile, 64));
        }, liveMs)
      : undefined;
  let calls = 0;
  try {
    const result = await run();
    calls = result.calls + result.warmupCalls;
    return result;
  } finally {
    clearTimeout(timer);
    if (liveMs > 0) await stopped;
    else await save(((await post('HeapProfiler.stopSampling')) as { profile: unknown }).profile, calls);
    session.disconnect();
  }
}

export async function benchAllowPath(options: {
  durationMs: number;
  concurrencies: number[];
  rounds: number;
  /** Each caller's own warm-up (closed loop at the measured concurrency), before its measured calls. */
  warmupMs: number;
  /** One unmeasured run of each server before the rounds. */
  serverWarmup: boolean;
}): Promise<void> {
  // One workload calling flat out: lift the per-workload rate limit (requests.limits) for the measurement.
  const t = await startTestBroker({
    extraConfig: 'requests:\n  limits: { requests_per_second: 100000, burst: 100000 }\n',
  });
  const dir = await mkdtemp(join(tmpdir(), 'countersign-bench-'));
  const brokerSvid = t.svid('countersign/broker');
  const deployer = t.svid('ci/deployer');
  const files = { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem'), caFile: join(dir, 'ca.pem') };
  await Promise.all([
    writeFile(files.certFile, deployer.chainPem),
    writeFile(files.keyFile, deployer.keyPem),
    writeFile(files.caFile, t.ca.pem),
  ]);

  // Baseline: grpc-js terminating mTLS itself, echoing the request bytes back.
  const echo = new Server();
  // BENCH_ECHO_PAD=bytes: the echo answers that many bytes instead of the request's (an experiment: what
  // an answer the size of the broker's costs the caller, with nothing else different).
  const pad = Number(process.env.BENCH_ECHO_PAD ?? 0);
  // BENCH_ECHO_BURN_US=µs: the echo spins that long per call first (a server as slow as the broker, nothing else different).
  const burnUs = Number(process.env.BENCH_ECHO_BURN_US ?? 0);
  echo.addService(echoService, {
    echo: (call: { request: Buffer }, cb: (e: null, r: Buffer) => void) => {
      if (burnUs > 0) {
        const until = performance.now() + burnUs / 1000;
        while (performance.now() < until);
      }
      cb(
        null,
        pad > 0
          ? Buffer.concat([call.request, Buffer.alloc(Math.max(0, pad - call.request.length), 120)])
          : call.request,
      );
    },
  });
  const echoPort = await new Promise<number>((resolve, reject) =>
    echo.bindAsync(
      '127.0.0.1:0',
      ServerCredentials.createSsl(
        Buffer.from(t.ca.pem),
        [{ private_key: Buffer.from(brokerSvid.keyPem), cert_chain: Buffer.from(brokerSvid.chainPem) }],
        true,
      ),
      (e, port) => (e ? reject(e) : resolve(port)),
    ),
  );

  // Interleaved rounds: echo and broker alternate (which goes first alternates too), so a
  // machine that gets busier or quieter during the run affects both alike; each round gives
  // a ratio, and the median of the rounds is reported with its spread (min-max).
  const rows: Record<string, string>[] = [];
  const redisRows: Record<string, string>[] = [];
  for (const concurrency of options.concurrencies) {
    const common = { ...files, concurrency, durationMs: options.durationMs, warmupMs: options.warmupMs, channels: 1 };
    const echoRuns: Awaited<ReturnType<typeof load>>[] = [];
    const brokerRuns: Awaited<ReturnType<typeof load>>[] = [];
    const ratios: number[] = [];
    const redisRuns: { commands: string; usec: number }[] = [];
    // Both servers run in this process for the whole benchmark: one unmeasured run of each first,
    // so the rounds measure their steady state, not the JIT compiling them (the broker has far more
    // code to compile than the echo, and compiling it took as much CPU as serving, on V8's threads).
    if (options.serverWarmup && concurrency === options.concurrencies[0]) {
      await load({ ...common, target: 'echo', address: `127.0.0.1:${echoPort}` }, `echo-c${concurrency}-warmup`);
      await load({ ...common, target: 'broker', address: t.address }, `allow-path-c${concurrency}-warmup`);
    }
    for (let round = 0; round < options.rounds; round++) {
      const runEcho = () =>
        load({ ...common, target: 'echo', address: `127.0.0.1:${echoPort}` }, `echo-c${concurrency}-r${round}`);
      const runBroker = async () => {
        const before = await commandStats(t.broker.redis);
        const result = await profiled(`allow-path-c${concurrency}-r${round}`, () =>
          load({ ...common, target: 'broker', address: t.address }, `allow-path-c${concurrency}-r${round}`),
        );
        redisRuns.push(perCall(before, await commandStats(t.broker.redis), result.calls + result.warmupCalls));
        return result;
      };
      let base: Awaited<ReturnType<typeof load>>;
      let broker: Awaited<ReturnType<typeof load>>;
      if (round % 2 === 0) {
        base = await runEcho();
        broker = await runBroker();
      } else {
        broker = await runBroker();
        base = await runEcho();
      }
      echoRuns.push(base);
      brokerRuns.push(broker);
      ratios.push(broker.throughput / base.throughput);
    }
    const m = (runs: Awaited<ReturnType<typeof load>>[], f: (r: Awaited<ReturnType<typeof load>>) => number) =>
      median(runs.map(f));
    rows.push({
      concurrency: String(concurrency),
      'echo calls/s': fmt(
        m(echoRuns, (r) => r.throughput),
        0,
      ),
      'broker calls/s': fmt(
        m(brokerRuns, (r) => r.throughput),
        0,
      ),
      'ratio median (min-max)': `${fmt(median(ratios), 2)} (${fmt(Math.min(...ratios), 2)}-${fmt(Math.max(...ratios), 2)})`,
      'echo p50/p99 ms': `${fmt(
        m(echoRuns, (r) => r.p50Ms),
        2,
      )}/${fmt(
        m(echoRuns, (r) => r.p99Ms),
        2,
      )}`,
      'broker p50/p99 ms': `${fmt(
        m(brokerRuns, (r) => r.p50Ms),
        2,
      )}/${fmt(
        m(brokerRuns, (r) => r.p99Ms),
        2,
      )}`,
      'server CPU µs/call echo/broker': `${fmt(
        m(echoRuns, (r) => r.serverCpuUsPerCall),
        0,
      )}/${fmt(
        m(brokerRuns, (r) => r.serverCpuUsPerCall),
        0,
      )}`,
      'caller CPU µs/call echo/broker': `${fmt(
        m(echoRuns, (r) => r.cpuUsPerCall),
        0,
      )}/${fmt(
        m(brokerRuns, (r) => r.cpuUsPerCall),
        0,
      )}`,
      errors: String([...echoRuns, ...brokerRuns].reduce((n, r) => n + r.errors, 0)),
    });
    // Redis's own figures (INFO commandstats) for the median round: what one allowed request costs it.
    const redis = [...redisRuns].sort((a, b) => a.usec - b.usec)[Math.floor(redisRuns.length / 2)];
    if (redis !== undefined)
      redisRows.push({
        concurrency: String(concurrency),
        'Redis µs/call (server)': fmt(redis.usec, 1),
        'Redis commands per call': redis.commands,
      });
  }
  process.stdout.write(
    '\nAllow path: RequestOperation -> signed credential + 3 audit records (one chained append), vs bare grpc-js mTLS echo\n',
  );
  process.stdout.write(
    '(callers in a separate process, doing the same work for both: send encoded bytes, receive the answer;\n',
  );
  process.stdout.write(
    ' target ratio >= 0.6 at 64 concurrent calls; CPU per call is the figure that holds on a busy machine)\n',
  );
  process.stdout.write(
    `${options.rounds} interleaved rounds per concurrency; figures are medians of the rounds\n${table(rows)}\n`,
  );
  process.stdout.write(
    `\nRedis per broker call (INFO commandstats, the whole Redis: other users of it count too)\n${table(redisRows)}\n`,
  );

  echo.forceShutdown();
  await t.close();
  await rm(dir, { recursive: true, force: true });
}
