// Every Redis key the broker uses is built here, under the configured prefix, so
// tenants and tests never collide and an operator can see the whole keyspace.

export class Keys {
  constructor(readonly prefix: string) {}

  /** String with a TTL to the token's exp: an exchanged OIDC token (by hash of issuer and jti), so it is used once. */
  oidcTokenUsed(hash: string): string {
    return `${this.prefix}oidc:used:${hash}`;
  }
  /** String (JSON) with a TTL to the SVID's end: what the token of an exchanged SVID said, by the SVID's x5t#S256. */
  oidcSvid(thumbprint: string): string {
    return `${this.prefix}oidc:svid:${thumbprint}`;
  }
  /** Hash holding one approval request. */
  request(id: string): string {
    return `${this.prefix}req:${id}`;
  }
  /** Hash principal -> vote JSON for one request. */
  votes(id: string): string {
    return `${this.prefix}req:${id}:votes`;
  }
  /** Hash holding the one credential minted for an approved request (token, jti, audited). */
  requestCredential(id: string): string {
    return `${this.prefix}req:${id}:credential`;
  }
  /** String with a TTL: present while the requester must not poll GetRequest again. */
  pollGate(id: string): string {
    return `${this.prefix}req:${id}:poll`;
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
  /** Hash kid -> when it was first seen signing (ms): the signing key's age. */
  signingSince(): string {
    return `${this.prefix}keys:signing-since`;
  }
  /** String: who redeemed an approval (request id) or credential (jti), and when. */
  redemption(id: string): string {
    return `${this.prefix}redeemed:${id}`;
  }
  /** Sorted set of one workload's pending request ids scored by expiry (ms): the per-workload limit. */
  pendingOfWorkload(workloadHash: string): string {
    return `${this.prefix}pending:wl:${workloadHash}`;
  }
  /** Hash: a workload's token bucket (tokens, updated_at) for requests.limits.requests_per_second. */
  rateLimit(workloadHash: string): string {
    return `${this.prefix}ratelimit:${workloadHash}`;
  }

  /** Token bucket of the approver console, per client address (ip) or per signed-in principal. */
  consoleRateLimit(kind: 'ip' | 'principal', hash: string): string {
    return `${this.prefix}console:ratelimit:${kind}:${hash}`;
  }
  /**
   * Hash "<request id>|<effect>" -> time it was written: the transactional outbox.
   * Each transition script records what must follow it (audit records, notification
   * and expiry jobs) here, atomically with the transition; the entry is removed
   * once that work is done, and the sweeper finishes entries a crash left behind.
   */
  outbox(): string {
    return `${this.prefix}outbox`;
  }
  /** Pub/sub channel announcing request state changes (message: the request id). */
  requestEvents(): string {
    return `${this.prefix}events`;
  }
  /** Sorted set of one caller's recent requests scored by time (ms), for context.request_rate. */
  requestRate(callerHash: string): string {
    return `${this.prefix}rate:${callerHash}`;
  }
  /**
   * Hash approver channel name -> when a replica that has it last said so (ms):
   * the channels of the whole deployment, so that every replica enqueues their
   * notifications, and only replicas that have a channel take them.
   */
  approverChannels(): string {
    return `${this.prefix}channels`;
  }
  /** Prefix BullMQ puts before its own keys. */
  bullmqPrefix(): string {
    return `${this.prefix}bull`;
  }
  /** Hash: where one request's Slack cards were posted (channel, ts) and which thread replies were sent. */
  slackMessages(requestId: string): string {
    return `${this.prefix}slack:msg:${requestId}`;
  }
  /** String with a TTL: members of one Slack user group, as Slack last reported them. */
  slackUsergroup(usergroupId: string): string {
    return `${this.prefix}slack:ug:${usergroupId}`;
  }

  // ---- approver console and passkeys (docs/console.md) ----
  // A single-use item and its "used" marker share a hash tag ({id}), so consumeOnce-2.lua
  // keeps both keys in one slot on Redis Cluster.

  /** String with a TTL: the parameters of the last approved request per operation and resource (hash of both), for the console's diff. */
  lastApproved(operationResourceHash: string): string {
    return `${this.prefix}approved:last:${operationResourceHash}`;
  }
  /** Hash credential id -> passkey JSON (public key, counter, ...): one principal's registered passkeys. */
  passkeys(principal: string): string {
    return `${this.prefix}passkeys:${principal}`;
  }
  /** String: the WebAuthn user handle (random) of one principal. */
  passkeyUser(principal: string): string {
    return `${this.prefix}passkeys:${principal}:user`;
  }
  /** String with a TTL: one issued WebAuthn challenge (single use), by its id. */
  passkeyChallenge(id: string): string {
    return `${this.prefix}passkey:challenge:{${id}}`;
  }
  /** String with a TTL: marks a challenge as used, so a replay is told apart from an unknown challenge. */
  passkeyChallengeUsed(id: string): string {
    return `${this.prefix}passkey:challenge-used:{${id}}`;
  }
  /** String with a TTL: a verified passkey sign-in (its assertion), for rules with step_up_max_age. */
  passkeySignIn(id: string): string {
    return `${this.prefix}passkey:sign-in:${id}`;
  }
  /** String with a TTL: one console session, by the SHA-256 of its cookie value. */
  consoleSession(sessionHash: string): string {
    return `${this.prefix}console:session:${sessionHash}`;
  }
  /** String with a TTL: one sign-in link, by the SHA-256 of its token (the token itself is never stored). */
  consoleLink(tokenHash: string): string {
    return `${this.prefix}console:link:{${tokenHash}}`;
  }
  /** String with a TTL: marks a sign-in link as used, so reuse is told apart from an unknown link. */
  consoleLinkUsed(tokenHash: string): string {
    return `${this.prefix}console:link-used:{${tokenHash}}`;
  }
  /** String with a TTL: one OIDC sign-in in progress (PKCE verifier, state, nonce), by the SHA-256 of its cookie value. */
  consoleOidc(transactionHash: string): string {
    return `${this.prefix}console:oidc:{${transactionHash}}`;
  }
  /** String with a TTL: marks an OIDC sign-in as finished (a replayed callback is refused). */
  consoleOidcUsed(transactionHash: string): string {
    return `${this.prefix}console:oidc-used:{${transactionHash}}`;
  }
}
