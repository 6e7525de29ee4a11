// A Slack Web API fake for tests: a real HTTP server on 127.0.0.1:0 that behaves
// like slack.com/api for the methods Countersign calls. It checks the bot token,
// enforces Block Kit and text limits with Slack's own error shapes, returns ts
// values, can be told to answer 429 (with Retry-After) or 500, records every
// message, update, ephemeral and modal, and sends interaction payloads (button
// clicks, modal submissions) signed exactly as Slack signs them.
import { createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { validateBlocks, validateModal } from './block-kit.js';
import { WebSocketPeer } from './websocket.js';

type Json = Record<string, unknown>;

export interface FakeSlackUser {
  id: string;
  name: string;
  email?: string;
  teamId?: string;
  deleted?: boolean;
  isBot?: boolean;
  isRestricted?: boolean;
}

export interface FakeSlackOptions {
  botToken?: string;
  /** App-level token (xapp-) accepted by apps.connections.open for Socket Mode. */
  appToken?: string;
  signingSecret?: string;
  teamId?: string;
  /** Channel names the workspace has, name -> id (ids starting with C or G are always accepted). */
  channels?: Record<string, string>;
  users?: FakeSlackUser[];
  /** Slack user group id -> member user ids. */
  usergroups?: Record<string, string[]>;
}

export type Fault = { status: 429; retryAfterSeconds: number } | { status: 500 } | { error: string };

export interface FakeMessage {
  channel: string;
  ts: string;
  threadTs: string | undefined;
  text: string;
  blocks: Json[];
  /** Every version this message had, the first being the post. */
  versions: { text: string; blocks: Json[] }[];
}

export interface FakeEphemeral {
  channel: string;
  user: string;
  text: string;
}

export interface FakeView {
  id: string;
  triggerId: string;
  user: string;
  view: Json;
}

export interface FakeCall {
  method: string;
  args: Json;
  status: number;
  ok: boolean;
  error: string | undefined;
  at: number;
}

export interface InteractionResult {
  status: number;
  text: string;
  json: unknown;
}

export interface SigningOverride {
  /** Sign with this secret instead (a forgery). */
  secret?: string;
  /** Claim this time (ms) in X-Slack-Request-Timestamp, e.g. 10 minutes ago. */
  timestampMs?: number;
  /** Send no signature headers at all. */
  unsigned?: boolean;
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
};

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses a Web API request the way Slack does: form-encoded (JSON-valued fields) or JSON. */
function parseArgs(contentType: string | undefined, body: string): Json {
  if ((contentType ?? '').startsWith('application/json')) return body === '' ? {} : (JSON.parse(body) as Json);
  const out: Json = {};
  for (const [k, v] of new URLSearchParams(body)) {
    out[k] = k === 'blocks' || k === 'view' || k === 'attachments' ? JSON.parse(v) : v;
  }
  return out;
}

/** Slack signs "v0:{timestamp}:{body}" with HMAC-SHA256; written here independently of the code under test. */
export function slackSignatureOf(secret: string, timestampSeconds: number, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestampSeconds}:${body}`).digest('hex')}`;
}

/** What a Socket Mode client answered to one envelope. */
export interface SocketAck {
  envelope_id: string;
  payload?: unknown;
}

