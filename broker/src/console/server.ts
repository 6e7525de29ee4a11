// The approver console: the pages approvers use in a browser to see exactly
// what they approve, and to approve with a passkey that signs the request
// itself. It runs on its own listener (console.listen), not on the HTTP
// listener that serves /metrics: see docs/console.md, "Where it is served".
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { CountersignError, isCountersignError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Passkeys } from '../passkeys/passkeys.js';
import type { Policy } from '../policy/policy.js';
import type { Principals } from '../policy/principals.js';
import { VOTE_REFUSALS, type BrokerApprovalWorkflow } from '../requests/workflow.js';
import type { RequestStore, StoredRequest } from '../requests/store.js';
import {
  clearCookie,
  cookie,
  parseCookies,
  readBody,
  redirect,
  securityHeaders,
  sendHtml,
  sendJson,
  STATUS_OF_KIND,
} from './http.js';
import { LINK_PATH, type SignInLinks } from './links.js';
import { OIDC_CALLBACK_PATH, OIDC_START_PATH, OIDC_TRANSACTION_TTL_MS, type OidcSignIn } from './oidc.js';
import {
  continuePage,
  errorPage,
  linkPage,
  listPage,
  passkeysPage,
  requestPage,
  signInPage,
  type RuleFacts,
  type Viewer,
} from './pages.js';
import { diffParameters } from './parameters.js';
import type { ConsoleRateLimiter } from './rate-limit.js';
import { ENROLLING_METHODS, sameSecret, type Session, type SessionStore } from './sessions.js';

/** The channel name of votes cast in the console. */
export const CONSOLE_CHANNEL = 'console';
const REQUEST_ID = /^[A-Za-z0-9_-]{1,128}$/;
const STATIC_DIR = fileURLToPath(new URL('./static/', import.meta.url));
const require = createRequire(import.meta.url);

export interface ConsoleDeps {
  workflow: BrokerApprovalWorkflow;
  store: RequestStore;
  directory: Principals;
  passkeys: Passkeys;
  links: SignInLinks;
  sessions: SessionStore;
  oidc: OidcSignIn | undefined;
  /** Per-address and per-principal token buckets on the routes marked `limited`. */
  limiter: ConsoleRateLimiter;
  audit: AuditLog;
  policy: () => Policy;
  clock: Clock;
  logger: Logger;
}

export interface ConsoleSettings {
  /** The console's public address (scheme://host[:port], no trailing "/"). */
  publicUrl: string;
  enrollmentWindowMs: number;
  sessionMaxAgeMs: number;
}

export interface ConsoleListener {
  port: number;
  /** The configured public URL, or http(s)://localhost:<bound port>. */
  publicUrl: string;
  server: Server;
  /** Starts answering with the console; until then every request gets 503. */
  serve(console: ApproverConsole): void;
  close(): Promise<void>;
}

/**
 * Binds the console's own listener first (its public address may depend on the
 * port bound), so the address is known to everything built before the console.
 */
