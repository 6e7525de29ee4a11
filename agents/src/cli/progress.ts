// How the CLI tells a person (on stderr) about a request it waits for: on a
// terminal, one live line (who must approve, votes so far, time left) redrawn
// every second; elsewhere (pipes, CI logs) plain lines, one per event, plus a
// reminder now and then that it is still waiting.
import { VoteDecision } from '@countersign/proto';
import type { OperationResult } from '../sdk/client.js';
import type { CountersignClientError } from '../sdk/errors.js';
import { printPending, timeLeft, voteLine, whoCanApprove } from './approvals-output.js';

export interface ProgressTarget {
  write(text: string): unknown;
  isTTY?: boolean | undefined;
}

/** A live line only on a terminal, outside CI, with a terminal that can redraw it. */
export function liveProgress(target: ProgressTarget, env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env.CI !== undefined && env.CI !== '' && !/^(0|false)$/i.test(env.CI);
  return target.isTTY === true && !ci && env.TERM !== 'dumb';
}

export interface ProgressOptions {
  live: boolean;
  /** Plain mode: how often to say "still waiting". Default 60 s. */
  reminderMs?: number;
  now?: () => number;
}

const CLEAR_LINE = '\r\x1b[2K';

export class WaitProgress {
  private timer: NodeJS.Timeout | undefined;
  private latest: OperationResult | undefined;
  /** Who can approve, as the broker said at first (later reads of the request list every approver). */
  private who: string | undefined;
  private votesSeen = 0;
  private lineShown = false;
  private readonly now: () => number;

  constructor(
    private readonly target: ProgressTarget,
    private readonly options: ProgressOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  private line(text: string): void {
    this.clear();
    this.target.write(`${text}\n`);
    this.redraw();
  }

  private clear(): void {
    if (this.lineShown) this.target.write(CLEAR_LINE);
    this.lineShown = false;
  }

  /** "0 of 1 approval(s) from alice, bob; 14m03s left" */
  private status(result: OperationResult): string {
    const r = result.request;
    if (r === undefined) return result.message;
    const approvals = r.votes.filter((v) => v.decision === VoteDecision.VOTE_DECISION_APPROVE).length;
    const who = this.who ?? whoCanApprove(result);
    return `${approvals} of ${r.approvalsRequired} approval(s) from ${who}; ${timeLeft(result.expiresAt ?? r.expiresAt, this.now())} left`;
  }

  private redraw(): void {
    if (!this.options.live || this.latest === undefined || this.timer === undefined) return;
    this.target.write(
      `${CLEAR_LINE}waiting for approval of ${this.latest.requestId}: ${this.status(this.latest)} (Ctrl-C to stop)`,
    );
    this.lineShown = true;
  }

  /** The request is pending: say so, what approvers run, and start the live line or the reminders. */
  start(result: OperationResult, hint: string): void {
    this.latest = result;
    this.who = whoCanApprove(result);
    this.votesSeen = result.request?.votes.length ?? 0;
    printPending(result, (l) => this.line(l));
    this.line(hint);
    if (this.options.live) {
      this.timer = setInterval(() => this.redraw(), 1000);
      this.redraw();
    } else {
      this.timer = setInterval(
        () =>
          this.line(
            `still waiting for approval of ${result.requestId}: ${this.latest ? this.status(this.latest) : ''}`,
          ),
        this.options.reminderMs ?? 60_000,
      );
    }
    this.timer.unref();
  }

  /** Every change: new votes get a line each. */
  update(result: OperationResult): void {
    this.latest = result;
    const votes = result.request?.votes ?? [];
    for (const vote of votes.slice(this.votesSeen)) this.line(voteLine(vote, result.request));
    this.votesSeen = Math.max(this.votesSeen, votes.length);
    this.redraw();
  }

  reconnect(error: CountersignClientError, attempt: number): void {
    if (error.code === 'ERR_WATCH_UNAVAILABLE') this.line(`cannot watch the request here (${error.message})`);
    else this.line(`connection to the broker lost (${error.message}); reconnecting (attempt ${attempt})`);
  }

  /** A line of its own (e.g. the outcome), above the live line. */
  say(text: string): void {
    this.line(text);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.clear();
  }
}
