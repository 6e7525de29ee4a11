// The approver port: the contract between the broker core and the channels that
// reach people (the CLI/gRPC approver, Slack). The broker implements
// ApprovalWorkflow and PrincipalDirectory; channels implement ApproverChannel.
// Nothing here imports a channel SDK, so the broker core never does either.
import type { ErrorCode } from '@countersign/proto';

export type RequestStateName = 'PENDING_APPROVAL' | 'APPROVED' | 'DENIED' | 'EXPIRED' | 'CANCELLED';
export type StepUp = 'click' | 'confirm' | 'webauthn';
export type VoteDecisionName = 'approve' | 'deny';

/** One recorded vote. Times are milliseconds since the epoch. */
export interface VoteView {
  principal: string;
  decision: VoteDecisionName;
  /** Where it was cast: "cli", "slack". */
  channel: string;
  at: number;
  /** The step-up the approver performed. */
  stepUp: StepUp;
  reason: string;
}

/** What a channel may show about a request. */
export interface ApprovalRequestView {
  id: string;
  state: RequestStateName;
  /** SPIFFE ID of the requesting workload. */
  requester: string;
  /** The human the workload acts for, "" when none. */
  onBehalfOf: string;
  operation: string;
  resource: string;
  /** RFC 8785 canonical JSON of the parameters: exactly what is being approved. */
  parametersJson: string;
  parametersDigest: string;
  reason: string;
  ticket: string;
  /** The policy rule that asked for approval. */
  rule: string;
  approvers: string[];
  groups: string[];
  approvalsRequired: number;
  stepUp: StepUp;
  /** Step-up webauthn: a passkey sign-in this recent (ms) counts instead of an assertion per vote; undefined: per vote. */
  stepUpMaxAgeMs?: number | undefined;
  /** This request's page in the approver console, when the console is on (where passkey approvals happen). */
  consoleUrl?: string | undefined;
  votes: VoteView[];
  notify: { slackChannels: string[]; directMessages: boolean };
  createdAt: number;
  expiresAt: number;
  resolvedAt: number | undefined;
  /** Who or what ended it, and why. */
  resolutionMessage: string;
  /**
   * When the requester's SVID was exchanged for a CI or Kubernetes OIDC token: the
   * issuer's name and the claims approvers should see (repository, workflow, ref,
   * run, actor...), as text. Shown inert: never as links or markup.
   */
  workload?: { issuer: string; claims: Record<string, string> } | undefined;
}

/** A person who may approve, and their identities on each channel. */
export interface Principal {
  name: string;
  displayName: string;
  slackUserId: string | undefined;
  email: string | undefined;
  /** SPIFFE IDs this person authenticates with on the CLI/gRPC channel. */
  spiffeIds: string[];
}

/**
 * Who is who. Names and e-mail addresses are compared in one canonical form
 * (NFKC, trimmed, lower case, ASCII; the broker's policy/principal-name.ts):
 * lookups accept any spelling of a name, a name without a canonical form finds
 * nobody, and every Principal.name handed out is canonical, so channels
 * compare names as plain strings.
 */
export interface PrincipalDirectory {
  byName(name: string): Principal | undefined;
  bySpiffeId(spiffeId: string): Principal | undefined;
  bySlackUserId(userId: string): Principal | undefined;
  byEmail(email: string): Principal | undefined;
  /** Members (principal names) of a group; Slack user groups are resolved through the channel. */
  groupMembers(group: string): Promise<string[]>;
}

export interface VoteInput {
  requestId: string;
  /** Principal name, already authenticated by the channel. */
  principal: string;
  channel: string;
  decision: VoteDecisionName;
  reason: string;
  stepUp: StepUp;
  /** For step-up "confirm": the resource as the approver typed it. */
  confirmedResource?: string | undefined;
  /** A channel's own id for this interaction, so a redelivery counts once. */
  deliveryId?: string | undefined;
  /** Step-up webauthn: the proof the approver console collected; the broker verifies it, never trusts it. */
  passkey?: PasskeyProof | undefined;
}

/**
 * A passkey proof from the approver console: an assertion over the challenge the
 * broker issued for this very vote, or (rules with step_up_max_age) a reference
 * to the passkey sign-in the approver made recently.
 */
export type PasskeyProof =
  { kind: 'assertion'; challengeId: string; response: unknown } | { kind: 'sign_in'; signInId: string };

/**
 * The approver console as channels see it: where a request's page is, and a
 * one-time sign-in link for one person (sent to them only, e.g. ephemerally).
 */
export interface ApproverConsole {
  requestUrl(requestId: string): string;
  /** A short-lived, single-use sign-in link for this principal that opens this request's page; undefined when links may not be sent this way. */
  signInLink(principal: string, requestId: string, issuedBy: string): Promise<string | undefined>;
}

/** A vote either counted, or was refused with a stable code and a message for the person. */
export type VoteOutcome =
  | { counted: true; request: ApprovalRequestView }
  | { counted: false; code: ErrorCode; message: string; request: ApprovalRequestView | undefined };

/** The broker's approval workflow, as channels see it. Votes go through it, never around it. */
export interface ApprovalWorkflow {
  get(requestId: string): Promise<ApprovalRequestView | undefined>;
  /** Pending requests this principal may decide. */
  listPendingFor(principal: string): Promise<ApprovalRequestView[]>;
  vote(input: VoteInput): Promise<VoteOutcome>;
}

/**
 * A break-glass use: policy let a workload act at once, with a reason, on the
 * condition that every approver of the rule is told. Nothing is pending and no
 * one can vote; the notice is what approvers review afterwards. Unlike a
 * request view it is not stored: the notification job carries it.
 */
export interface BreakGlassNotice {
  /** The request id in the audit log and in the credential. */
  requestId: string;
  requester: string;
  onBehalfOf: string;
  operation: string;
  resource: string;
  /** RFC 8785 canonical JSON of the parameters the credential is bound to. */
  parametersJson: string;
  parametersDigest: string;
  reason: string;
  ticket: string;
  /** The break_glass rule that allowed it. */
  rule: string;
  /** Everyone to tell: the rule's approvers and groups. */
  approvers: string[];
  groups: string[];
  notify: { slackChannels: string[]; directMessages: boolean };
  /** When the credential was issued (ms since the epoch), its jti and expiry. */
  issuedAt: number;
  credentialId: string;
  credentialExpiresAt: number;
}

/**
 * A channel that tells people about requests. The broker calls these from
 * BullMQ jobs, so a failure is retried with backoff and never loses a request.
 * An error with a numeric `retryAfterMs` property (e.g. from a 429 Retry-After)
 * is retried after exactly that long instead. Each view is read when the job
 * runs, so it shows the request's current state.
 */
export interface ApproverChannel {
  readonly name: string;
  requestCreated(request: ApprovalRequestView): Promise<void>;
  voteRecorded(request: ApprovalRequestView, vote: VoteView): Promise<void>;
  requestResolved(request: ApprovalRequestView): Promise<void>;
  /**
   * A break-glass use, to be announced to every approver the rule names. A
   * channel without it cannot announce one; the broker logs that at start-up.
   */
  breakGlassUsed?(notice: BreakGlassNotice): Promise<void>;
}