export async function listenConsole(options: {
  host: string;
  port: number;
  publicUrl: string | undefined;
  tls: { cert: string; key: string } | undefined;
}): Promise<ConsoleListener> {
  let console: ApproverConsole | undefined;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (console === undefined) {
      sendJson(res, 503, { error: { code: 'ERR_CONSOLE_STARTING', message: 'the console is starting' } });
      return;
    }
    void console.handle(req, res);
  };
  const { tls } = options;
  const server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler)
    : createHttpServer(handler);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  return {
    port,
    publicUrl: (options.publicUrl ?? `${tls ? 'https' : 'http'}://localhost:${port}`).replace(/\/$/, ''),
    server,
    serve: (c) => {
      console = c;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, params: string[]) => Promise<void>;

interface Authenticated {
  id: string;
  session: Session;
  viewer: Viewer;
}

/** Refusal codes of the console itself (votes use the workflow's, see VOTE_REFUSALS). */
const csrfError = (message: string) => new CountersignError('permission_denied', 'ERR_CSRF', message);

export class ApproverConsole {
  private readonly publicUrl: string;
  private readonly secure: boolean;
  private readonly sessionCookie: string;
  private readonly preCookie = 'countersign_pre';
  private readonly oidcCookie = 'countersign_oidc';
  private readonly staticFiles = new Map<string, { body: Buffer; type: string }>();
  private readonly routes: { method: string; pattern: RegExp; handler: Handler; limited: boolean }[] = [];
  /** Requests on a limited route: their principal's bucket is taken once they are authenticated. */
  private readonly limitedRequests = new WeakSet<IncomingMessage>();

  constructor(
    private readonly deps: ConsoleDeps,
    private readonly settings: ConsoleSettings,
  ) {
    this.publicUrl = settings.publicUrl;
    // Browsers keep Secure cookies off plain http; on localhost they are not needed (a secure context already).
    this.secure = new URL(settings.publicUrl).protocol === 'https:';
    this.sessionCookie = this.secure ? '__Host-countersign' : 'countersign_session';
    const route = (method: string, pattern: RegExp, handler: Handler, limited = false) =>
      this.routes.push({ method, pattern, handler, limited });
    // Rate limited (per address, and per principal once signed in): what guessing, replaying or flooding would hit.
    const LIMITED = true;
    route('GET', /^\/$/, (req, res) => this.list(req, res));
    route('GET', /^\/requests\/([^/]+)$/, (req, res, _u, p) => this.requestView(req, res, p[0] as string));
    route(
      'POST',
      /^\/requests\/([^/]+)\/challenge$/,
      (req, res, _u, p) => this.voteChallenge(req, res, p[0] as string),
      LIMITED,
    );
    route('POST', /^\/requests\/([^/]+)\/vote$/, (req, res, _u, p) => this.vote(req, res, p[0] as string), LIMITED);
    route('GET', /^\/passkeys$/, (req, res) => this.passkeysView(req, res));
    route('POST', /^\/passkeys\/options$/, (req, res) => this.registrationOptions(req, res), LIMITED);
    route('POST', /^\/passkeys$/, (req, res) => this.register(req, res), LIMITED);
    route('POST', /^\/passkeys\/remove$/, (req, res) => this.removePasskey(req, res));
    route('GET', /^\/sign-in$/, (req, res, url) => this.signInView(req, res, url));
    route('GET', new RegExp(`^${LINK_PATH}$`), (req, res) => this.linkView(req, res));
    route('POST', new RegExp(`^${LINK_PATH}$`), (req, res) => this.linkSignIn(req, res), LIMITED);
    route('GET', new RegExp(`^${OIDC_START_PATH}$`), (req, res, url) => this.oidcStart(req, res, url));
    route('GET', new RegExp(`^${OIDC_CALLBACK_PATH}$`), (req, res, url) => this.oidcCallback(req, res, url), LIMITED);
    route('POST', /^\/sign-in\/passkey\/options$/, (req, res) => this.passkeySignInOptions(req, res), LIMITED);
    route('POST', /^\/sign-in\/passkey$/, (req, res) => this.passkeySignIn(req, res), LIMITED);
    route('POST', /^\/sign-out$/, (req, res) => this.signOut(req, res));
    route('GET', /^\/static\/([a-z.-]+)$/, (req, res, _u, p) => this.staticFile(req, res, p[0] as string));
    route('GET', /^\/healthz$/, async (_req, res) => sendJson(res, 200, { status: 'ok' }));
    route('GET', /^\/favicon\.ico$/, async (_req, res) => {
      res.writeHead(204);
      res.end();
    });
  }

  /** A request's page. */
  requestUrl(requestId: string): string {
    return `${this.publicUrl}/requests/${requestId}`;
  }

  /** Reads the static files; call once before serving. */
  async prepare(): Promise<this> {
    await this.loadStatic();
    return this;
  }

  private async loadStatic(): Promise<void> {
    const types: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
    for (const name of ['console.js', 'console.css']) {
      this.staticFiles.set(name, {
        body: await readFile(`${STATIC_DIR}${name}`),
        type: types[name.split('.').pop() as string] as string,
      });
    }
    // The browser half of @simplewebauthn, served from this origin (the CSP allows no other script source).
    const bundle = require
      .resolve('@simplewebauthn/browser')
      .replace(/script[\\/]index\.js$/, 'dist/bundle/index.umd.min.js');
    this.staticFiles.set('webauthn.js', { body: await readFile(bundle), type: types.js as string });
  }

  // ---- plumbing ----

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const [k, v] of Object.entries(securityHeaders(this.secure))) res.setHeader(k, v);
    res.setHeader('cache-control', 'no-store');
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://console.invalid');
    } catch {
      sendHtml(res, 400, errorPage(400, 'ERR_CONSOLE_BAD_REQUEST', 'malformed URL'));
      return;
    }
    const path = url.pathname;
    const matching = this.routes.filter((r) => r.pattern.test(path));
    const route = matching.find((r) => r.method === req.method || (r.method === 'GET' && req.method === 'HEAD'));
    try {
      if (route === undefined) {
        if (matching.length > 0) {
          res.setHeader('allow', [...new Set(matching.map((r) => r.method))].join(', '));
          sendHtml(res, 405, errorPage(405, 'ERR_CONSOLE_METHOD', `${req.method} is not allowed here`));
        } else {
          sendHtml(res, 404, errorPage(404, 'ERR_CONSOLE_NOT_FOUND', 'there is no such page'));
        }
        return;
      }
      const params = (route.pattern.exec(path) as RegExpExecArray).slice(1).map((p) => decodeURIComponent(p));
      if (route.limited) {
        await this.deps.limiter.takeForAddress(req);
        this.limitedRequests.add(req);
      }
      await route.handler(req, res, url, params);
    } catch (e) {
      this.fail(req, res, e);
    }
  }

  private wantsJson(req: IncomingMessage): boolean {
    return (
      (req.headers['content-type'] ?? '').startsWith('application/json') ||
      (req.headers.accept ?? '').startsWith('application/json')
    );
  }

  private fail(req: IncomingMessage, res: ServerResponse, e: unknown, viewer?: Viewer): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    let status = 500;
    let code = 'ERR_INTERNAL';
    let message = 'internal error; the broker log has the details';
    if (isCountersignError(e) && e.kind !== 'internal') {
      status = STATUS_OF_KIND[e.kind];
      code = e.code;
      message = e.message;
      const retryAfterMs = e.details.retryAfterMs;
      if (status === 429 && typeof retryAfterMs === 'number')
        res.setHeader('retry-after', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
    } else {
      const errorId = randomBytes(6).toString('hex');
      this.deps.logger.error({ err: e, errorId, path: req.url?.split('?')[0] }, 'console request failed');
      message = `internal error (id ${errorId}); the broker log has the details`;
    }
    if (this.wantsJson(req)) sendJson(res, status, { error: { code, message } });
    else sendHtml(res, status, errorPage(status, code, message, viewer));
  }

  private cookieOptions(sameSite: 'Strict' | 'Lax' = 'Strict', maxAgeSeconds?: number) {
    return { secure: this.secure, sameSite, ...(maxAgeSeconds === undefined ? {} : { maxAgeSeconds }) };
  }

  /** The signed-in person, or undefined (after sending them to sign in, or a 401 for scripts). */
  private async authenticate(
    req: IncomingMessage,
    res: ServerResponse,
    next: string,
  ): Promise<Authenticated | undefined> {
    const cookies = parseCookies(req.headers.cookie);
    const loaded = await this.deps.sessions.load(cookies.get(this.sessionCookie));
    if (loaded.ok) {
      const principal = this.deps.directory.byName(loaded.session.principal);
      if (principal !== undefined) {
        if (this.limitedRequests.has(req)) await this.deps.limiter.takeForPrincipal(principal.name);
        return {
          id: loaded.id,
          session: loaded.session,
          viewer: { principal: principal.name, displayName: principal.displayName, csrf: loaded.session.csrf },
        };
      }
      // Removed from the principals file since signing in.
      await this.deps.sessions.destroy(loaded.id);
    }
    const why = !loaded.ok && loaded.why !== 'none' ? 'Your session ended; sign in again.' : undefined;
    if (req.method !== 'GET' || this.wantsJson(req)) {
      sendJson(res, 401, { error: { code: 'ERR_CONSOLE_SIGNED_OUT', message: why ?? 'sign in first' } });
    } else {
      redirect(res, `/sign-in?next=${encodeURIComponent(next)}${why ? '&ended=1' : ''}`);
    }
    return undefined;
  }

  /** Every state change: from this origin, with the session's CSRF token. */
  private checkSameOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== new URL(this.publicUrl).origin)
      throw csrfError(`cross-origin request from ${origin} refused`);
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') throw csrfError(`a ${site} request cannot change anything here`);
  }

  private checkCsrf(req: IncomingMessage, auth: Authenticated, bodyToken: string | undefined): void {
    this.checkSameOrigin(req);
    const header = req.headers['x-csrf-token'];
    const token = typeof header === 'string' ? header : bodyToken;
    if (token === undefined || token === '')
      throw csrfError('the form has no CSRF token: reload the page and try again');
    if (!sameSecret(token, auth.session.csrf))
      throw csrfError('the CSRF token does not match this session: reload the page and try again');
  }

  private async formOrJson(
    req: IncomingMessage,
  ): Promise<{ get(name: string): string | undefined; json: Record<string, unknown> | undefined }> {
    const body = await readBody(req);
    if (body.kind === 'form') return { get: (name) => body.form.get(name) ?? undefined, json: undefined };
    const json =
      body.json !== null && typeof body.json === 'object' && !Array.isArray(body.json)
        ? (body.json as Record<string, unknown>)
        : {};
    return { get: (name) => (typeof json[name] === 'string' ? json[name] : undefined), json };
  }

  private loadRequestId(id: string): string {
    if (!REQUEST_ID.test(id))
      throw new CountersignError('not_found', 'ERR_REQUEST_NOT_FOUND', 'there is no such request');
    return id;
  }

  // ---- pages ----

  private async list(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const auth = await this.authenticate(req, res, '/');
    if (!auth) return;
    const pending = await this.deps.workflow.pendingFor(auth.viewer.principal);
    const passkeys = await this.deps.passkeys.list(auth.viewer.principal);
    sendHtml(res, 200, listPage(auth.viewer, pending, this.deps.clock.now(), passkeys.length));
  }

  private ruleFacts(r: StoredRequest): RuleFacts | undefined {
    const policy = this.deps.policy();
    const rule = policy.document.rules.find((x) => x.name === r.rule);
    if (rule === undefined) return undefined;
    const criteria: { key: string; value: string }[] = [];
    for (const [key, value] of Object.entries(rule.match)) {
      if (value !== undefined) criteria.push({ key, value: Array.isArray(value) ? value.join(', ') : String(value) });
    }
    if (rule.when !== undefined) criteria.push({ key: 'when', value: rule.when });
    return { name: rule.name, description: rule.description, criteria, samePolicy: policy.digest === r.policyDigest };
  }

  private recentPasskey(auth: Authenticated, r: StoredRequest): boolean {
    const at = auth.session.passkeySignIn?.at;
    return r.stepUpMaxAgeMs !== undefined && at !== undefined && this.deps.clock.now() - at <= r.stepUpMaxAgeMs;
  }

  private async renderRequest(
    res: ServerResponse,
    auth: Authenticated,
    requestId: string,
    extra: { status?: number; error?: { code: string; message: string }; notice?: string; reason?: string } = {},
  ): Promise<void> {
    const loaded = await this.deps.workflow.load(requestId);
    if (loaded === undefined)
      throw new CountersignError(
        'not_found',
        'ERR_REQUEST_NOT_FOUND',
        `request ${requestId} does not exist (or ended long ago)`,
      );
    const { request, votes } = loaded;
    const principal = auth.viewer.principal;
    // Only the people the rule names (and who voted) see a request; anyone else learns nothing about it.
    if (!(await this.deps.workflow.maySee(request, votes, principal))) {
      throw new CountersignError(
        'not_found',
        'ERR_REQUEST_NOT_FOUND',
        `request ${requestId} does not exist or is not yours to decide`,
      );
    }
    const whyNoVote = await this.deps.workflow.whyNoVote(request, votes, principal);
    const last = await this.deps.store.lastApproved(request.operation, request.resource);
    const lastApproved =
      last === undefined || last.requestId === request.id
        ? undefined
        : {
            requestId: last.requestId,
            approvedAt: last.approvedAt,
            ...diffParameters(last.parametersJson, request.parametersJson),
          };
    const passkeys = await this.deps.passkeys.list(principal);
    sendHtml(
      res,
      extra.status ?? 200,
      requestPage({
        viewer: auth.viewer,
        request,
        votes,
        now: this.deps.clock.now(),
        whyNoVote,
        lastApproved,
        rule: this.ruleFacts(request),
        passkeys: passkeys.length,
        recentPasskey: this.recentPasskey(auth, request),
        error: extra.error,
        notice: extra.notice,
        reason: extra.reason,
      }),
    );
  }

  private async requestView(req: IncomingMessage, res: ServerResponse, rawId: string): Promise<void> {
    const id = this.loadRequestId(rawId);
    const auth = await this.authenticate(req, res, `/requests/${id}`);
    if (!auth) return;
    const result = new URL(req.url ?? '/', 'http://x').searchParams.get('result');
    const notice = result === 'counted' ? 'Your vote is recorded.' : undefined;
    try {
      await this.renderRequest(res, auth, id, notice ? { notice } : {});
    } catch (e) {
      this.fail(req, res, e, auth.viewer);
    }
  }

  // ---- voting ----

  private async voteChallenge(req: IncomingMessage, res: ServerResponse, rawId: string): Promise<void> {
    const id = this.loadRequestId(rawId);
    const auth = await this.authenticate(req, res, `/requests/${id}`);
    if (!auth) return;
    const body = await this.formOrJson(req);
    this.checkCsrf(req, auth, body.get('csrf'));
    const decision = body.get('decision') === 'deny' ? 'deny' : 'approve';
    const loaded = await this.deps.workflow.load(id);
    if (loaded === undefined)
      throw new CountersignError('not_found', 'ERR_REQUEST_NOT_FOUND', `request ${id} does not exist`);
    // No challenge for a vote that could not count anyway: the refusal says why now.
    const why = await this.deps.workflow.whyNoVote(loaded.request, loaded.votes, auth.viewer.principal);
    if (why !== undefined) throw new CountersignError(VOTE_REFUSALS[why.code], why.code, why.message);
    const options = await this.deps.passkeys.voteOptions({
      principal: auth.viewer.principal,
      requestId: id,
      parametersDigest: loaded.request.parametersDigest,
      decision,
    });
    if (!options.ok)
      throw new CountersignError(
        VOTE_REFUSALS[options.code as keyof typeof VOTE_REFUSALS] ?? 'failed_precondition',
        options.code,
        options.message,
      );
    sendJson(res, 200, { challengeId: options.challengeId, options: options.options });
  }

  private async vote(req: IncomingMessage, res: ServerResponse, rawId: string): Promise<void> {
    const id = this.loadRequestId(rawId);
    const auth = await this.authenticate(req, res, `/requests/${id}`);
    if (!auth) return;
    const body = await this.formOrJson(req);
    this.checkCsrf(req, auth, body.get('csrf'));
    const decisionText = body.get('decision');
    if (decisionText !== 'approve' && decisionText !== 'deny')
      throw new CountersignError('invalid_argument', 'ERR_INVALID_FIELD', 'decision: expected approve or deny');
    const reason = (body.get('reason') ?? '').replace(/\r\n/g, '\n').trim();
    const confirmed = body.get('confirm_resource');
    const loaded = await this.deps.workflow.load(id);
    let passkey:
      { kind: 'assertion'; challengeId: string; response: unknown } | { kind: 'sign_in'; signInId: string } | undefined;
    if (body.json !== undefined && body.json.passkey !== undefined) {
      const p = body.json.passkey as { challengeId?: unknown; response?: unknown };
      passkey = {
        kind: 'assertion',
        challengeId: typeof p.challengeId === 'string' ? p.challengeId : '',
        response: p.response,
      };
    } else if (
      loaded !== undefined &&
      decisionText === 'approve' &&
      loaded.request.stepUp === 'webauthn' &&
      this.recentPasskey(auth, loaded.request)
    ) {
      passkey = { kind: 'sign_in', signInId: auth.session.passkeySignIn?.id ?? '' };
    }
    const outcome = await this.deps.workflow.vote({
      requestId: id,
      principal: auth.viewer.principal,
      channel: CONSOLE_CHANNEL,
      decision: decisionText,
      reason,
      stepUp: confirmed !== undefined && confirmed !== '' ? 'confirm' : 'click',
      ...(confirmed !== undefined && confirmed !== '' ? { confirmedResource: confirmed } : {}),
      ...(passkey === undefined ? {} : { passkey }),
    });
    if (body.json !== undefined) {
      if (outcome.counted)
        sendJson(res, 200, { counted: true, state: outcome.request.state, redirect: `/requests/${id}?result=counted` });
      else
        sendJson(
          res,
          STATUS_OF_KIND[VOTE_REFUSALS[outcome.code as keyof typeof VOTE_REFUSALS] ?? 'failed_precondition'],
          { error: { code: outcome.code, message: outcome.message } },
        );
      return;
    }
    if (outcome.counted) {
      redirect(res, `/requests/${id}?result=counted`);
      return;
    }
    const status = STATUS_OF_KIND[VOTE_REFUSALS[outcome.code as keyof typeof VOTE_REFUSALS] ?? 'failed_precondition'];
    await this.renderRequest(res, auth, id, {
      status,
      error: { code: outcome.code, message: outcome.message },
      reason,
    });
  }

  // ---- passkeys ----

  private canRegister(session: Session): { ok: true } | { ok: false; why: string } {
    if (!ENROLLING_METHODS.includes(session.method)) {
      return {
        ok: false,
        why: 'You signed in with a link sent through Slack. To register a passkey, sign in with your identity provider or with a link from an operator (countersign-broker principals link): a chat session alone must not be able to add a passkey.',
      };
    }
    const age = this.deps.clock.now() - session.createdAt;
    if (age > this.settings.enrollmentWindowMs) {
      return {
        ok: false,
        why: `You signed in ${Math.round(age / 60000)} minutes ago; a passkey can be registered only within ${Math.round(this.settings.enrollmentWindowMs / 60000)} minutes of signing in. Sign out and sign in again.`,
      };
    }
    return { ok: true };
  }

  private async passkeysView(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const auth = await this.authenticate(req, res, '/passkeys');
    if (!auth) return;
    const result = new URL(req.url ?? '/', 'http://x').searchParams.get('result');
    const notices: Record<string, string> = {
      registered: 'Passkey registered.',
      removed: 'Passkey removed.',
      confirmed: 'Confirmed with your passkey.',
    };
    sendHtml(
      res,
      200,
      passkeysPage({
        viewer: auth.viewer,
        passkeys: await this.deps.passkeys.list(auth.viewer.principal),
        canRegister: this.canRegister(auth.session),
        notice: result === null ? undefined : notices[result],
      }),
    );
  }

  private async registrationOptions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const auth = await this.authenticate(req, res, '/passkeys');
    if (!auth) return;
    const body = await this.formOrJson(req);
    this.checkCsrf(req, auth, body.get('csrf'));
    const allowed = this.canRegister(auth.session);
    if (!allowed.ok) throw new CountersignError('permission_denied', 'ERR_PASSKEY_ENROLLMENT_NOT_ALLOWED', allowed.why);
    const { challengeId, options } = await this.deps.passkeys.registrationOptions({
      principal: auth.viewer.principal,
      displayName: auth.viewer.displayName,
      session: auth.id,
    });
    sendJson(res, 200, { challengeId, options });
  }

  private async register(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const auth = await this.authenticate(req, res, '/passkeys');
    if (!auth) return;
    const body = await this.formOrJson(req);
    this.checkCsrf(req, auth, body.get('csrf'));
    const allowed = this.canRegister(auth.session);
    if (!allowed.ok) throw new CountersignError('permission_denied', 'ERR_PASSKEY_ENROLLMENT_NOT_ALLOWED', allowed.why);
    const result = await this.deps.passkeys.register({
      principal: auth.viewer.principal,
      session: auth.id,
      challengeId: body.json?.challengeId,
      response: body.json?.response,
      name: body.get('name') ?? '',
      signInMethod: auth.session.method,
    });
    if (!result.ok)
      throw new CountersignError(
        VOTE_REFUSALS[result.code as keyof typeof VOTE_REFUSALS] ?? 'invalid_argument',
        result.code,
        result.message,
      );
    sendJson(res, 200, {
      registered: true,
      credentialId: result.passkey.credential_id,
      redirect: '/passkeys?result=registered',
    });
  }

  private async removePasskey(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const auth = await this.authenticate(req, res, '/passkeys');
    if (!auth) return;
    const body = await this.formOrJson(req);
    this.checkCsrf(req, auth, body.get('csrf'));
    // Removing is as sensitive as adding: a session that cannot enrol (a Slack link) cannot take an approver's passkeys away either.
    const allowed = this.canRegister(auth.session);
    if (!allowed.ok)
      throw new CountersignError(
        'permission_denied',
        'ERR_PASSKEY_ENROLLMENT_NOT_ALLOWED',
        allowed.why.replace('To register a passkey', 'To register or remove a passkey'),
      );
    const id = body.get('credential_id') ?? '';
    if (
      !/^[A-Za-z0-9_-]{1,1366}$/.test(id) ||
      !(await this.deps.passkeys.remove(auth.viewer.principal, id, auth.viewer.principal))
    ) {
      throw new CountersignError('not_found', 'ERR_PASSKEY_NOT_YOURS', 'you have no such passkey');
    }
    redirect(res, '/passkeys?result=removed');
  }

  private async passkeySignInOptions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const auth = await this.authenticate(req, res, '/passkeys');
    if (!auth) return;
    const body = await this.formOrJson(req);
    this.checkCsrf(req, auth, body.get('csrf'));
    const options = await this.deps.passkeys.signInOptions(auth.viewer.principal, auth.id);
    if (!options.ok) throw new CountersignError('failed_precondition', options.code, options.message);
    sendJson(res, 200, { challengeId: options.challengeId, options: options.options });
  }

  private async passkeySignIn(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const auth = await this.authenticate(req, res, '/passkeys');
    if (!auth) return;
    const body = await this.formOrJson(req);
    this.checkCsrf(req, auth, body.get('csrf'));
    const result = await this.deps.passkeys.verifySignIn({
      principal: auth.viewer.principal,
      session: auth.id,
      challengeId: body.json?.challengeId,
      response: body.json?.response,
    });
    if (!result.ok)
      throw new CountersignError(
        VOTE_REFUSALS[result.code as keyof typeof VOTE_REFUSALS] ?? 'permission_denied',
        result.code,
        result.message,
      );
    await this.deps.sessions.update(auth.id, {
      ...auth.session,
      passkeySignIn: { id: result.signInId, at: result.assertion.asserted_at },
    });
    sendJson(res, 200, { confirmed: true, redirect: '/passkeys?result=confirmed' });
  }

  // ---- sign-in and out ----

  /** A safe place to go after signing in: one of our own pages, nothing else. */
  private nextPath(text: string | null | undefined): string {
    if (text && /^\/(requests\/[A-Za-z0-9_-]{1,128}|passkeys)?$/.test(text)) return text;
    return '/';
  }

  private async signInView(_req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    sendHtml(
      res,
      200,
      signInPage({
        oidc: this.deps.oidc ? { displayName: this.deps.oidc.settings.displayName } : undefined,
        next: this.nextPath(url.searchParams.get('next')),
        why: url.searchParams.has('ended') ? 'Your session ended; sign in again.' : undefined,
      }),
    );
  }

  private async startSession(
    req: IncomingMessage,
    res: ServerResponse,
    principal: string,
    method: Session['method'],
    extraCookies: string[] = [],
  ): Promise<void> {
    // A new id at every sign-in (no fixation), and the session this browser had before ends.
    const previous = parseCookies(req.headers.cookie).get(this.sessionCookie);
    if (previous !== undefined && /^[A-Za-z0-9_-]{43}$/.test(previous)) await this.deps.sessions.destroy(previous);
    const { id } = await this.deps.sessions.create(principal, method);
    await this.deps.audit.append({ type: 'console_sign_in', principal, method });
    res.setHeader('set-cookie', [
      cookie(this.sessionCookie, id, this.cookieOptions('Strict', Math.floor(this.settings.sessionMaxAgeMs / 1000))),
      ...extraCookies,
    ]);
  }

  private async linkView(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A pre-session value ties the Sign in button to this browser (no sign-in CSRF).
    const pre = randomBytes(24).toString('base64url');
    res.setHeader('set-cookie', cookie(this.preCookie, pre, this.cookieOptions('Strict', 600)));
    sendHtml(res, 200, linkPage({ preCsrf: pre }));
  }

  private async linkSignIn(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.checkSameOrigin(req);
    const body = await this.formOrJson(req);
    const pre = parseCookies(req.headers.cookie).get(this.preCookie);
    const sent = body.get('pre_csrf');
    if (pre === undefined || sent === undefined || !sameSecret(pre, sent))
      throw csrfError('open the sign-in link again (this form did not come from it)');
    const used = await this.deps.links.consume(body.get('token') ?? '');
    if (!used.ok) {
      const fresh = randomBytes(24).toString('base64url');
      res.setHeader('set-cookie', cookie(this.preCookie, fresh, this.cookieOptions('Strict', 600)));
      sendHtml(
        res,
        used.code === 'ERR_SIGN_IN_LINK_UNKNOWN' ? 404 : 410,
        linkPage({ preCsrf: fresh, error: { code: used.code, message: used.message } }),
      );
      return;
    }
    // The directory's entry (any spelling finds it): the session carries its one canonical name.
    const principal = this.deps.directory.byName(used.principal);
    if (principal === undefined) {
      throw new CountersignError(
        'permission_denied',
        'ERR_NOT_AN_APPROVER',
        `${used.principal} is no longer in the principals file`,
      );
    }
    await this.startSession(req, res, principal.name, used.method, [clearCookie(this.preCookie, this.cookieOptions())]);
    redirect(res, used.requestId ? `/requests/${used.requestId}` : '/');
  }

  private async oidcStart(_req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const oidc = this.deps.oidc;
    if (oidc === undefined)
      throw new CountersignError(
        'not_found',
        'ERR_CONSOLE_NOT_FOUND',
        'sign-in with an identity provider is not configured (console.oidc)',
      );
    const { transaction, url: target } = await oidc.start(this.nextPath(url.searchParams.get('next')));
    // Lax: the identity provider sends the browser back with a cross-site navigation.
    res.setHeader(
      'set-cookie',
      cookie(this.oidcCookie, transaction, this.cookieOptions('Lax', Math.floor(OIDC_TRANSACTION_TTL_MS / 1000))),
    );
    redirect(res, target.href);
  }

  private async oidcCallback(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const oidc = this.deps.oidc;
    if (oidc === undefined)
      throw new CountersignError(
        'not_found',
        'ERR_CONSOLE_NOT_FOUND',
        'sign-in with an identity provider is not configured (console.oidc)',
      );
    const clear = clearCookie(this.oidcCookie, this.cookieOptions('Lax'));
    const current = new URL(`${url.pathname}${url.search}`, this.publicUrl);
    const result = await oidc.finish(parseCookies(req.headers.cookie).get(this.oidcCookie), current);
    const refuse = (code: string, message: string) => {
      res.setHeader('set-cookie', clear);
      sendHtml(
        res,
        403,
        signInPage({ oidc: { displayName: oidc.settings.displayName }, next: '/', error: { code, message } }),
      );
    };
    if (!result.ok) return refuse(result.code, result.message);
    // byEmail compares canonical forms (policy/principal-name.ts), so Alice@Example.ORG finds alice@example.org;
    // an address with no canonical form names nobody. Subjects are opaque and compared exactly.
    let principal;
    if (oidc.settings.claim === 'email') {
      if (result.email === undefined)
        return refuse('ERR_OIDC_NO_PRINCIPAL', 'the identity provider did not send an e-mail address (scope email)');
      if (!result.emailVerified)
        return refuse(
          'ERR_OIDC_EMAIL_UNVERIFIED',
          `the identity provider has not verified ${result.email}; an unverified address names nobody`,
        );
      principal = this.deps.directory.byEmail(result.email);
      if (principal === undefined)
        return refuse('ERR_OIDC_NO_PRINCIPAL', `${result.email} is not the e-mail of any principal (principals file)`);
    } else {
      principal = this.deps.directory.byOidcSubject(result.subject);
      if (principal === undefined)
        return refuse(
          'ERR_OIDC_NO_PRINCIPAL',
          `subject ${result.subject} is not the oidc_subject of any principal (principals file)`,
        );
    }
    await this.startSession(req, res, principal.name, 'oidc', [clear]);
    // A page, not a redirect: a redirect chain that began at the identity provider would not carry the SameSite=Strict cookie.
    sendHtml(res, 200, continuePage(this.nextPath(result.next)));
  }

  private async signOut(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const cookies = parseCookies(req.headers.cookie);
    const loaded = await this.deps.sessions.load(cookies.get(this.sessionCookie));
    if (loaded.ok) {
      const body = await this.formOrJson(req);
      this.checkCsrf(
        req,
        {
          id: loaded.id,
          session: loaded.session,
          viewer: { principal: loaded.session.principal, displayName: '', csrf: loaded.session.csrf },
        },
        body.get('csrf'),
      );
      await this.deps.sessions.destroy(loaded.id);
    }
    redirect(res, '/sign-in', { 'set-cookie': clearCookie(this.sessionCookie, this.cookieOptions()) });
  }

  private async staticFile(_req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    const file = this.staticFiles.get(name);
    if (file === undefined) {
      sendHtml(res, 404, errorPage(404, 'ERR_CONSOLE_NOT_FOUND', 'there is no such file'));
      return;
    }
    res.writeHead(200, { 'content-type': file.type, 'content-length': file.body.length, 'cache-control': 'no-cache' });
    res.end(file.body);
  }
}
