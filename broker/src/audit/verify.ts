// `audit verify`: walks the chain and names the first sequence number where it
// breaks, checks every checkpoint's signature and that it matches the chain, and
// that every credential issued had its approval evidence recorded before it.
// Pure: it reads what it is given (from Redis or an exported file) and a key set.
import type { JWTVerifyGetKey } from 'jose';
import { GENESIS_HASH, parseRecord, recordHash, type AuditRecord, type ChainHead } from './chain.js';
import { verifyCheckpoint } from './checkpoints.js';
import { PasskeyEvidenceCheck } from './passkey-evidence.js';

export type ProblemKind = 'chain' | 'checkpoint' | 'evidence';

export interface AuditProblem {
  kind: ProblemKind;
  /** The sequence number the problem is at, when one can be named. */
  seq: number | undefined;
  message: string;
}

export interface AuditVerifyInput {
  /** Stored/exported record lines, in chain order. */
  records: string[];
  /** Checkpoints (compact JWS). */
  checkpoints: string[];
  /** The head Redis holds, when verifying from Redis (catches a cut-off tail). */
  head?: ChainHead | undefined;
  /** True when the records start at seq 1 (the whole chain), so seq 1 must link to the genesis hash. */
  fromGenesis: boolean;
  /** Public keys for the checkpoints. */
  getKey: JWTVerifyGetKey;
  /** The approver console's origin, when known: passkeys registered for another origin are refused. */
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
  credentials: number;
  /** Passkey votes whose assertion verified again from the trail. */
  passkeyVotes: number;
  problems: AuditProblem[];
  warnings: string[];
  /** The earliest sequence number at which the chain breaks, if it does. */
  firstBreak: number | undefined;
}

