// `countersign-broker audit export|verify`: the auditor's tools (the commands are defined in
// audit-command.ts). Export writes the
// chain (and its checkpoints) as JSON lines; verify checks the chain, the
// checkpoint signatures and the approval evidence of every credential, from
// Redis or from an exported file, and names where anything breaks.
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, decodeJwt, type JSONWebKeySet, type JWK } from 'jose';
import { headLine, readAuditExport, readAuditSnapshot, type AuditRange, type AuditSnapshot } from '../audit/export.js';
import { checkpointLine } from '../audit/sinks.js';
import { verifyAuditTrail, type AuditProblem, type AuditReport, type ProblemKind } from '../audit/verify.js';
import { CountersignError } from '../errors.js';
import type { Redis } from '../redis/connection.js';
import { connectConfiguredRedis } from '../config/redis.js';
import { Keys } from '../redis/keys.js';
import { parseRecord } from '../audit/chain.js';
import { configFileOf, loadKeyring, type ConfigFlags } from './config-source.js';
import { loadConfig, type BrokerConfig } from '../config/config.js';
import { configuredPublicUrl } from '../console/public-url.js';
import { AUDIT_EXIT } from './constants.js';
import { err, out } from './output.js';

export interface RangeFlags {
  fromSeq?: number;
  toSeq?: number;
  since?: number;
  until?: number;
}

const rangeOf = (o: RangeFlags): AuditRange => ({
  fromSeq: o.fromSeq,
  toSeq: o.toSeq,
  since: o.since,
  until: o.until,
});

export type VerifyFlags = ConfigFlags &
  RangeFlags & { file?: string; against?: string; jwks: string[]; output: 'text' | 'json' };

async function withRedis<T>(config: BrokerConfig, use: (redis: Redis, keys: Keys) => Promise<T>): Promise<T> {
  const redis = await connectConfiguredRedis(config, 'countersign-audit-cli');
  try {
    return await use(redis, new Keys(config.redis.prefix));
  } finally {
    redis.disconnect();
  }
}

/** Records and checkpoints as export lines: each checkpoint right after the record it covers. */
export function exportLines(snapshot: AuditSnapshot): string[] {
  const bySeq = new Map<number, string[]>();
  const orphans: string[] = [];
  for (const jws of snapshot.checkpoints) {
    let seq: number | undefined;
    try {
      seq = decodeJwt(jws).seq as number;
    } catch {
      seq = undefined;
    }
    if (seq === undefined) orphans.push(jws);
    else bySeq.set(seq, [...(bySeq.get(seq) ?? []), jws]);
  }
  const lines: string[] = [];
  const placed = new Set<number>();
  for (const record of snapshot.records) {
    lines.push(record);
    const seq = parseRecord(record)?.seq;
    if (seq !== undefined && !placed.has(seq)) {
      placed.add(seq);
      for (const jws of bySeq.get(seq) ?? []) lines.push(checkpointLine(jws));
    }
  }
  for (const [seq, list] of bySeq) if (!placed.has(seq)) for (const jws of list) lines.push(checkpointLine(jws));
  for (const jws of orphans) lines.push(checkpointLine(jws));
  // Last, the signed head, so an offline verify checks that nothing was cut off the end.
  if (snapshot.head?.sig !== undefined) lines.push(headLine(snapshot.head.sig));
  return lines;
}

async function readJwks(source: string): Promise<JWK[]> {
  let text: string;
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(source, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok)
      throw new CountersignError('unavailable', 'ERR_JWKS_UNAVAILABLE', `--jwks ${source}: HTTP ${res.status}`);
    text = await res.text();
  } else {
    try {
      text = await readFile(source, 'utf8');
    } catch (e) {
      throw new CountersignError(
        'invalid_argument',
        'ERR_JWKS_INVALID',
        `--jwks ${source}: cannot read: ${(e as Error).message}`,
      );
    }
  }
  try {
    const doc = JSON.parse(text) as JSONWebKeySet;
    if (!Array.isArray(doc.keys)) throw new Error('no "keys" array');
    return doc.keys;
  } catch (e) {
    throw new CountersignError(
      'invalid_argument',
      'ERR_JWKS_INVALID',
      `--jwks ${source}: not a JWKS document (${(e as Error).message})`,
    );
  }
}

