// `audit verify`: walks the chain and names the first sequence number where it
// breaks; checks the chain's end against its signed head, and every checkpoint's
// signature, its match with the chain and that none is missing; runs the
// per-record checks (approval evidence for every credential, chain restarts,
// every passkey vote verified again from the trail: passkey-evidence.ts);
// and, given a copy from outside Redis (the file sink), names what Redis lost.
// Pure: it reads what it is given (from Redis or an exported file) and a key set.
import type { JWTVerifyGetKey } from 'jose';
import { GENESIS_HASH, parseRecord, recordHash, type AuditRecord } from './chain.js';
import { verifyCheckpoint, type CheckpointClaims } from './checkpoints.js';
import type { AuditSnapshot, SnapshotHead } from './export.js';
import { verifyHeadSignature } from './head.js';
import { PasskeyEvidenceCheck } from './passkey-evidence.js';
import type { AuditProblemCode, ProblemKind, RecordCheck, VerifyContext } from './record-check.js';

export {
  AUDIT_PROBLEM_CODES,
  type AuditProblemCode,
  type ProblemKind,
  type RecordCheck,
  type VerifyContext,
} from './record-check.js';

export interface AuditProblem {
  kind: ProblemKind;
  code: AuditProblemCode;
  /** The sequence number the problem is at, when one can be named. */
  seq: number | undefined;
  message: string;
}

export interface AuditVerifyInput extends Omit<AuditSnapshot, 'head' | 'headMissing'> {
  /** The head (from Redis, or an export's head line); checks that nothing was cut off or added at the end. */
  head?: SnapshotHead | undefined;
  /** Redis holds records but no head. */
  headMissing?: boolean | undefined;
  /** Public keys for the head and the checkpoints. */
  getKey: JWTVerifyGetKey;
  /** A copy of the trail from outside Redis (the file sink, an earlier export) and its name. */
  against?: { name: string; snapshot: AuditSnapshot } | undefined;
  /** Checks to run on every record besides the built-in ones. */
  recordChecks?: RecordCheck[] | undefined;
  /**
   * The approver console's current origin, when known. Only for a warning: each passkey vote is
   * judged against the origin and RP ID its registration record binds (public_url may have changed).
   */
  consoleOrigin?: string | undefined;
}

