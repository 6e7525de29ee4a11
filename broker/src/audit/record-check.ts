// What a per-record check of `audit verify` sees and reports with: the problem codes
// and kinds, and the check interface. A leaf, so that the checks (passkey-evidence.ts)
// and verify.ts, which runs them, do not import each other.
import type { AuditRecord } from './chain.js';

/** What failed; each kind has its own exit code (cli/audit.ts). */
export type ProblemKind = 'chain' | 'head' | 'checkpoint' | 'evidence' | 'restart' | 'copy';

/** Every problem code audit verify reports (docs/audit.md lists them with their exit codes). */
export const AUDIT_PROBLEM_CODES = [
  /** A record was changed, deleted, inserted or reordered. */
  'ERR_AUDIT_CHAIN_BROKEN',
  /** Redis holds records but no head. */
  'ERR_AUDIT_HEAD_MISSING',
  /** The head carries no signature. */
  'ERR_AUDIT_HEAD_UNSIGNED',
  /** The head's signature is forged, altered, by an unknown key, or not a head statement. */
  'ERR_AUDIT_HEAD_SIGNATURE',
  /** The chain does not end where the signed head (or the newest checkpoint) says. */
  'ERR_AUDIT_HEAD_MISMATCH',
  /** A checkpoint is forged, altered, malformed or signed by an unknown key. */
  'ERR_AUDIT_CHECKPOINT_INVALID',
  /** A checkpoint disagrees with the chain. */
  'ERR_AUDIT_CHECKPOINT_MISMATCH',
  /** A checkpoint named by the head or by a later checkpoint is gone. */
  'ERR_AUDIT_CHECKPOINT_MISSING',
  /** A credential was issued without its approval evidence before it (for a step-up webauthn rule: a verified passkey vote of each approver). */
  'ERR_AUDIT_EVIDENCE_MISSING',
  /** A passkey vote does not verify from the trail: forged or altered assertion, another request's or person's, replayed, counter regression, no registration. */
  'ERR_AUDIT_PASSKEY_INVALID',
  /** The broker found the chain not where it knew it to end, and recorded a restart. */
  'ERR_AUDIT_CHAIN_RESTARTED',
  /** A record or checkpoint of the copy (--against) is not in the chain verified. */
  'ERR_AUDIT_MISSING_FROM_REDIS',
] as const;
export type AuditProblemCode = (typeof AUDIT_PROBLEM_CODES)[number];

/** Where a record check reports. */
export interface VerifyContext {
  /** True when the records start at seq 1 (the whole chain from its beginning). */
  readonly fromGenesis: boolean;
  problem(kind: ProblemKind, code: AuditProblemCode, seq: number | undefined, message: string): void;
  warn(message: string): void;
}

/**
 * A check run on every record that links into the chain, in chain order (after
 * the hash checks). `previous` is the record before it in what is verified.
 */
export interface RecordCheck {
  record(r: AuditRecord, previous: AuditRecord | undefined, ctx: VerifyContext): void | Promise<void>;
  /** Called once after the last record. */
  finish?(ctx: VerifyContext): void | Promise<void>;
}
