// Signing in to the approver console with an identity provider: a real OpenID
// provider (oidc-provider) on localhost, the authorization code flow with PKCE
// driven through its own login and consent pages in chromium. A principal
// matches by a verified e-mail address; anything else is refused.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import Provider from 'oidc-provider';
import { auditEvents, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { launchBrowser, PersonBrowser, type Browser } from './support/browser.js';

const TD = 'example.org';
const PRINCIPALS = `version: 1
principals:
  - { name: alice, display_name: Alice Approver, email: alice@${TD}, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, email: bob@${TD}, spiffe_ids: [spiffe://${TD}/human/bob] }
`;

/** The identity provider's accounts: the login name typed on its page selects one. */
const ACCOUNTS: Record<string, { email: string; email_verified: boolean }> = {
  alice: { email: 'Alice@Example.org', email_verified: true },
  mallory: { email: 'mallory@elsewhere.example', email_verified: true },
  eve: { email: `bob@${TD}`, email_verified: false },
};

describe('approver console: OIDC sign-in against a real OpenID provider', { timeout: 600_000 }, () => {
  let idp: Server;
  let issuer: string;
  let t: TestBroker;
  let browser: Browser;

  before(async () => {
    // The provider's address is needed before the broker starts, the broker's before the provider is built.
    let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
    idp = createServer((req, res) => (handler ? handler(req, res) : res.writeHead(503).end()));
    await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
    issuer = `http://localhost:${(idp.address() as { port: number }).port}`;
    t = await startTestBroker({
      principals: PRINCIPALS,
      files: { 'oidc-secret': 'a-client-secret-for-tests\n' },
      extraConfig: `console:
  enabled: true
  listen: 127.0.0.1:0
  oidc:
    issuer: ${issuer}
    client_id: countersign-console
    client_secret_file: oidc-secret
    display_name: Example SSO
`,
    });
    const consoleUrl = t.broker.console?.publicUrl as string;
    const provider = new Provider(issuer, {
      clients: [
        {
          client_id: 'countersign-console',
          client_secret: 'a-client-secret-for-tests',
          redirect_uris: [`${consoleUrl}/sign-in/oidc/callback`],
          grant_types: ['authorization_code'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_post',
        },
      ],
      claims: { openid: ['sub'], email: ['email', 'email_verified'] },
      pkce: { required: () => true },
      features: { devInteractions: { enabled: true } },
      cookies: { keys: ['oidc-provider-test-cookie-key'] },
      findAccount: async (_ctx: unknown, id: string) => ({
        accountId: id,
        claims: async () => ({
          sub: `sub-${id}`,
          ...(ACCOUNTS[id] ?? { email: `${id}@nowhere.example`, email_verified: false }),
        }),
      }),
    });
    handler = provider.callback();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await t?.close();
    await new Promise<void>((resolve) => idp.close(() => resolve()));
    idp.closeAllConnections();
  });

  /** Clicks "Sign in with Example SSO", logs in at the provider as `login`, consents. */
  async function ssoSignIn(person: PersonBrowser, login: string): Promise<void> {
    const { page } = person;
    await page.goto(`${t.broker.console?.publicUrl}/sign-in`);
    await page.getByRole('link', { name: 'Sign in with Example SSO' }).click();
    await page.getByPlaceholder('Enter any login').fill(login);
    await page.getByPlaceholder('and password').fill('any');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
  }

  it('signs alice in by her verified e-mail (any case), and lets her register a passkey', async () => {
    const alice = await PersonBrowser.open(browser);
    try {
      await ssoSignIn(alice, 'alice');
      await alice.page.getByRole('heading', { name: 'Pending requests' }).waitFor();
      await alice.page.getByText('Signed in as Alice Approver').waitFor();
      const cookie = (await alice.context.cookies(t.broker.console?.publicUrl)).find(
        (c) => c.name === 'countersign_session',
      );
      assert.equal(cookie?.sameSite, 'Strict');
      // The identity provider's sign-in may enrol a passkey (a Slack-delivered link may not).
      await alice.page.goto(`${t.broker.console?.publicUrl}/passkeys`);
      await alice.page.getByLabel('Passkey name').fill('sso laptop');
      await alice.page.getByRole('button', { name: 'Register a passkey' }).click();
      await alice.page.getByText('Passkey registered.').waitFor();
      const events = await auditEvents(t.broker.redis, t.prefix);
      assert.ok(events.some((e) => e.type === 'console_sign_in' && e.principal === 'alice' && e.method === 'oidc'));
      assert.ok(
        events.some((e) => e.type === 'passkey_registered' && e.principal === 'alice' && e.sign_in_method === 'oidc'),
      );
    } finally {
      await alice.close();
    }
  });

  it('refuses an e-mail address the provider has not verified', async () => {
    const eve = await PersonBrowser.open(browser);
    try {
      await ssoSignIn(eve, 'eve');
      await eve.page.getByText('ERR_OIDC_EMAIL_UNVERIFIED').waitFor();
      assert.equal(
        (await eve.context.cookies(t.broker.console?.publicUrl)).some((c) => c.name === 'countersign_session'),
        false,
      );
    } finally {
      await eve.close();
    }
  });

  it('refuses someone who is no principal', async () => {
    const mallory = await PersonBrowser.open(browser);
    try {
      await ssoSignIn(mallory, 'mallory');
      await mallory.page.getByText('mallory@elsewhere.example is not the e-mail of any principal').waitFor();
      await mallory.page.getByText('ERR_OIDC_NO_PRINCIPAL').waitFor();
      assert.equal(
        (await mallory.context.cookies(t.broker.console?.publicUrl)).some((c) => c.name === 'countersign_session'),
        false,
      );
    } finally {
      await mallory.close();
    }
  });

  it('refuses a callback this browser did not start (login CSRF), and a forged state', async () => {
    const person = await PersonBrowser.open(browser);
    try {
      await person.page.goto(`${t.broker.console?.publicUrl}/sign-in/oidc/callback?code=stolen&state=whatever`);
      await person.page.getByText('ERR_OIDC_TRANSACTION_UNKNOWN').waitFor();
      // A sign-in this browser started, answered with another state.
      await person.page.goto(`${t.broker.console?.publicUrl}/sign-in`);
      await person.page.getByRole('link', { name: 'Sign in with Example SSO' }).click();
      await person.page.getByPlaceholder('Enter any login').waitFor();
      await person.page.goto(
        `${t.broker.console?.publicUrl}/sign-in/oidc/callback?code=forged&state=not-the-one-sent&iss=${encodeURIComponent(issuer)}`,
      );
      await person.page.getByText('ERR_OIDC_FAILED').waitFor();
      assert.equal(
        (await person.context.cookies(t.broker.console?.publicUrl)).some((c) => c.name === 'countersign_session'),
        false,
      );
    } finally {
      await person.close();
    }
  });
});