export interface AuditReport {
  records: number;
  firstSeq: number | undefined;
  lastSeq: number | undefined;
  checkpoints: number;
  validCheckpoints: number;
  /** Latest checkpoint that verified and matches the chain. */
  latestCheckpointSeq: number | undefined;
  /** The head's signature verified and the chain ends exactly there. */
  headVerified: boolean;
  credentials: number;
  /** Passkey votes whose assertion verified again from the trail. */
  passkeyVotes: number;
  problems: AuditProblem[];
  warnings: string[];
  /** The earliest sequence number at which the chain breaks, if it does. */
  firstBreak: number | undefined;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** "seq 5", "seq 5-9". */
const seqRange = (from: number, to: number): string => (to > from ? `seq ${from}-${to}` : `seq ${from}`);

export async function verifyAuditTrail(input: AuditVerifyInput): Promise<AuditReport> {
  const problems: AuditProblem[] = [];
  const warnings: string[] = [];
  const ctx: VerifyContext = {
    fromGenesis: input.fromGenesis,
    problem: (kind, code, seq, message) => void problems.push({ kind, code, seq, message }),
    warn: (message) => void warnings.push(message),
  };
  const evidence = new EvidenceCheck();
  // Built in, not left to callers: no verify (the CLI, dev mode's start-up check, an export) may skip the passkey votes.
  const passkeys = new PasskeyEvidenceCheck({ expectedOrigin: input.consoleOrigin });
  const checks: RecordCheck[] = [evidence, new RestartCheck(), passkeys, ...(input.recordChecks ?? [])];

  const walk = await walkChain(input.records, input.fromGenesis, checks, ctx);
  for (const check of checks) await check.finish?.(ctx);
  const checkpoints = await checkCheckpoints(input, walk, ctx);
  const headVerified = await checkHead(input, walk, checkpoints, ctx);
  checkCheckpointsPresent(input, walk, checkpoints, ctx);
  if (input.against !== undefined) compareWithCopy(walk, input, input.against, ctx);

  const breaks = problems
    .filter((p) => p.seq !== undefined && p.kind !== 'evidence' && p.kind !== 'copy')
    .map((p) => p.seq as number);
  return {
    records: input.records.length,
    firstSeq: walk.firstSeq,
    lastSeq: walk.last?.seq,
    checkpoints: input.checkpoints.length,
    validCheckpoints: checkpoints.validCount,
    latestCheckpointSeq: checkpoints.latestMatching,
    headVerified,
    credentials: evidence.credentials,
    passkeyVotes: passkeys.verifiedVotes,
    problems,
    warnings,
    firstBreak: breaks.length === 0 ? undefined : Math.min(...breaks),
  };
}

interface Walk {
  firstSeq: number | undefined;
  last: AuditRecord | undefined;
  /** Hash of every record that links into the chain, by seq. */
  hashBySeq: Map<number, string>;
}

/** The hash chain: every record's content, link and sequence number. */
async function walkChain(
  lines: string[],
  fromGenesis: boolean,
  checks: RecordCheck[],
  ctx: VerifyContext,
): Promise<Walk> {
  const broken = (seq: number | undefined, message: string) =>
    ctx.problem('chain', 'ERR_AUDIT_CHAIN_BROKEN', seq, message);
  const parsed = lines.map(parseRecord);
  const firstParsed = parsed.find((r): r is AuditRecord => r !== undefined);
  const positionsBySeq = new Map<number, number[]>();
  parsed.forEach((r, i) => {
    if (r) positionsBySeq.set(r.seq, [...(positionsBySeq.get(r.seq) ?? []), i]);
  });

  let expectedSeq = fromGenesis ? 1 : (firstParsed?.seq ?? 1);
  let prevHash: string | undefined = fromGenesis ? GENESIS_HASH : firstParsed?.prev;
  if (!fromGenesis && firstParsed !== undefined && firstParsed.seq > 1) {
    ctx.warn(`the records start at seq ${firstParsed.seq}: the link to seq ${firstParsed.seq - 1} is taken on trust`);
  }
  const hashBySeq = new Map<number, string>();
  const seenHashes = new Set<string>();
  let last: AuditRecord | undefined;

  for (let i = 0; i < parsed.length; i++) {
    const r = parsed[i];
    if (r === undefined) {
      broken(expectedSeq, `seq ${expectedSeq}: position ${i + 1} is not an audit record (altered or inserted)`);
      expectedSeq += 1;
      prevHash = undefined;
      continue;
    }
    const contentMatches = recordHash(r) === r.hash;
    let resync = true;
    if (r.seq > expectedSeq) {
      const later = (positionsBySeq.get(expectedSeq) ?? []).some((p) => p > i);
      broken(
        expectedSeq,
        later
          ? `seq ${expectedSeq}: out of order (seq ${r.seq} comes before it: records were reordered)`
          : `${seqRange(expectedSeq, r.seq - 1)}: missing (seq ${r.seq} follows seq ${expectedSeq - 1}: deleted)`,
      );
    } else if (r.seq < expectedSeq) {
      if (seenHashes.has(r.hash)) {
        broken(expectedSeq, `seq ${expectedSeq}: a copy of record ${r.seq} was inserted before it`);
        resync = false;
      } else if (r.seq === expectedSeq - 1) {
        broken(r.seq, `seq ${r.seq}: appears twice (one of the two records was inserted)`);
      } else {
        broken(expectedSeq, `seq ${expectedSeq}: a record claiming seq ${r.seq} was inserted or moved here`);
      }
    } else if (prevHash !== undefined && r.prev !== prevHash) {
      if (contentMatches)
        broken(r.seq - 1, `seq ${r.seq - 1}: altered (its hash is not the one seq ${r.seq} links to)`);
      else
        broken(
          r.seq,
          `seq ${r.seq}: altered (its content does not match its hash, nor does it link to seq ${r.seq - 1})`,
        );
    } else if (!contentMatches) {
      broken(r.seq, `seq ${r.seq}: altered (its content does not match its hash)`);
    }
    if (!resync) continue;
    const previous = last;
    expectedSeq = r.seq + 1;
    prevHash = r.hash;
    hashBySeq.set(r.seq, r.hash);
    seenHashes.add(r.hash);
    last = r;
    for (const check of checks) await check.record(r, previous, ctx);
  }
  return { firstSeq: firstParsed?.seq, last, hashBySeq };
}

interface CheckpointResult {
  valid: CheckpointClaims[];
  /** Seqs claimed by checkpoints that do not verify (already reported as invalid). */
  invalidSeqs: number[];
  validCount: number;
  latestMatching: number | undefined;
}

/** Every checkpoint's signature, and that it matches the chain. */
async function checkCheckpoints(input: AuditVerifyInput, walk: Walk, ctx: VerifyContext): Promise<CheckpointResult> {
  const checked = await Promise.all(input.checkpoints.map((jws) => verifyCheckpoint(jws, input.getKey)));
  for (const c of checked) {
    if (!c.ok)
      ctx.problem(
        'checkpoint',
        'ERR_AUDIT_CHECKPOINT_INVALID',
        c.claimedSeq,
        `checkpoint${c.claimedSeq === undefined ? '' : ` at seq ${c.claimedSeq}`}: ${c.reason}`,
      );
  }
  const valid = checked.flatMap((c) => (c.ok ? [c.claims] : [])).sort((a, b) => a.seq - b.seq);
  let validCount = 0;
  let latestMatching: number | undefined;
  let lastMatching = 0;
  const { firstSeq, last } = walk;
  for (const { seq, hash } of valid) {
    const ours = walk.hashBySeq.get(seq);
    if (ours === undefined) {
      if (firstSeq !== undefined && seq < firstSeq) {
        ctx.warn(`checkpoint at seq ${seq} is before the records given; not compared`);
        validCount += 1;
      } else if (last === undefined || seq > last.seq) {
        const end = last?.seq ?? 0;
        if (input.head !== undefined || input.headMissing === true) {
          ctx.problem(
            'head',
            'ERR_AUDIT_HEAD_MISMATCH',
            end + 1,
            `${seqRange(end + 1, seq)}: missing at the end: a checkpoint covers seq ${seq}, the chain ends at seq ${end} (cut off after it)`,
          );
        } else if (input.fromGenesis) {
          ctx.problem(
            'checkpoint',
            'ERR_AUDIT_CHECKPOINT_MISMATCH',
            end + 1,
            `checkpoint at seq ${seq}: the chain ends at seq ${end}; ${seqRange(end + 1, seq)} were deleted`,
          );
        } else {
          ctx.warn(`checkpoint at seq ${seq} is after the records given; not compared`);
          validCount += 1;
        }
      } else {
        ctx.problem(
          'checkpoint',
          'ERR_AUDIT_CHECKPOINT_MISMATCH',
          seq,
          `checkpoint at seq ${seq}: the chain has no intact record with that seq`,
        );
      }
      continue;
    }
    if (ours !== hash) {
      ctx.problem(
        'checkpoint',
        'ERR_AUDIT_CHECKPOINT_MISMATCH',
        seq,
        `checkpoint at seq ${seq}: the chain differs from what the broker signed; records ${lastMatching + 1}-${seq} were rewritten`,
      );
      continue;
    }
    validCount += 1;
    lastMatching = seq;
    latestMatching = seq;
  }
  if (input.checkpoints.length === 0 && input.records.length > 0)
    ctx.warn('no checkpoints: the chain before its head is covered only by the head signature');
  const invalidSeqs = checked.flatMap((c) => (!c.ok && c.claimedSeq !== undefined ? [c.claimedSeq] : []));
  return { valid, invalidSeqs, validCount, latestMatching };
}

/**
 * The end of the chain: a head must exist (when reading Redis), carry the
 * broker's signature, and the chain must end exactly where that signature says.
 */
async function checkHead(
  input: AuditVerifyInput,
  walk: Walk,
  checkpoints: CheckpointResult,
  ctx: VerifyContext,
): Promise<boolean> {
  const mismatch = (seq: number | undefined, message: string) =>
    ctx.problem('head', 'ERR_AUDIT_HEAD_MISMATCH', seq, message);
  if (input.headMissing === true) {
    ctx.problem(
      'head',
      'ERR_AUDIT_HEAD_MISSING',
      undefined,
      `the chain holds ${input.records.length} records but its head is gone: nothing shows where the chain should end`,
    );
    return false;
  }
  const head = input.head;
  if (head === undefined) return false;
  const last = walk.last?.seq ?? 0;
  let ok = true;
  // The head's own fields against the records.
  if (head.seq > last) {
    mismatch(last + 1, `${seqRange(last + 1, head.seq)}: missing at the end (the chain head says seq ${head.seq})`);
    ok = false;
  } else if (head.seq < last) {
    mismatch(
      head.seq + 1,
      `${seqRange(head.seq + 1, last)}: the chain runs past its head (seq ${head.seq}): records were appended around the broker`,
    );
    ok = false;
  } else if (walk.last !== undefined && walk.last.hash !== head.hash) {
    mismatch(last, `seq ${last}: differs from the chain head's hash`);
    ok = false;
  }
  // The signature: the broker's word on where the chain ends.
  const signed = await verifyHeadSignature(head.sig, input.getKey, undefined);
  if (!signed.ok) {
    ctx.problem('head', signed.code, undefined, `chain head: ${signed.reason}`);
    return false;
  }
  const claims = signed.claims;
  const rewrittenFrom = (checkpoints.latestMatching ?? (walk.firstSeq ?? 1) - 1) + 1;
  if (ok) {
    if (claims.seq > last) {
      mismatch(
        last + 1,
        `${seqRange(last + 1, claims.seq)}: missing at the end: the broker signed the head at seq ${claims.seq}, the chain and its head end at seq ${last}`,
      );
      ok = false;
    } else if (claims.seq < last) {
      mismatch(
        claims.seq + 1,
        `${seqRange(claims.seq + 1, last)}: past the head the broker signed (seq ${claims.seq}): appended without its signature`,
      );
      ok = false;
    } else if (walk.hashBySeq.get(claims.seq) !== claims.hash) {
      mismatch(
        rewrittenFrom,
        `seq ${claims.seq}: the chain differs from the head the broker signed; records ${rewrittenFrom}-${claims.seq} (after the newest matching checkpoint) were rewritten`,
      );
      ok = false;
    }
  }
  return ok;
}

/** No checkpoint named by the head, or by a later checkpoint as its predecessor, may be gone. */
function checkCheckpointsPresent(
  input: AuditVerifyInput,
  walk: Walk,
  checkpoints: CheckpointResult,
  ctx: VerifyContext,
): void {
  // One that is there but does not verify is reported as invalid, not twice as missing.
  const present = new Set([...checkpoints.valid.map((c) => c.seq), ...checkpoints.invalidSeqs]);
  const required = new Map<number, string>();
  const require = (seq: number | undefined, by: string) => {
    if (seq === undefined || seq <= 0 || present.has(seq) || required.has(seq)) return;
    // A range export holds only its own checkpoints: predecessors before its first record are not missing.
    if (!input.fromGenesis && (walk.firstSeq === undefined || seq < walk.firstSeq)) return;
    required.set(seq, by);
  };
  if (input.head !== undefined) {
    require(input.head.checkpointSeq, 'the chain head');
    const claimed = claimedCheckpointSeq(input.head.sig);
    require(claimed, 'the signed chain head');
  }
  for (const c of checkpoints.valid) require(c.prev_checkpoint, `the checkpoint at seq ${c.seq}`);
  for (const [seq, by] of [...required].sort((a, b) => a[0] - b[0])) {
    ctx.problem(
      'checkpoint',
      'ERR_AUDIT_CHECKPOINT_MISSING',
      seq,
      `checkpoint at seq ${seq}: missing (${by} names it): checkpoints were deleted`,
    );
  }
}

/** The checkpoint_seq a head signature claims (read without verifying: checkHead reports a bad signature). */
function claimedCheckpointSeq(sig: string | undefined): number | undefined {
  if (sig === undefined) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(sig.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      checkpoint_seq?: unknown;
    };
    return Number.isSafeInteger(payload.checkpoint_seq) ? (payload.checkpoint_seq as number) : undefined;
  } catch {
    return undefined;
  }
}

