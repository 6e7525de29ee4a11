// Signed checkpoints: every N events or T seconds the broker signs (seq, hash)
// of a chain position with its credential signing key, and names the checkpoint
// before it. They stay in Redis for good (the head's signature is replaced on
// every append): anchors for verifying any range of the chain, and, linked one
// to the next, a list from which none can be removed unnoticed. Someone who can
// write to Redis can rebuild a consistent chain, but not sign for it: a
// checkpoint that disagrees with the chain proves a rewrite, and the copies
// shipped through the sinks keep them outside Redis too.
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import type { Redis } from '../redis/connection.js';
import { redisCall } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { loadScripts, registerScripts, type ScriptRunner } from '../redis/scripts.js';
import { AUDIT_LUA_DIR } from './audit-log.js';
import type { ChainHead } from './chain.js';
import type { HeadSigner } from './head.js';
import { signCompactJws, type AuditKeyring } from './jws.js';
/** What a checkpoint needs of the broker's keyring (audit sits below credentials and does not import it). */
export type Keyring = AuditKeyring;
import { checkpointLine, type AuditSink } from './sinks.js';

/** JOSE "typ" of a checkpoint, so it can never be mistaken for a credential. */
export const CHECKPOINT_TYPE = 'countersign-audit-checkpoint+jwt';
export const CHECKPOINT_ALGORITHMS = ['ES256', 'EdDSA'];

export interface CheckpointClaims {
  iss: string;
  /** Sequence number of the record covered. */
  seq: number;
  /** That record's hash. */
  hash: string;
  /** The seq of the checkpoint stored before this one (0: none); absent in checkpoints of older brokers. */
  prev_checkpoint?: number;
  /** Signing time, seconds. */
  iat: number;
}

/** Signs synchronously (node:crypto through the key's signJwsInput, as heads and credentials are); async for its callers. */
export async function signCheckpoint(
  keyring: Keyring,
  head: ChainHead,
  options: { issuer: string; now: number; previous?: number },
): Promise<string> {
  const key = keyring.signingKey(options.now);
  return signCompactJws(key, CHECKPOINT_TYPE, {
    seq: head.seq,
    hash: head.hash,
    ...(options.previous === undefined ? {} : { prev_checkpoint: options.previous }),
    iss: options.issuer,
    iat: Math.floor(options.now / 1000),
  });
}

export type CheckpointVerification =
  | { ok: true; claims: CheckpointClaims; kid: string | undefined }
  | { ok: false; claimedSeq: number | undefined; reason: string };

/** Checks a checkpoint's signature against the given keys; never throws. */
export async function verifyCheckpoint(jws: string, getKey: JWTVerifyGetKey): Promise<CheckpointVerification> {
  let claimedSeq: number | undefined;
  let kid: string | undefined;
  try {
    const claims = decodeJwt(jws);
    if (Number.isSafeInteger(claims.seq)) claimedSeq = claims.seq as number;
    kid = decodeProtectedHeader(jws).kid;
  } catch {
    return { ok: false, claimedSeq: undefined, reason: 'not a compact JWS' };
  }
  try {
    const { payload } = await jwtVerify(jws, getKey, { algorithms: CHECKPOINT_ALGORITHMS, typ: CHECKPOINT_TYPE });
    if (
      !Number.isSafeInteger(payload.seq) ||
      typeof payload.hash !== 'string' ||
      !/^[0-9a-f]{64}$/.test(payload.hash)
    ) {
      return { ok: false, claimedSeq, reason: 'signed, but seq or hash is malformed' };
    }
    if (
      payload.prev_checkpoint !== undefined &&
      !(Number.isSafeInteger(payload.prev_checkpoint) && (payload.prev_checkpoint as number) < (payload.seq as number))
    ) {
      return { ok: false, claimedSeq, reason: 'signed, but prev_checkpoint is malformed' };
    }
    return { ok: true, claims: payload as unknown as CheckpointClaims, kid };
  } catch (e) {
    if (e instanceof joseErrors.JWKSNoMatchingKey)
      return {
        ok: false,
        claimedSeq,
        reason: `signed by unknown key ${JSON.stringify(kid ?? null)} (give audit verify the JWKS that held it)`,
      };
    if (e instanceof joseErrors.JWSSignatureVerificationFailed)
      return {
        ok: false,
        claimedSeq,
        reason: `signature does not verify with key ${JSON.stringify(kid ?? null)} (forged or altered)`,
      };
    if (e instanceof joseErrors.JOSEAlgNotAllowed) return { ok: false, claimedSeq, reason: 'algorithm not allowed' };
    return { ok: false, claimedSeq, reason: (e as Error).message };
  }
}

