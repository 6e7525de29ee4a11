// Where the Slack approver writes to the broker's audit log: refusals the channel made
// itself (interactions.ts, before the workflow could be asked) and the cards and notices it
// posted (delivery.ts). A leaf, so that those two do not import each other for it.

/** The broker's audit log, as far as the Slack approver appends to it. */
export interface AuditSink {
  append(event: { type: string; [field: string]: unknown }): Promise<unknown>;
}
