import { readdirSync, readFileSync } from 'node:fs';
// Closed-loop load: `concurrency` callers each issue the next call as soon as the
// previous one returns, for a fixed time. Figures are only compared with a
// baseline measured in the same run, so a noisy machine affects both alike.

export interface LoadResult {
  calls: number;
  seconds: number;
  throughput: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** CPU time (user + system) the calling process spent per completed call, in microseconds. */
  cpuUsPerCall: number;
  /** Calls made before the measurement began (the server saw them too). */
  warmupCalls: number;
  /** Of cpuUsPerCall: user and system time, and per thread (by name, Linux only), in µs per call. */
  cpuSplit?: { user: number; system: number; threads: Record<string, number> };
  /** read and write system calls of this process per call (Linux /proc/self/io: sockets, pipes, files). */
  syscallsPerCall?: { reads: number; writes: number };
}

/** This process's read and write system calls so far (Linux; zeros elsewhere). */
export function syscallCounts(): { reads: number; writes: number } {
  try {
    const io = readFileSync('/proc/self/io', 'utf8');
    return { reads: Number(/^syscr: (\d+)/m.exec(io)?.[1]), writes: Number(/^syscw: (\d+)/m.exec(io)?.[1]) };
  } catch {
    return { reads: 0, writes: 0 };
  }
}

/** CPU time (ns) each thread of this process has run, by thread name (Linux /proc; empty elsewhere). */
export function threadCpuNs(): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const name =
        tid === String(process.pid)
          ? 'main'
          : `${readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()}:${Number(tid) - process.pid}`;
      const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      out.set(name, (out.get(name) ?? 0) + ns);
    }
  } catch {
    // Not Linux, or a thread ended while listed: no split.
  }
  return out;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export async function runLoad(
  call: () => Promise<unknown>,
  options: { concurrency: number; durationMs: number; warmupMs?: number },
): Promise<LoadResult> {
  // Warm-up: the same closed loop at the same concurrency, not measured, so the measurement sees
  // code that the JIT has compiled (a long-running caller's steady state), not its compilation.
  let warmupCalls = 0;
  const warmupEnd = performance.now() + (options.warmupMs ?? 500);
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (performance.now() < warmupEnd) {
        await call();
        warmupCalls++;
      }
    }),
  );
  const latencies: number[] = [];
  let errors = 0;
  const threadsBefore = threadCpuNs();
  const ioBefore = syscallCounts();
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  const end = start + options.durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await call();
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const io = syscallCounts();
  const threads: Record<string, number> = {};
  for (const [name, ns] of threadCpuNs()) {
    const us = (ns - (threadsBefore.get(name) ?? 0)) / 1000 / Math.max(1, latencies.length);
    if (us >= 0.5) threads[name] = Math.round(us);
  }
  latencies.sort((a, b) => a - b);
  return {
    calls: latencies.length,
    seconds,
    throughput: latencies.length / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors,
    cpuUsPerCall: (cpu.user + cpu.system) / Math.max(1, latencies.length),
    warmupCalls,
    cpuSplit: {
      user: cpu.user / Math.max(1, latencies.length),
      system: cpu.system / Math.max(1, latencies.length),
      threads,
    },
    syscallsPerCall: {
      reads: (io.reads - ioBefore.reads) / Math.max(1, latencies.length),
      writes: (io.writes - ioBefore.writes) / Math.max(1, latencies.length),
    },
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length === 0
    ? NaN
    : sorted.length % 2 === 1
      ? (sorted[mid] as number)
      : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export const fmt = (n: number, digits = 1): string => n.toFixed(digits);

export function table(rows: Record<string, string | number>[]): string {
  const headers = Object.keys(rows[0] ?? {});
  const widths = headers.map((h) => Math.max(h.length, ...rows.map((r) => String(r[h]).length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] as number)).join('  ');
  return [
    line(headers),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map((r) => line(headers.map((h) => String(r[h])))),
  ].join('\n');
}