export interface CheckpointerOptions {
  issuer: string;
  /** Checkpoint when this many events were appended since the last one. */
  everyEvents: number;
  /** ... or when this much time passed and there is something new. */
  intervalMs: number;
}

export type CheckpointOutcome =
  | { stored: true; seq: number; jws: string }
  | { stored: false; reason: 'empty' | 'up-to-date' | 'raced' | 'head-unverified' };

/** Takes checkpoints; one at a time per process, and once per position across replicas. */
export class Checkpointer {
  private readonly scripts: ScriptRunner;
  private lastSeq = 0;
  private lastAt: number;
  private inFlight: Promise<CheckpointOutcome> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      redis: Redis;
      keys: Keys;
      keyring: Keyring;
      heads: HeadSigner;
      clock: Clock;
      logger: Logger;
      sink?: AuditSink | undefined;
    },
    private readonly options: CheckpointerOptions,
  ) {
    this.scripts = registerScripts(deps.redis, loadScripts(AUDIT_LUA_DIR));
    this.lastAt = deps.clock.now();
  }

  /** Called after every append; takes a checkpoint in the background when N events accumulated. */
  noteAppended(head: ChainHead): void {
    if (head.seq - this.lastSeq >= this.options.everyEvents) this.background();
  }

  /** Starts the T-seconds timer (unref'd: it never keeps the process alive). */
  start(): void {
    const tick = Math.max(250, Math.min(this.options.intervalMs / 4, 10_000));
    this.timer = setInterval(() => {
      if (this.deps.clock.now() - this.lastAt >= this.options.intervalMs) this.background();
    }, tick);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private background(): void {
    this.checkpointNow().catch((err: unknown) => this.deps.logger.warn({ err }, 'audit checkpoint failed; will retry'));
  }

  /** Signs the current head unless it is already checkpointed. */
  checkpointNow(): Promise<CheckpointOutcome> {
    this.inFlight ??= this.take().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async take(): Promise<CheckpointOutcome> {
    const { redis, keys } = this.deps;
    for (let attempt = 0; ; attempt++) {
      const [seqText, hash, lastText, sig] = await redisCall('audit checkpoint', () =>
        redis.hmget(keys.auditHead(), 'seq', 'hash', 'checkpoint_seq', 'sig'),
      );
      const now = this.deps.clock.now();
      this.lastAt = now;
      if (seqText == null || hash == null) return { stored: false, reason: 'empty' };
      const head: ChainHead = { seq: Number(seqText), hash };
      const previous = Number(lastText ?? 0);
      if (previous >= head.seq) {
        this.lastSeq = previous;
        return { stored: false, reason: 'up-to-date' };
      }
      // Never sign for a head the broker did not sign itself: that would bless a chain rewritten in Redis.
      const verified = await this.deps.heads.verify(sig ?? undefined, head);
      if (!verified.ok) {
        this.deps.logger.error(
          { seq: head.seq, code: verified.code },
          `audit checkpoint: not signing the chain head (${verified.reason}); run countersign-broker audit verify`,
        );
        return { stored: false, reason: 'head-unverified' };
      }
      const jws = await signCheckpoint(this.deps.keyring, head, { issuer: this.options.issuer, now, previous });
      const code = (await redisCall('audit checkpoint', () =>
        this.scripts(
          'auditCheckpoint',
          [keys.auditCheckpoints(), keys.auditHead(), keys.auditChain()],
          [head.seq, head.hash, jws, previous],
        ),
      )) as number;
      if (code === -2 && attempt < 3) continue; // another replica checkpointed meanwhile: name it as the predecessor
      if (code === -1) {
        // The record at that position changed between reading the head and storing: someone is rewriting the chain.
        this.deps.logger.error(
          { seq: head.seq },
          'audit checkpoint: the chain no longer holds the head just read; run countersign-broker audit verify',
        );
        return { stored: false, reason: 'raced' };
      }
      if (code === -2) return { stored: false, reason: 'raced' };
      this.lastSeq = Math.max(this.lastSeq, head.seq);
      if (code === 0) return { stored: false, reason: 'up-to-date' };
      this.deps.sink?.write(checkpointLine(jws));
      return { stored: true, seq: head.seq, jws };
    }
  }
}
