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
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export async function runLoad(
  call: () => Promise<unknown>,
  options: { concurrency: number; durationMs: number; warmupMs?: number },
): Promise<LoadResult> {
  const warmupEnd = performance.now() + (options.warmupMs ?? 500);
  let warmupCalls = 0;
  while (performance.now() < warmupEnd) {
    const batch = Math.min(options.concurrency, 8);
    await Promise.all(Array.from({ length: batch }, call));
    warmupCalls += batch;
  }
  const latencies: number[] = [];
  let errors = 0;
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