interface RequestEvidence {
  decision?: { decision: string; seq: number; approvalsRequired: number | undefined };
  approveVotes: Set<string>;
  resolution?: string;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

export async function verifyAuditTrail(input: AuditVerifyInput): Promise<AuditReport> {
  const problems: AuditProblem[] = [];
  const warnings: string[] = [];
  const chainProblem = (seq: number | undefined, message: string) => problems.push({ kind: 'chain', seq, message });

  const parsed = input.records.map(parseRecord);
  const firstParsed = parsed.find((r): r is AuditRecord => r !== undefined);
  const positionsBySeq = new Map<number, number[]>();
  parsed.forEach((r, i) => {
    if (r) positionsBySeq.set(r.seq, [...(positionsBySeq.get(r.seq) ?? []), i]);
  });

  let expectedSeq = input.fromGenesis ? 1 : (firstParsed?.seq ?? 1);
  let prevHash: string | undefined = input.fromGenesis ? GENESIS_HASH : firstParsed?.prev;
  if (!input.fromGenesis && firstParsed !== undefined && firstParsed.seq > 1) {
    warnings.push(`the records start at seq ${firstParsed.seq}: the link to seq ${firstParsed.seq - 1} is taken on trust`);
  }
  const hashBySeq = new Map<number, string>();
  const seenHashes = new Set<string>();
  const evidence = new Map<string, RequestEvidence>();
  const evidenceFor = (id: string): RequestEvidence => {
    let e = evidence.get(id);
    if (e === undefined) evidence.set(id, (e = { approveVotes: new Set() }));
    return e;
  };
  let credentials = 0;
  let lastRecord: AuditRecord | undefined;
  const passkeys = new PasskeyEvidenceCheck({ complete: input.fromGenesis, expectedOrigin: input.consoleOrigin });

  for (let i = 0; i < parsed.length; i++) {
    const r = parsed[i];
    if (r === undefined) {
      chainProblem(expectedSeq, `seq ${expectedSeq}: position ${i + 1} is not an audit record (altered or inserted)`);
      expectedSeq += 1;
      prevHash = undefined;
      continue;
    }
    const contentMatches = recordHash(r) === r.hash;
    let resync = true;
    if (r.seq > expectedSeq) {
      const later = (positionsBySeq.get(expectedSeq) ?? []).some((p) => p > i);
      chainProblem(
        expectedSeq,
        later
          ? `seq ${expectedSeq}: out of order (seq ${r.seq} comes before it: records were reordered)`
          : `seq ${expectedSeq}${r.seq - 1 > expectedSeq ? `-${r.seq - 1}` : ''}: missing (seq ${r.seq} follows seq ${expectedSeq - 1}: deleted)`,
      );
    } else if (r.seq < expectedSeq) {
      if (seenHashes.has(r.hash)) {
        chainProblem(expectedSeq, `seq ${expectedSeq}: a copy of record ${r.seq} was inserted before it`);
        resync = false;
      } else if (r.seq === expectedSeq - 1) {
        chainProblem(r.seq, `seq ${r.seq}: appears twice (one of the two records was inserted)`);
      } else {
        chainProblem(expectedSeq, `seq ${expectedSeq}: a record claiming seq ${r.seq} was inserted or moved here`);
      }
    } else if (prevHash !== undefined && r.prev !== prevHash) {
      if (contentMatches) {
        chainProblem(r.seq - 1, `seq ${r.seq - 1}: altered (its hash is not the one seq ${r.seq} links to)`);
      } else {
        chainProblem(r.seq, `seq ${r.seq}: altered (its content does not match its hash, nor does it link to seq ${r.seq - 1})`);
      }
    } else if (!contentMatches) {
      chainProblem(r.seq, `seq ${r.seq}: altered (its content does not match its hash)`);
    }
    if (!resync) continue;
    expectedSeq = r.seq + 1;
    prevHash = r.hash;
    hashBySeq.set(r.seq, r.hash);
    seenHashes.add(r.hash);
    lastRecord = r;
    passkeys.observe(r);

    const e = r.event;
    const requestId = str(e.request_id);
    switch (e.type) {
      case 'decision':
        if (requestId) {
          const required = typeof e.approvals_required === 'number' ? e.approvals_required : undefined;
          evidenceFor(requestId).decision = { decision: String(e.decision), seq: r.seq, approvalsRequired: required };
        }
        break;
      case 'vote':
        if (requestId && e.decision === 'approve' && str(e.principal)) evidenceFor(requestId).approveVotes.add(e.principal as string);
        break;
      case 'resolution':
        if (requestId) evidenceFor(requestId).resolution = String(e.state);
        break;
      case 'credential_issued':
        credentials += 1;
        checkEvidence(r, evidence.get(requestId ?? ''), input.fromGenesis, problems, warnings);
        break;
    }
  }

  await passkeys.finish();
  for (const p of passkeys.problems) problems.push({ kind: 'evidence', seq: p.seq, message: p.message });
  warnings.push(...passkeys.warnings);

  if (input.head !== undefined) {
    const last = lastRecord?.seq ?? 0;
    if (input.head.seq > last) {
      chainProblem(last + 1, `seq ${last + 1}${input.head.seq > last + 1 ? `-${input.head.seq}` : ''}: missing at the end (the chain head says seq ${input.head.seq})`);
    } else if (input.head.seq < last) {
      chainProblem(input.head.seq + 1, `seq ${input.head.seq + 1}: the chain runs past its head (seq ${input.head.seq}): records were appended around the broker`);
    } else if (lastRecord !== undefined && lastRecord.hash !== input.head.hash) {
      chainProblem(last, `seq ${last}: differs from the chain head's hash`);
    }
  }

  // Checkpoints, in the order of the positions they cover.
  let validCheckpoints = 0;
  let latestCheckpointSeq: number | undefined;
  const checked = await Promise.all(input.checkpoints.map((jws) => verifyCheckpoint(jws, input.getKey)));
  const good = checked.flatMap((c) => (c.ok ? [c] : []));
  for (const c of checked) {
    if (!c.ok) problems.push({ kind: 'checkpoint', seq: c.claimedSeq, message: `checkpoint${c.claimedSeq === undefined ? '' : ` at seq ${c.claimedSeq}`}: ${c.reason}` });
  }
  good.sort((a, b) => a.claims.seq - b.claims.seq);
  let lastMatching = 0;
  const firstSeq = firstParsed?.seq;
  for (const c of good) {
    const { seq, hash } = c.claims;
    const ours = hashBySeq.get(seq);
    if (ours === undefined) {
      if (firstSeq !== undefined && seq < firstSeq) {
        warnings.push(`checkpoint at seq ${seq} is before the records given; not compared`);
        validCheckpoints += 1;
      } else if (lastRecord === undefined || seq > lastRecord.seq) {
        if (input.fromGenesis || input.head !== undefined) {
          const end = lastRecord?.seq ?? 0;
          problems.push({ kind: 'checkpoint', seq: end + 1, message: `checkpoint at seq ${seq}: the chain ends at seq ${end}; seq ${end + 1}-${seq} were deleted` });
        } else {
          warnings.push(`checkpoint at seq ${seq} is after the records given; not compared`);
          validCheckpoints += 1;
        }
      } else {
        problems.push({ kind: 'checkpoint', seq, message: `checkpoint at seq ${seq}: the chain has no intact record with that seq` });
      }
      continue;
    }
    if (ours !== hash) {
      problems.push({
        kind: 'checkpoint',
        seq,
        message: `checkpoint at seq ${seq}: the chain differs from what the broker signed; records ${lastMatching + 1}-${seq} were rewritten`,
      });
      continue;
    }
    validCheckpoints += 1;
    lastMatching = seq;
    latestCheckpointSeq = seq;
  }
  if (input.checkpoints.length === 0 && parsed.length > 0) warnings.push('no checkpoints: only the chain itself was checked (a full rewrite would go unnoticed)');

  const breaks = problems.filter((p) => p.seq !== undefined && p.kind !== 'evidence').map((p) => p.seq as number);
  return {
    records: parsed.length,
    firstSeq,
    lastSeq: lastRecord?.seq,
    checkpoints: input.checkpoints.length,
    validCheckpoints,
    latestCheckpointSeq,
    credentials,
    passkeyVotes: passkeys.verifiedVotes,
    problems,
    warnings,
    firstBreak: breaks.length === 0 ? undefined : Math.min(...breaks),
  };
}

function checkEvidence(r: AuditRecord, ev: RequestEvidence | undefined, complete: boolean, problems: AuditProblem[], warnings: string[]): void {
  const e = r.event;
  const what = `seq ${r.seq}: credential ${String(e.jti)} for request ${String(e.request_id)}`;
  const fail = (message: string): void => void problems.push({ kind: 'evidence', seq: r.seq, message: `${what} ${message}` });
  if (ev?.decision === undefined) {
    if (complete) fail('has no policy decision recorded before it');
    else warnings.push(`${what}: its decision is not among the records given; not checked`);
    return;
  }
  const { decision } = ev.decision;
  if (decision === 'allow' || decision === 'break_glass') return;
  if (decision !== 'approve') return fail(`was issued although the decision (seq ${ev.decision.seq}) was ${decision}`);
  if (ev.resolution !== 'APPROVED') return fail(`was issued but the request was never resolved APPROVED (${ev.resolution ?? 'no resolution recorded'})`);
  const approval = e.approval as { approvers?: { principal?: unknown }[] } | undefined;
  const approvers = Array.isArray(approval?.approvers) ? approval.approvers.map((a) => String(a?.principal ?? '')) : [];
  if (approvers.length === 0) return fail('carries no approval evidence (approvers)');
  const unrecorded = approvers.filter((p) => !ev.approveVotes.has(p));
  if (unrecorded.length > 0) return fail(`names approvers with no recorded approve vote: ${unrecorded.join(', ')}`);
  const required = ev.decision.approvalsRequired ?? 1;
  if (new Set(approvers).size < required) fail(`has ${new Set(approvers).size} approver(s), the policy required ${required}`);
}
