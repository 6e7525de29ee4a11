// The console served over HTTPS by the broker itself (console.tls): its cookies
// are Secure, the session cookie carries the __Host- prefix (host-only, path /),
// HSTS is sent. On http://localhost the same cookies are not Secure (browsers
// treat localhost as a secure context; see console.test.ts).
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority, startTestBroker, type TestBroker } from './support/index.js';

const TD = 'example.org';

function get(
  url: string,
  ca: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('approver console over HTTPS', () => {
  let t: TestBroker;
  const ca = CertificateAuthority.createRoot(TD);

  before(async () => {
    const server = ca.issueSvid(`spiffe://${TD}/countersign/console`, { dns: ['localhost'] });
    t = await startTestBroker({
      ca,
      files: { 'console.pem': server.chainPem, 'console-key.pem': server.keyPem },
      extraConfig: `console:
  enabled: true
  listen: 127.0.0.1:0
  tls: { cert_file: console.pem, key_file: console-key.pem }
`,
    });
  });
  after(async () => {
    await t?.close();
  });

  it('serves https on its own listener with Secure cookies, a __Host- session cookie and HSTS', async () => {
    const base = t.broker.console?.publicUrl as string;
    assert.match(base, /^https:\/\/localhost:\d+$/);
    const page = await get(`${base}/sign-in/link`, ca.pem);
    assert.equal(page.status, 200);
    assert.equal(page.headers['strict-transport-security'], 'max-age=31536000');
    const pre = String(page.headers['set-cookie']);
    assert.match(pre, /^countersign_pre=[A-Za-z0-9_-]+; Path=\/; HttpOnly; SameSite=Strict; Secure; Max-Age=600$/);
    const preValue = /countersign_pre=([^;]+)/.exec(pre)?.[1] as string;

    const url = (await t.broker.console?.links.issue({ principal: 'alice', by: 'test', method: 'link' }))
      ?.url as string;
    const token = url.split('#t=')[1] as string;
    const signedIn = await get(`${base}/sign-in/link`, ca.pem, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        origin: base,
        cookie: `countersign_pre=${preValue}`,
      },
      body: `pre_csrf=${preValue}&token=${token}`,
    });
    assert.equal(signedIn.status, 303);
    const cookies = signedIn.headers['set-cookie'] as string[];
    const session = cookies.find((c) => c.startsWith('__Host-countersign='));
    assert.ok(session, cookies.join('\n'));
    assert.match(session, /; Path=\/; HttpOnly; SameSite=Strict; Secure; Max-Age=43200$/);
    assert.doesNotMatch(session, /Domain=/i, 'host-only');

    const list = await get(`${base}/`, ca.pem, { headers: { cookie: session.split(';')[0] as string } });
    assert.equal(list.status, 200);
    assert.match(list.body, /Pending requests/);
    // The plain-http cookie name means nothing here.
    const other = await get(`${base}/`, ca.pem, {
      headers: { cookie: `countersign_session=${(session.split(';')[0] as string).split('=')[1]}` },
    });
    assert.equal(other.status, 303);
  });
});
