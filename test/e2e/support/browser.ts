// A real browser for console tests: Debian's chromium driven by playwright-core,
// with passkeys on the DevTools WebAuthn virtual authenticator (a CTAP2 platform
// authenticator that verifies its user, unless a test says otherwise).
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type CDPSession, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: run .ci/run (it installs Debian's chromium), or apt-get install chromium`);
  return chromium.launch({ executablePath: CHROMIUM, args: FLAGS, timeout: 120_000 });
}

export interface VirtualCredential {
  credentialId: string;
  /** PKCS#8, base64 (standard alphabet), as DevTools gives it. */
  privateKey: string;
  signCount: number;
  rpId: string;
  userHandle?: string;
}

/** One person's browser: a fresh context (own cookies) with a virtual authenticator attached. */
export class PersonBrowser {
  private constructor(
    readonly context: BrowserContext,
    readonly page: Page,
    readonly cdp: CDPSession,
    readonly authenticatorId: string,
  ) {}

  static async open(
    browser: Browser,
    options: { userVerified?: boolean; viewport?: { width: number; height: number } } = {},
  ): Promise<PersonBrowser> {
    const context = await browser.newContext({
      viewport: options.viewport ?? { width: 1000, height: 900 },
      deviceScaleFactor: 1,
    });
    context.setDefaultTimeout(60_000);
    context.setDefaultNavigationTimeout(60_000);
    const page = await context.newPage();
    // A script error in the console must fail the test that caused it.
    page.on('pageerror', (e) => {
      throw e;
    });
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable', { enableUI: false });
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: options.userVerified ?? true,
        automaticPresenceSimulation: true,
      },
    });
    return new PersonBrowser(context, page, cdp, authenticatorId);
  }

  async credentials(): Promise<VirtualCredential[]> {
    const { credentials } = await this.cdp.send('WebAuthn.getCredentials', { authenticatorId: this.authenticatorId });
    return credentials.map((c) => ({
      credentialId: c.credentialId,
      privateKey: c.privateKey,
      signCount: c.signCount,
      rpId: c.rpId ?? '',
      ...(c.userHandle ? { userHandle: c.userHandle } : {}),
    }));
  }

  async setUserVerified(isUserVerified: boolean): Promise<void> {
    await this.cdp.send('WebAuthn.setUserVerified', { authenticatorId: this.authenticatorId, isUserVerified });
  }

  /** Moves a credential (with its private key) into this person's authenticator. */
  async addCredential(c: VirtualCredential): Promise<void> {
    await this.cdp.send('WebAuthn.addCredential', {
      authenticatorId: this.authenticatorId,
      credential: {
        credentialId: c.credentialId,
        isResidentCredential: true,
        rpId: c.rpId,
        privateKey: c.privateKey,
        signCount: c.signCount,
        ...(c.userHandle ? { userHandle: c.userHandle } : {}),
      },
    });
  }

  async close(): Promise<void> {
    await this.context.close();
  }
}

export type { Browser, Page };