/** Every record and checkpoint of the copy must be in the chain verified, at its seq, unchanged. */
function compareWithCopy(
  walk: Walk,
  input: AuditVerifyInput,
  against: { name: string; snapshot: AuditSnapshot },
  ctx: VerifyContext,
): void {
  // A partial read of the chain (a seq range) is only compared over that range.
  const whole = input.fromGenesis || input.head !== undefined;
  const low = whole ? -Infinity : (walk.firstSeq ?? Infinity);
  const high = input.head !== undefined ? Infinity : (walk.last?.seq ?? -Infinity);
  const missing: number[] = [];
  for (const line of against.snapshot.records) {
    const r = parseRecord(line);
    if (r === undefined || r.seq < low || r.seq > high) continue;
    if (walk.hashBySeq.get(r.seq) !== r.hash) missing.push(r.seq);
  }
  for (const [from, to] of runs(missing)) {
    const replaced = Array.from({ length: to - from + 1 }, (_, i) => from + i).some((s) => walk.hashBySeq.has(s));
    ctx.problem(
      'copy',
      'ERR_AUDIT_MISSING_FROM_REDIS',
      from,
      `${seqRange(from, to)}: in ${against.name} but not in the chain verified${replaced ? ' (the chain holds other records at these numbers)' : ''}`,
    );
  }
  const ours = new Set(input.checkpoints);
  for (const jws of against.snapshot.checkpoints) {
    if (ours.has(jws)) continue;
    const seq = claimedSeq(jws);
    if (seq !== undefined && (seq < low || seq > high)) continue;
    ctx.problem(
      'copy',
      'ERR_AUDIT_MISSING_FROM_REDIS',
      seq,
      `checkpoint${seq === undefined ? '' : ` at seq ${seq}`}: in ${against.name} but not among the checkpoints verified`,
    );
  }
}

