// A Bolt Receiver mounted on the broker's own HTTP listener (POST /slack/events),
// so Slack reaches whichever replica the Kubernetes Service picks and no second
// port is opened. Each request is size-limited, its signature and timestamp are
// checked before anything else, and only then is it handed to Bolt; Bolt's
// ack() writes the HTTP response.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { App, Receiver, ReceiverEvent } from '@slack/bolt';
import type { SlackLogger } from './logger.js';
import { SlackSignatureError, verifySlackSignature } from './signature.js';

/** Slack's interaction payloads carry the whole message and view; this is well above them. */
export const MAX_SLACK_BODY_BYTES = 1024 * 1024;

export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export class SlackRequestError extends Error {
  override readonly name = 'SlackRequestError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' || body === undefined ? 'text/plain; charset=utf-8' : 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit)
    throw new SlackRequestError(
      413,
      'ERR_SLACK_BODY_TOO_LARGE',
      `body of ${declared} bytes; at most ${limit} are accepted`,
    );
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new SlackRequestError(413, 'ERR_SLACK_BODY_TOO_LARGE', `body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The JSON Bolt expects: interactions arrive form-encoded as payload=..., events as JSON. */
export function parseSlackBody(contentType: string | undefined, raw: Buffer): Record<string, unknown> {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase();
  const text = raw.toString('utf8');
  try {
    if (type === 'application/json') {
      const parsed: unknown = JSON.parse(text);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
        throw new Error('expected a JSON object');
      return parsed as Record<string, unknown>;
    }
    if (type === 'application/x-www-form-urlencoded') {
      const form = new URLSearchParams(text);
      const payload = form.get('payload');
      if (payload === null) return Object.fromEntries(form);
      const parsed: unknown = JSON.parse(payload);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
        throw new Error('payload: expected a JSON object');
      return parsed as Record<string, unknown>;
    }
  } catch (e) {
    throw new SlackRequestError(
      400,
      'ERR_SLACK_PAYLOAD_INVALID',
      `cannot parse the Slack payload: ${(e as Error).message}`,
    );
  }
  throw new SlackRequestError(
    415,
    'ERR_SLACK_PAYLOAD_INVALID',
    `content-type ${JSON.stringify(type)}: expected application/x-www-form-urlencoded or application/json`,
  );
}

export class BrokerHttpReceiver implements Receiver {
  private app: App | undefined;

  constructor(
    private readonly options: {
      signingSecret: string;
      clock: { now(): number };
      logger: SlackLogger;
      /** Called for each refused request (metrics); nothing else is recorded for it. */
      onRefused?: (code: string) => void;
    },
  ) {}

  init(app: App): void {
    this.app = app;
  }
  // The broker's HTTP listener is started and stopped by the broker.
  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  readonly handler: HttpHandler = async (req, res) => {
    const { logger } = this.options;
    try {
      if (req.method !== 'POST')
        throw new SlackRequestError(405, 'ERR_SLACK_METHOD', `${req.method ?? '?'}: Slack sends POST`);
      const raw = await readBody(req, MAX_SLACK_BODY_BYTES);
      try {
        verifySlackSignature({
          signingSecrets: [this.options.signingSecret],
          headers: req.headers,
          body: raw,
          nowMs: this.options.clock.now(),
        });
      } catch (e) {
        if (e instanceof SlackSignatureError) throw new SlackRequestError(401, e.code, e.message);
        throw e;
      }
      const body = parseSlackBody(req.headers['content-type'], raw);
      if (body.type === 'url_verification' && typeof body.challenge === 'string') {
        send(res, 200, { challenge: body.challenge });
        return;
      }
      if (body.ssl_check !== undefined) {
        send(res, 200, undefined);
        return;
      }
      await this.dispatch(body, req, res);
    } catch (e) {
      if (e instanceof SlackRequestError) {
        this.options.onRefused?.(e.code);
        logger.warn(
          { code: e.code, status: e.status, remote: req.socket.remoteAddress },
          `refused a Slack request: ${e.message}`,
        );
        send(res, e.status, { error: e.message, code: e.code });
        return;
      }
      logger.error({ err: (e as Error).message }, 'Slack request failed');
      send(res, 500, { error: 'internal error' });
    }
  };

  private async dispatch(body: Record<string, unknown>, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.app === undefined)
      throw new SlackRequestError(503, 'ERR_SLACK_NOT_READY', 'the Slack app is not initialised');
    let acked = false;
    const retryNum = Number(req.headers['x-slack-retry-num']);
    const retryReason = req.headers['x-slack-retry-reason'];
    const event: ReceiverEvent = {
      body,
      ...(Number.isInteger(retryNum) ? { retryNum } : {}),
      ...(typeof retryReason === 'string' ? { retryReason } : {}),
      ack: async (response?: unknown) => {
        if (acked) return;
        acked = true;
        send(res, 200, response === undefined || response === '' ? undefined : response);
      },
    };
    try {
      await this.app.processEvent(event);
    } finally {
      // Nothing listened (a payload this app does not handle): Slack still expects a 200.
      if (!acked) {
        acked = true;
        send(res, 200, undefined);
      }
    }
  }
}
