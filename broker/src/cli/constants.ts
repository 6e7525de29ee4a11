// What the command definitions (main.ts and the *-command.ts files) need up front, without the
// modules that run the commands: those are imported when a command runs.
import type { ProblemKind } from '../audit/verify.js';

/** serve --role */
export const ROLES = ['all', 'api', 'worker'] as const;
export type Role = (typeof ROLES)[number];

/** dev --log-format */
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;

/** The exit status of `policy check` when a test case in the policy file fails. */
export const POLICY_TESTS_FAILED = 4;

/** Exit codes of `audit verify` beyond the common 0-3, one per kind of problem. */
export const AUDIT_EXIT: Record<ProblemKind, number> = {
  chain: 4,
  checkpoint: 5,
  evidence: 6,
  head: 7,
  restart: 8,
  copy: 9,
};

export const AUDIT_EXIT_HELP = `
Exit codes of audit verify (the problem codes are in --output json and docs/audit.md):
  0  the chain is intact and ends at its signed head, every checkpoint verifies, matches and is present,
     every credential has its evidence (and, with --against, the copy holds nothing the chain lacks)
  1  runtime error (Redis unreachable, file unreadable)
  2  usage error
  3  invalid configuration or key file
  4  the chain breaks (a record was changed, deleted, inserted or reordered); the sequence number is printed
       ERR_AUDIT_CHAIN_BROKEN
  5  a checkpoint is forged, signed by an unknown key, disagrees with the chain, or is missing
       ERR_AUDIT_CHECKPOINT_INVALID, ERR_AUDIT_CHECKPOINT_MISMATCH, ERR_AUDIT_CHECKPOINT_MISSING
  6  the approval evidence does not hold: a credential was issued without it, or a passkey vote does not
     verify from the trail (forged or altered assertion, made for another vote or person, replayed)
       ERR_AUDIT_EVIDENCE_MISSING, ERR_AUDIT_PASSKEY_INVALID
  7  the end of the chain cannot be trusted: the head is missing, unsigned, forged, or the chain does not end
     where the signed head (or the newest checkpoint) says
       ERR_AUDIT_HEAD_MISSING, ERR_AUDIT_HEAD_UNSIGNED, ERR_AUDIT_HEAD_SIGNATURE, ERR_AUDIT_HEAD_MISMATCH
  8  the broker recorded a chain restart: it found the chain cut, emptied or with a head it could not verify
       ERR_AUDIT_CHAIN_RESTARTED
  9  --against: the copy holds records or checkpoints the chain does not
       ERR_AUDIT_MISSING_FROM_REDIS
When several apply, the lowest of 4-9 is used.`;