function claimedSeq(jws: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(jws.split('.')[1] ?? '', 'base64url').toString('utf8')) as { seq?: unknown };
    return Number.isSafeInteger(payload.seq) ? (payload.seq as number) : undefined;
  } catch {
    return undefined;
  }
}

/** Sorted, de-duplicated numbers as [from, to] runs of consecutive values. */
function runs(values: number[]): [number, number][] {
  const sorted = [...new Set(values)].sort((a, b) => a - b);
  const out: [number, number][] = [];
  for (const v of sorted) {
    const current = out[out.length - 1];
    if (current !== undefined && v === current[1] + 1) current[1] = v;
    else out.push([v, v]);
  }
  return out;
}

/**
 * A chain_restart record is a failure unless the record right before it (in
 * what is verified) is the head the broker last knew: then nothing it knew of
 * is missing from this copy (e.g. the file sink, continuous across a Redis
 * that lost its data), and it is only noted.
 */
class RestartCheck implements RecordCheck {
  record(r: AuditRecord, previous: AuditRecord | undefined, ctx: VerifyContext): void {
    const e = r.event;
    if (e.type !== 'chain_restart') return;
    const knownSeq = typeof e.last_known_seq === 'number' ? e.last_known_seq : undefined;
    const knownHash = str(e.last_known_hash);
    const what =
      `seq ${r.seq}: the chain restarted (${String(e.reason)}): the broker found it ending at seq ${String(e.found_seq)}` +
      (knownSeq === undefined ? '' : `, where it knew of seq ${knownSeq} (from ${String(e.source)})`);
    if (previous !== undefined && knownSeq !== undefined && previous.seq === knownSeq && previous.hash === knownHash) {
      ctx.warn(`${what}; this copy holds that record, so nothing is missing from it`);
      return;
    }
    const lost =
      knownSeq !== undefined && knownSeq > Number(e.found_seq)
        ? `; ${seqRange(Number(e.found_seq) + 1, knownSeq)} of the earlier chain are not in it`
        : '';
    ctx.problem(
      'restart',
      'ERR_AUDIT_CHAIN_RESTARTED',
      r.seq,
      `${what}${lost} (compare with the file sink: audit verify --against FILE)`,
    );
  }
}