export class FakeSlack {
  readonly botToken: string;
  readonly appToken: string;
  /** Open Socket Mode connections, in the order they connected. */
  readonly sockets: WebSocketPeer[] = [];
  private readonly pendingAcks = new Map<string, (ack: SocketAck) => void>();
  private socketTurn = 0;
  readonly signingSecret: string;
  readonly teamId: string;
  readonly calls: FakeCall[] = [];
  readonly messages: FakeMessage[] = [];
  readonly ephemerals: FakeEphemeral[] = [];
  readonly views: FakeView[] = [];
  /** POSTs to response_url. */
  readonly responses: Json[] = [];
  private readonly faults = new Map<string, Fault[]>();
  private readonly triggers = new Map<string, { user: string; used: boolean }>();
  private readonly channels: Map<string, string>;
  private readonly users = new Map<string, FakeSlackUser>();
  private readonly usergroups: Map<string, string[]>;
  private tsCounter = 0;
  private idCounter = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    options: FakeSlackOptions,
  ) {
    this.botToken = options.botToken ?? `xoxb-fake-${randomBytes(6).toString('hex')}`;
    this.appToken = options.appToken ?? `xapp-1-fake-${randomBytes(6).toString('hex')}`;
    this.signingSecret = options.signingSecret ?? randomBytes(16).toString('hex');
    this.teamId = options.teamId ?? 'T0FAKE';
    this.channels = new Map(Object.entries(options.channels ?? {}));
    for (const u of options.users ?? []) this.users.set(u.id, u);
    this.usergroups = new Map(Object.entries(options.usergroups ?? {}));
  }

  static async start(options: FakeSlackOptions = {}): Promise<FakeSlack> {
    let fake: FakeSlack | undefined;
    const server = createServer((req, res) => {
      (fake as FakeSlack)
        .handle(req, res)
        .catch((e: unknown) => json(res, 500, { ok: false, error: 'fatal_error', detail: String(e) }));
    });
    server.on('upgrade', (req, socket) => (fake as FakeSlack).upgrade(req, socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    fake = new FakeSlack(server, typeof address === 'object' && address !== null ? address.port : 0, options);
    return fake;
  }

  /** What SLACK_API_URL should be. */
  get apiUrl(): string {
    return `http://127.0.0.1:${this.port}/api/`;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- test controls ----

  /** The next `times` calls of `method` fail this way (then it behaves again). */
  failNext(method: string, fault: Fault, times = 1): void {
    const list = this.faults.get(method) ?? [];
    for (let i = 0; i < times; i += 1) list.push(fault);
    this.faults.set(method, list);
  }

  addUser(user: FakeSlackUser): void {
    this.users.set(user.id, user);
  }

  setUsergroup(id: string, members: string[]): void {
    this.usergroups.set(id, members);
  }

  /** Top-level messages (not thread replies), optionally in one channel. */
  posts(channel?: string): FakeMessage[] {
    return this.messages.filter((m) => m.threadTs === undefined && (channel === undefined || m.channel === channel));
  }

  replies(channel: string, ts: string): FakeMessage[] {
    return this.messages.filter((m) => m.channel === channel && m.threadTs === ts);
  }

  callsOf(method: string): FakeCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** Polls until `check` returns a value that is not undefined/false (generous default deadline). */
  async waitFor<T>(
    what: string,
    check: () => T | undefined | false | Promise<T | undefined | false>,
    timeoutMs = 30_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      if (Date.now() > deadline) throw new Error(`fake Slack: timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  // ---- sending interactions, signed like Slack ----

  /** Sends a raw body to the app's Request URL with Slack's signature headers. */
  async send(
    url: string,
    body: string,
    contentType: string,
    signing: SigningOverride = {},
  ): Promise<InteractionResult> {
    const ts = Math.floor((signing.timestampMs ?? Date.now()) / 1000);
    const headers: Record<string, string> = {
      'content-type': contentType,
      'user-agent': 'Slackbot 1.0 (+https://api.slack.com/robots)',
    };
    if (!signing.unsigned) {
      headers['x-slack-request-timestamp'] = String(ts);
      headers['x-slack-signature'] = slackSignatureOf(signing.secret ?? this.signingSecret, ts, body);
    }
    const res = await fetch(url, { method: 'POST', headers, body });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, text, json: parsed };
  }

  /** Sends an interaction payload as Slack does: form-encoded "payload=<json>". */
  sendInteraction(url: string, payload: Json, signing: SigningOverride = {}): Promise<InteractionResult> {
    return this.send(
      url,
      new URLSearchParams({ payload: JSON.stringify(payload) }).toString(),
      'application/x-www-form-urlencoded',
      signing,
    );
  }

  private newTrigger(user: string): string {
    const id = `${Date.now()}.${1000 + (this.idCounter += 1)}.${randomBytes(16).toString('hex')}`;
    this.triggers.set(id, { user, used: false });
    return id;
  }

  private userObject(userId: string): Json {
    const u = this.users.get(userId);
    return {
      id: userId,
      username: u?.name ?? userId.toLowerCase(),
      name: u?.name ?? userId.toLowerCase(),
      team_id: u?.teamId ?? this.teamId,
    };
  }

  /** The block_actions payload Slack sends when `user` clicks the button `actionId` on a message. */
  clickPayload(message: FakeMessage, actionId: string, user: string): Json {
    let button: Json | undefined;
    let blockId: string | undefined;
    for (const block of message.blocks) {
      if (block.type !== 'actions' || !Array.isArray(block.elements)) continue;
      const found = (block.elements as Json[]).find((e) => e.action_id === actionId);
      if (found !== undefined) {
        button = found;
        blockId = block.block_id as string | undefined;
      }
    }
    if (button === undefined)
      throw new Error(`fake Slack: message ${message.ts} has no button ${actionId} (it may have ended)`);
    const u = this.users.get(user);
    return {
      type: 'block_actions',
      user: this.userObject(user),
      api_app_id: 'A0FAKEAPP',
      token: 'legacy-verification-token',
      container: { type: 'message', message_ts: message.ts, channel_id: message.channel, is_ephemeral: false },
      trigger_id: this.newTrigger(user),
      team: { id: u?.teamId ?? this.teamId, domain: 'fake' },
      enterprise: null,
      is_enterprise_install: false,
      channel: { id: message.channel, name: message.channel.toLowerCase() },
      message: { type: 'message', ts: message.ts, text: message.text, blocks: message.blocks, bot_id: 'B0FAKEBOT' },
      state: { values: {} },
      response_url: `http://127.0.0.1:${this.port}/response/${(this.idCounter += 1)}`,
      actions: [
        {
          action_id: actionId,
          block_id: blockId ?? 'b',
          text: button.text,
          value: button.value,
          ...(button.style === undefined ? {} : { style: button.style }),
          type: 'button',
          action_ts: `${Math.floor(Date.now() / 1000)}.${String(this.idCounter).padStart(6, '0')}`,
        },
      ],
    };
  }

  /** `user` clicks a button on a message; the payload goes to `url`. */
  click(
    url: string,
    message: FakeMessage,
    actionId: string,
    user: string,
    signing: SigningOverride = {},
  ): Promise<InteractionResult> {
    return this.sendInteraction(url, this.clickPayload(message, actionId, user), signing);
  }

  /** The view_submission payload for an opened modal, with plain_text_input values by block_id. */
  submitPayload(view: FakeView, values: Record<string, string>, user?: string): Json {
    const who = user ?? view.user;
    const blocks = (view.view.blocks as Json[]) ?? [];
    const state: Record<string, Record<string, Json>> = {};
    for (const b of blocks) {
      if (b.type !== 'input') continue;
      const el = b.element as Json;
      const value = values[b.block_id as string];
      state[b.block_id as string] = { [el.action_id as string]: { type: 'plain_text_input', value: value ?? null } };
    }
    return {
      type: 'view_submission',
      team: { id: this.users.get(who)?.teamId ?? this.teamId, domain: 'fake' },
      user: this.userObject(who),
      api_app_id: 'A0FAKEAPP',
      token: 'legacy-verification-token',
      trigger_id: this.newTrigger(who),
      view: {
        ...view.view,
        id: view.id,
        team_id: this.teamId,
        state: { values: state },
        hash: `${Math.floor(Date.now() / 1000)}.${randomBytes(4).toString('hex')}`,
        root_view_id: view.id,
        previous_view_id: null,
        app_id: 'A0FAKEAPP',
        bot_id: 'B0FAKEBOT',
      },
      response_urls: [],
      is_enterprise_install: false,
      enterprise: null,
    };
  }

  submitView(
    url: string,
    view: FakeView,
    values: Record<string, string>,
    options: { user?: string; signing?: SigningOverride } = {},
  ): Promise<InteractionResult> {
    return this.sendInteraction(url, this.submitPayload(view, values, options.user), options.signing ?? {});
  }

  // ---- Socket Mode ----

  private upgrade(req: IncomingMessage, socket: Duplex): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.pathname !== '/link/' || !this.tickets.delete(url.searchParams.get('ticket') ?? '')) {
      socket.end('HTTP/1.1 401 Unauthorized\r\n\r\n');
      return;
    }
    const peer = WebSocketPeer.accept(req, socket);
    if (peer === undefined) return;
    this.sockets.push(peer);
    peer.onClose = () => this.sockets.splice(this.sockets.indexOf(peer), 1);
    peer.onText = (text) => {
      let ack: SocketAck;
      try {
        ack = JSON.parse(text) as SocketAck;
      } catch {
        return;
      }
      this.pendingAcks.get(ack.envelope_id)?.(ack);
    };
    peer.sendText(
      JSON.stringify({
        type: 'hello',
        num_connections: this.sockets.length,
        debug_info: { host: 'fake' },
        connection_info: { app_id: 'A0FAKEAPP' },
      }),
    );
  }

  private readonly tickets = new Set<string>();

  /**
   * Delivers an interaction over Socket Mode as Slack does: to ONE open connection
   * (taking turns), and resolves with that client's acknowledgement.
   */
  async sendOverSocket(payload: Json, timeoutMs = 10_000): Promise<SocketAck> {
    const open = this.sockets.filter((s) => s.isOpen);
    if (open.length === 0) throw new Error('fake Slack: no Socket Mode connection is open');
    const peer = open[this.socketTurn++ % open.length] as WebSocketPeer;
    const envelopeId = randomBytes(8).toString('hex');
    const acked = new Promise<SocketAck>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingAcks.delete(envelopeId);
        reject(new Error(`fake Slack: envelope ${envelopeId} was not acknowledged`));
      }, timeoutMs);
      this.pendingAcks.set(envelopeId, (ack) => {
        clearTimeout(timer);
        this.pendingAcks.delete(envelopeId);
        resolve(ack);
      });
    });
    peer.sendText(
      JSON.stringify({
        envelope_id: envelopeId,
        payload,
        type: 'interactive',
        accepts_response_payload: payload.type === 'view_submission',
        retry_attempt: 0,
        retry_reason: '',
      }),
    );
    return acked;
  }

  // ---- the Web API ----

  private nextTs(): string {
    this.tsCounter += 1;
    return `${Math.floor(Date.now() / 1000)}.${String(this.tsCounter).padStart(6, '0')}`;
  }

  private resolveChannel(channel: unknown): string | undefined {
    if (typeof channel !== 'string' || channel === '') return undefined;
    if (/^[CGD][A-Z0-9]{2,}$/.test(channel)) return channel;
    if (/^[UW][A-Z0-9]{2,}$/.test(channel)) return this.users.has(channel) ? `D${channel.slice(1)}` : undefined;
    return this.channels.get(channel.replace(/^#/, ''));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const body = await readBody(req);
    if (url.pathname.startsWith('/response/')) {
      this.responses.push(JSON.parse(body) as Json);
      json(res, 200, { ok: true });
      return;
    }
    const method = url.pathname.replace(/^\/api\//, '');
    let args: Json;
    try {
      args = parseArgs(req.headers['content-type'], body);
    } catch {
      this.record(method, {}, 200, 'invalid_json');
      json(res, 200, { ok: false, error: 'invalid_json' });
      return;
    }
    const fault = this.faults.get(method)?.shift();
    if (fault !== undefined) {
      if ('status' in fault && fault.status === 429) {
        this.record(method, args, 429, 'ratelimited');
        json(res, 429, { ok: false, error: 'ratelimited' }, { 'retry-after': String(fault.retryAfterSeconds) });
      } else if ('status' in fault) {
        this.record(method, args, 500, 'internal_error');
        res.writeHead(500, { 'content-type': 'text/html' });
        res.end('<html><body>Internal Server Error</body></html>');
      } else {
        this.record(method, args, 200, fault.error);
        json(res, 200, { ok: false, error: fault.error });
      }
      return;
    }
    const auth = req.headers.authorization;
    const token =
      typeof auth === 'string' && auth.startsWith('Bearer ')
        ? auth.slice(7)
        : typeof args.token === 'string'
          ? args.token
          : undefined;
    if (token === undefined) return this.reply(res, method, args, { ok: false, error: 'not_authed' });
    if (method === 'apps.connections.open') {
      if (token !== this.appToken)
        return this.reply(res, method, args, {
          ok: false,
          error: token.startsWith('xoxb-') ? 'not_allowed_token_type' : 'invalid_auth',
        });
      const ticket = randomBytes(12).toString('hex');
      this.tickets.add(ticket);
      return this.reply(res, method, args, { ok: true, url: `ws://127.0.0.1:${this.port}/link/?ticket=${ticket}` });
    }
    if (token !== this.botToken) return this.reply(res, method, args, { ok: false, error: 'invalid_auth' });
    this.reply(res, method, args, this.call(method, args));
  }

  private record(method: string, args: Json, status: number, error: string | undefined): void {
    this.calls.push({ method, args, status, ok: error === undefined, error, at: Date.now() });
  }

  private reply(res: ServerResponse, method: string, args: Json, result: Json): void {
    this.record(method, args, 200, result.ok === true ? undefined : String(result.error));
    json(res, 200, result);
  }

  private invalidBlocks(problems: string[]): Json {
    return {
      ok: false,
      error: 'invalid_blocks',
      errors: problems,
      response_metadata: { messages: problems.map((p) => `[ERROR] ${p}`) },
    };
  }

  private call(method: string, args: Json): Json {
    switch (method) {
      case 'auth.test':
        return {
          ok: true,
          url: 'https://fake.slack.com/',
          team: 'Fake',
          user: 'countersign',
          team_id: this.teamId,
          user_id: 'U0FAKEBOT',
          bot_id: 'B0FAKEBOT',
        };
      case 'chat.postMessage':
      case 'chat.update': {
        const channel = this.resolveChannel(args.channel);
        if (channel === undefined) return { ok: false, error: 'channel_not_found' };
        const text = typeof args.text === 'string' ? args.text : '';
        const blocks = args.blocks ?? [];
        if (text === '' && (!Array.isArray(blocks) || blocks.length === 0)) return { ok: false, error: 'no_text' };
        if (text.length > 40_000) return { ok: false, error: 'msg_too_long' };
        const problems = validateBlocks(blocks, 'message');
        if (problems.length > 0) return this.invalidBlocks(problems);
        if (method === 'chat.update') {
          const m = this.messages.find((x) => x.channel === channel && x.ts === args.ts);
          if (m === undefined) return { ok: false, error: 'message_not_found' };
          m.text = text;
          m.blocks = blocks as Json[];
          m.versions.push({ text, blocks: blocks as Json[] });
          return { ok: true, channel, ts: m.ts, text };
        }
        const threadTs = typeof args.thread_ts === 'string' ? args.thread_ts : undefined;
        if (threadTs !== undefined && !this.messages.some((x) => x.channel === channel && x.ts === threadTs))
          return { ok: false, error: 'thread_not_found' };
        const ts = this.nextTs();
        this.messages.push({
          channel,
          ts,
          threadTs,
          text,
          blocks: blocks as Json[],
          versions: [{ text, blocks: blocks as Json[] }],
        });
        return { ok: true, channel, ts, message: { type: 'message', text, ts, bot_id: 'B0FAKEBOT' } };
      }
      case 'chat.postEphemeral': {
        const channel = this.resolveChannel(args.channel);
        if (channel === undefined) return { ok: false, error: 'channel_not_found' };
        if (typeof args.user !== 'string' || !this.users.has(args.user)) return { ok: false, error: 'user_not_found' };
        const text = typeof args.text === 'string' ? args.text : '';
        if (text === '' && args.blocks === undefined) return { ok: false, error: 'no_text' };
        if (text.length > 40_000) return { ok: false, error: 'msg_too_long' };
        this.ephemerals.push({ channel, user: args.user, text });
        return { ok: true, message_ts: this.nextTs() };
      }
      case 'views.open': {
        const trigger = typeof args.trigger_id === 'string' ? this.triggers.get(args.trigger_id) : undefined;
        if (trigger === undefined) return { ok: false, error: 'invalid_trigger_id' };
        if (trigger.used) return { ok: false, error: 'trigger_exchanged' };
        const problems = validateModal(args.view);
        if (problems.length > 0)
          return {
            ok: false,
            error: 'invalid_arguments',
            response_metadata: { messages: problems.map((p) => `[ERROR] ${p}`) },
          };
        trigger.used = true;
        const id = `V${String((this.idCounter += 1)).padStart(8, '0')}`;
        this.views.push({ id, triggerId: args.trigger_id as string, user: trigger.user, view: args.view as Json });
        return { ok: true, view: { ...(args.view as Json), id } };
      }
      case 'users.info': {
        const u = typeof args.user === 'string' ? this.users.get(args.user) : undefined;
        if (u === undefined) return { ok: false, error: 'user_not_found' };
        return {
          ok: true,
          user: {
            id: u.id,
            team_id: u.teamId ?? this.teamId,
            name: u.name,
            deleted: u.deleted ?? false,
            is_bot: u.isBot ?? false,
            is_restricted: u.isRestricted ?? false,
            is_ultra_restricted: false,
            profile: { real_name: u.name, ...(u.email === undefined ? {} : { email: u.email }) },
          },
        };
      }
      case 'usergroups.users.list': {
        const members = typeof args.usergroup === 'string' ? this.usergroups.get(args.usergroup) : undefined;
        if (members === undefined) return { ok: false, error: 'no_such_subteam' };
        return { ok: true, users: members };
      }
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }
}
