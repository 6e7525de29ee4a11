// What policy hands to the rest of the broker. This is the contract between
// policy/ (which produces it) and requests/, credentials/, audit/ and the approver
// channels (which act on it). Times are milliseconds.
import type { JsonObject } from '@countersign/proto';

/** What an approver must do to have their vote count. */
export type StepUp = 'click' | 'confirm' | 'webauthn';

/** Where a request that needs people is announced. */
export interface NotifyTargets {
  /** Slack channel ids or names. */
  slackChannels: string[];
  /** Also DM each individual approver. */
  directMessages: boolean;
}

export interface ApprovalRequirement {
  /** Principal names that may approve (individuals named by the rule). */
  approvers: string[];
  /** Group names whose members may approve (static or from a Slack user group), resolved at vote time. */
  groups: string[];
  /** Distinct people whose approval is needed (N of M). */
  required: number;
  /** Deny votes that end the request DENIED (1 unless the rule says otherwise). */
  denyThreshold: number;
  timeoutMs: number;
  /** When false (the default), the requester and the human it acts for never count. */
  allowSelfApproval: boolean;
  stepUp: StepUp;
  /**
   * For webauthn: a passkey sign-in to the console at most this old (ms) counts
   * instead of an assertion made for the vote; undefined means one per vote.
   */
  stepUpMaxAgeMs: number | undefined;
  reasonRequired: boolean;
  /**
   * A regular expression the request's ticket must match, when set. Policy has
   * already checked it (and reasonRequired) before answering approve; when several
   * rules set patterns this one requires all of them.
   */
  ticketPattern: string | undefined;
  notify: NotifyTargets;
}

/** The input policy decides on. Built by requests/ from the validated request and the caller's SVID. */
export interface PolicyInput {
  workload: {
    spiffeId: string;
    trustDomain: string;
    path: string;
    /** X.509-SVID validity window and serial: freshness facts. */
    notBefore: number;
    notAfter: number;
    serial: string;
    /** When the SVID was exchanged for an OIDC token: the issuer's name and the token's claims (CEL workload.claims). */
    oidc?: { issuer: string; claims: JsonObject };
  };
  operation: string;
  resource: string;
  parameters: JsonObject;
  reason: string;
  ticket: string;
  /** The human an agent acts for; "" when none. */
  onBehalfOf: string;
  /** Evaluation time (from the injected clock). */
  now: number;
  /**
   * Requests this caller made within the policy's settings.rate_window, this one
   * included (context.request_rate). Only needed when the policy uses it
   * (Policy.usesRequestRate); Policy.decide fills it in from Redis.
   */
  requestRate?: number;
}

export type Decision =
  | { effect: 'deny'; rule: string | null; message: string }
  | { effect: 'allow'; rule: string; ttlMs: number | undefined }
  | {
      effect: 'approve';
      /** The rule reported as deciding (first matching approve rule). */
      rule: string;
      /** Every approve rule that matched and was combined. */
      rules: string[];
      approval: ApprovalRequirement;
      ttlMs: number | undefined;
      /** Approvers who may not decide this request: the requester's own people (separation of duties). */
      excluded: string[];
    }
  | {
      /** Allowed at once, but only with a reason, always announced to every approver, flagged in the audit. */
      effect: 'break_glass';
      rule: string;
      ttlMs: number | undefined;
      /** Who is told, and where. */
      approvers: string[];
      groups: string[];
      notify: NotifyTargets;
    };