interface RequestEvidence {
  decision?: { decision: string; seq: number; approvalsRequired: number | undefined };
  approveVotes: Set<string>;
  resolution?: string;
}

/** Every issued credential had its decision, and for approvals its resolution and votes, recorded before it. */
class EvidenceCheck implements RecordCheck {
  credentials = 0;
  private readonly evidence = new Map<string, RequestEvidence>();

  private evidenceFor(id: string): RequestEvidence {
    let e = this.evidence.get(id);
    if (e === undefined) this.evidence.set(id, (e = { approveVotes: new Set() }));
    return e;
  }

  record(r: AuditRecord, _previous: AuditRecord | undefined, ctx: VerifyContext): void {
    const e = r.event;
    const requestId = str(e.request_id);
    switch (e.type) {
      case 'decision':
        if (requestId) {
          const required = typeof e.approvals_required === 'number' ? e.approvals_required : undefined;
          this.evidenceFor(requestId).decision = {
            decision: String(e.decision),
            seq: r.seq,
            approvalsRequired: required,
          };
        }
        break;
      case 'vote':
        if (requestId && e.decision === 'approve' && str(e.principal))
          this.evidenceFor(requestId).approveVotes.add(e.principal as string);
        break;
      case 'resolution':
        if (requestId) this.evidenceFor(requestId).resolution = String(e.state);
        break;
      case 'credential_issued':
        this.credentials += 1;
        checkEvidence(r, this.evidence.get(requestId ?? ''), ctx);
        break;
    }
  }
}

