// Every Redis key the broker uses is built here, under the configured prefix, so
// tenants and tests never collide and an operator can see the whole keyspace.

export class Keys {
  constructor(readonly prefix: string) {}

  /** Hash holding one approval request. */
  request(id: string): string {
    return `${this.prefix}req:${id}`;
  }
  /** Hash principal -> vote JSON for one request. */
  votes(id: string): string {
    return `${this.prefix}req:${id}:votes`;
  }
  /** String: request id for (requester, client_request_id). */
  idempotency(requesterHash: string, clientRequestId: string): string {
    return `${this.prefix}idem:${requesterHash}:${clientRequestId}`;
  }
  /** Sorted set of pending request ids scored by expiry (ms). */
  pending(): string {
    return `${this.prefix}pending`;
  }
  /** Stream of audit events. */
  audit(): string {
    return `${this.prefix}audit`;
  }
  /** Pub/sub channel announcing request state changes. */
  requestEvents(): string {
    return `${this.prefix}events`;
  }
  /** Sorted set of one caller's recent requests scored by time (ms), for context.request_rate. */
  requestRate(callerHash: string): string {
    return `${this.prefix}rate:${callerHash}`;
  }
  /** Prefix BullMQ puts before its own keys. */
  bullmqPrefix(): string {
    return `${this.prefix}bull`;
  }
}