function printReport(report: AuditReport, source: string, against: string | undefined): void {
  const range = report.firstSeq === undefined ? 'no records' : `seq ${report.firstSeq}-${report.lastSeq ?? '?'}`;
  out(
    `audit verify: ${source}: ${report.records} records (${range}), ${report.checkpoints} checkpoints, ${report.credentials} credentials issued`,
  );
  const section = (
    kind: ProblemKind | ((p: AuditProblem) => boolean),
    ok: string | undefined,
    fail: (n: number) => string,
  ) => {
    const found = report.problems.filter(typeof kind === 'function' ? kind : (p) => p.kind === kind);
    if (found.length === 0) {
      if (ok !== undefined) out(`  OK    ${ok}`);
      return;
    }
    out(`  FAIL  ${fail(found.length)}`);
    for (const p of found.slice(0, 20)) out(`          ${p.code}  ${p.message}`);
    if (found.length > 20) out(`          ... and ${found.length - 20} more`);
  };
  const chain = report.problems.filter((p) => p.kind === 'chain');
  section(
    'chain',
    'hash chain intact',
    () => `the chain breaks at seq ${Math.min(...chain.map((p) => p.seq ?? Infinity))}`,
  );
  section(
    'head',
    report.headVerified ? `the chain ends at its signed head (seq ${report.lastSeq ?? 0})` : undefined,
    (n) => `${n} problem(s) with the end of the chain`,
  );
  section(
    'checkpoint',
    `${report.validCheckpoints} checkpoint(s) verified${report.latestCheckpointSeq === undefined ? '' : `, the latest covers seq ${report.latestCheckpointSeq}`}`,
    (n) => `${n} checkpoint problem(s)`,
  );
  const passkeyProblem = (p: AuditProblem) => p.code === 'ERR_AUDIT_PASSKEY_INVALID';
  section(
    (p) => p.kind === 'evidence' && !passkeyProblem(p),
    'every issued credential has its approval evidence',
    (n) => `${n} credential(s) without approval evidence`,
  );
  if (report.passkeyVotes > 0 || report.problems.some(passkeyProblem)) {
    section(
      passkeyProblem,
      `${report.passkeyVotes} passkey vote(s) verified again from the trail (signature, challenge, origin, user verification)`,
      (n) => `${n} passkey vote(s) that do not verify from the trail`,
    );
  }
  section('restart', undefined, (n) => `${n} chain restart(s): records were lost or the chain was altered in Redis`);
  section(
    'copy',
    against === undefined ? undefined : `nothing in ${against} is missing from the chain`,
    (n) => `${n} gap(s) compared with ${against ?? 'the copy'}`,
  );
  for (const w of report.warnings) out(`  note  ${w}`);
}

/** Verifies the whole chain in the configuration's Redis with its own keys (what `audit verify` does by default). */
export async function verifyRedisTrail(config: BrokerConfig): Promise<AuditReport> {
  const keys = (await loadKeyring(config)).allPublicJwks().keys;
  const snapshot = await withRedis(config, (redis, k) => readAuditSnapshot(redis, k, {}));
  return verifyAuditTrail({ ...snapshot, getKey: createLocalJWKSet({ keys }), consoleOrigin: consoleOriginOf(config) });
}

/** The configured console's origin: votes of passkeys registered for an earlier origin are named in a warning (each is checked against its own registration). */
function consoleOriginOf(config: BrokerConfig | undefined): string | undefined {
  const url = config?.console.enabled ? configuredPublicUrl(config) : undefined;
  return url === undefined ? undefined : new URL(url).origin;
}

export function exitCodeOf(report: AuditReport): number {
  const codes = report.problems.map((p) => AUDIT_EXIT[p.kind]);
  return codes.length === 0 ? 0 : Math.min(...codes);
}

/** `audit export`. */
export async function runAuditExport(o: ConfigFlags & RangeFlags & { out?: string }): Promise<void> {
  const config = await loadConfig(configFileOf(o) as string);
  const snapshot = await withRedis(config, (redis, keys) => readAuditSnapshot(redis, keys, rangeOf(o)));
  const lines = exportLines(snapshot);
  if (o.out === undefined) {
    for (const line of lines) out(line);
  } else {
    const stream = createWriteStream(o.out, { mode: 0o600 });
    for (const line of lines) stream.write(`${line}\n`);
    await new Promise<void>((resolve, reject) => stream.end((e?: Error | null) => (e ? reject(e) : resolve())));
    err(`wrote ${snapshot.records.length} records and ${snapshot.checkpoints.length} checkpoints to ${o.out}`);
  }
}

/** `audit verify`. */
export async function runAuditVerify(o: VerifyFlags): Promise<void> {
  const configFile = configFileOf(o, { required: o.file === undefined || o.jwks.length === 0 });
  const config = configFile === undefined ? undefined : await loadConfig(configFile);
  const keys: JWK[] = [];
  for (const source of o.jwks) keys.push(...(await readJwks(source)));
  if (config !== undefined) keys.push(...(await loadKeyring(config)).allPublicJwks().keys);
  let snapshot: AuditSnapshot;
  let source: string;
  if (o.file !== undefined) {
    snapshot = await readAuditExport(o.file);
    source = o.file;
  } else {
    const c = config as BrokerConfig;
    snapshot = await withRedis(c, (redis, k) => readAuditSnapshot(redis, k, rangeOf(o)));
    source = `redis prefix ${c.redis.prefix}`;
  }
  const against = o.against === undefined ? undefined : { name: o.against, snapshot: await readAuditExport(o.against) };
  const unique = [...new Map(keys.map((k) => [k.kid ?? JSON.stringify(k), k])).values()];
  const report = await verifyAuditTrail({
    ...snapshot,
    against,
    getKey: createLocalJWKSet({ keys: unique }),
    consoleOrigin: consoleOriginOf(config),
  });
  if (o.output === 'json')
    out(JSON.stringify({ source, ...(o.against === undefined ? {} : { against: o.against }), ...report }, null, 2));
  else printReport(report, source, o.against);
  process.exitCode = exitCodeOf(report);
}