function checkEvidence(r: AuditRecord, ev: RequestEvidence | undefined, ctx: VerifyContext): void {
  const e = r.event;
  const what = `seq ${r.seq}: credential ${String(e.jti)} for request ${String(e.request_id)}`;
  const fail = (message: string): void =>
    ctx.problem('evidence', 'ERR_AUDIT_EVIDENCE_MISSING', r.seq, `${what} ${message}`);
  if (ev?.decision === undefined) {
    if (ctx.fromGenesis) fail('has no policy decision recorded before it');
    else ctx.warn(`${what}: its decision is not among the records given; not checked`);
    return;
  }
  const { decision } = ev.decision;
  if (decision === 'allow' || decision === 'break_glass') return;
  if (decision !== 'approve') return fail(`was issued although the decision (seq ${ev.decision.seq}) was ${decision}`);
  if (ev.resolution !== 'APPROVED')
    return fail(
      `was issued but the request was never resolved APPROVED (${ev.resolution ?? 'no resolution recorded'})`,
    );
  const approval = e.approval as { approvers?: { principal?: unknown }[] } | undefined;
  const approvers = Array.isArray(approval?.approvers)
    ? approval.approvers.map((a) => (typeof a?.principal === 'string' ? a.principal : ''))
    : [];
  if (approvers.length === 0) return fail('carries no approval evidence (approvers)');
  const unrecorded = approvers.filter((p) => !ev.approveVotes.has(p));
  if (unrecorded.length > 0) return fail(`names approvers with no recorded approve vote: ${unrecorded.join(', ')}`);
  const required = ev.decision.approvalsRequired ?? 1;
  if (new Set(approvers).size < required)
    fail(`has ${new Set(approvers).size} approver(s), the policy required ${required}`);
}
