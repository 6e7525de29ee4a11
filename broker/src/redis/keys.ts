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
  /** List: the audit hash chain, one canonical JSON record per element (index = seq - 1). */
  auditChain(): string {
    return `${this.prefix}audit:chain`;
  }
  /** Hash: the chain's head (seq, hash, at) and the last checkpointed seq. */
  auditHead(): string {
    return `${this.prefix}audit:head`;
  }
  /** List: signed checkpoints (compact JWS) over chain positions. */
  auditCheckpoints(): string {
    return `${this.prefix}audit:checkpoints`;
  }
  /** String: kid of the key that signed the last credential, to audit each rotation once. */
  signingKid(): string {
    return `${this.prefix}keys:signing-kid`;
  }
  /** String: who redeemed an approval (request id) or credential (jti), and when. */
  redemption(id: string): string {
    return `${this.prefix}redeemed:${id}`;
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
