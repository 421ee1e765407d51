// Black-box tests of waf-server's browser flow, run by tests/waf/test-waf.sh against a real
// server process: openid-client (RFC 8414 discovery, authorization code with PKCE S256,
// refresh rotation and reuse detection, introspection, revocation) with the login page
// driven by playwright-core in Debian's Chromium; the authorize endpoint's errors (no open
// redirect), login lockout and CSRF, code replay and PKCE failures.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import * as oidc from 'openid-client';
import { chromium } from 'playwright-core';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const base = process.env.WAF_URL;
const svcSecret = process.env.SVC_SECRET;
const dbUrl = process.env.DATABASE_URL;
const REDIRECT = 'https://wwsf.home1.net/cb';
// The portal's callback for the browser: a local server (Chromium follows the WAF's 303).
const CALLBACK = `http://127.0.0.1:${process.env.CB_PORT}/cb`;
const form = 'application/x-www-form-urlencoded';
const insecure = { execute: [oidc.allowInsecureRequests], algorithm: 'oauth2' };
const jwks = createRemoteJWKSet(new URL(`${base}/jwks.json`));
const sql = (q) => execFileSync('psql', [dbUrl, '-Atqc', q], { encoding: 'utf8' }).trim();

let browser, profile, wic, wicPool, svc, portal;
const callbacks = [];

before(async () => {
  portal = createServer((req, res) => {
    callbacks.push(new URL(req.url, CALLBACK));
    res.end('back at the portal');
  });
  await new Promise((ok) => portal.listen(Number(process.env.CB_PORT), '127.0.0.1', ok));
  wic = await oidc.discovery(new URL(base), 'wic', undefined, oidc.None(), insecure);
  wicPool = await oidc.discovery(new URL(base), 'wic-pool', undefined, oidc.None(), insecure);
  svc = await oidc.discovery(new URL(base), 'svc', undefined, oidc.ClientSecretBasic(svcSecret), insecure);
  profile = mkdtempSync(join(tmpdir(), 'waf-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  portal?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

// Signs in on the WAF's page in Chromium and returns the callback URL the browser was
// sent to (the client's redirect URI is intercepted, never reached).
async function browserLogin(config, user, password, extra = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: CALLBACK, scope: 'ims', state,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra,
  });
  const page = await browser.newPage();
  const seen = callbacks.length;
  const resp = await page.goto(url.href);
  assert.equal(resp.status(), 200);
  assert.equal(await page.title(), 'Sign in');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForLoadState('load'), page.click('#submit')]);
  await page.waitForURL((u) => u.href.startsWith(CALLBACK) || u.pathname === '/authorize');
  const errorText = await page.locator('#error').count() ? await page.locator('#error').textContent() : null;
  if (process.env.DEBUG_BROWSER) console.error('after submit:', page.url(), await page.content());
  await page.close();
  return { callback: callbacks[seen], verifier, state, errorText };
}

test('discovery through RFC 8414 metadata', () => {
  const m = wic.serverMetadata();
  assert.equal(m.issuer, base);
  assert.equal(m.authorization_endpoint, `${base}/authorize`);
  assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
  assert.ok(m.grant_types_supported.includes('refresh_token'));
  assert.equal(m.authorization_response_iss_parameter_supported, true);
});

test('client_credentials through openid-client', async () => {
  const t = await oidc.clientCredentialsGrant(svc, { scope: 'ims.lease' });
  assert.equal(t.scope, 'ims.lease');
  const { payload } = await jwtVerify(t.access_token, jwks, { issuer: base, audience: 'epcscf.home1.net', typ: 'at+jwt' });
  assert.equal(payload.client_id, 'svc');
  await assert.rejects(oidc.clientCredentialsGrant(svc, { scope: 'admin' }), (e) => e.error === 'invalid_scope');
});

test('authorization code + PKCE in Chromium, then refresh rotation and reuse detection', async () => {
  const { callback, verifier, state } = await browserLogin(wic, 'carol', 'pw-of-carol');
  assert.ok(callback, 'redirected back to the client');
  assert.equal(callback.searchParams.get('iss'), base);
  const tokens = await oidc.authorizationCodeGrant(wic, callback, { pkceCodeVerifier: verifier, expectedState: state });
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.equal(tokens.impi, 'carol@home1.net');
  assert.equal(tokens.impu, 'sip:carol@home1.net');
  assert.ok(tokens.refresh_token);
  const { payload } = await jwtVerify(tokens.access_token, jwks, { issuer: base, audience: 'epcscf.home1.net', typ: 'at+jwt' });
  assert.deepEqual(payload.impu, ['sip:carol@home1.net']);
  assert.equal(payload.client_id, 'wic');
  assert.equal(payload.scope, 'ims');

  // The code is single-use; presenting it again revokes what it issued.
  const replay = await fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': form },
    body: new URLSearchParams({ grant_type: 'authorization_code', client_id: 'wic', code: callback.searchParams.get('code'),
      redirect_uri: CALLBACK, code_verifier: verifier }) });
  assert.equal(replay.status, 400);
  assert.equal((await replay.json()).error, 'invalid_grant');
  assert.equal((await oidc.tokenIntrospection(svc, tokens.access_token)).active, false, 'code replay revoked the access token');
  await assert.rejects(oidc.refreshTokenGrant(wic, tokens.refresh_token), (e) => e.error === 'invalid_grant');

  // A fresh session: refresh rotates; the spent refresh token revokes the family.
  const s2 = await browserLogin(wic, 'carol', 'pw-of-carol');
  const t2 = await oidc.authorizationCodeGrant(wic, s2.callback, { pkceCodeVerifier: s2.verifier, expectedState: s2.state });
  const t3 = await oidc.refreshTokenGrant(wic, t2.refresh_token);
  assert.notEqual(t3.refresh_token, t2.refresh_token, 'rotated');
  assert.equal(t3.impi, 'carol@home1.net');
  assert.equal((await oidc.tokenIntrospection(svc, t3.access_token)).active, true);
  await assert.rejects(oidc.refreshTokenGrant(wic, t2.refresh_token), (e) => e.error === 'invalid_grant');
  await assert.rejects(oidc.refreshTokenGrant(wic, t3.refresh_token), (e) => e.error === 'invalid_grant',
    'reuse revoked the whole family');
  assert.equal((await oidc.tokenIntrospection(svc, t3.access_token)).active, false);

  // Revocation (RFC 7009) by the public client itself: a refresh token takes its family.
  const s4 = await browserLogin(wic, 'carol', 'pw-of-carol');
  const t4 = await oidc.authorizationCodeGrant(wic, s4.callback, { pkceCodeVerifier: s4.verifier, expectedState: s4.state });
  await oidc.tokenRevocation(wic, t4.refresh_token);
  await assert.rejects(oidc.refreshTokenGrant(wic, t4.refresh_token), (e) => e.error === 'invalid_grant');
  assert.equal((await oidc.tokenIntrospection(svc, t4.access_token)).active, false);
});

test('an unmapped user at a client with a pool gets a temporary identity that refresh keeps', async () => {
  const s = await browserLogin(wicPool, 'dave', 'pw-of-dave');
  const t = await oidc.authorizationCodeGrant(wicPool, s.callback, { pkceCodeVerifier: s.verifier, expectedState: s.state });
  assert.match(t.impu, /^sip:anon-\d@home1\.net$/);
  assert.match(t.pool_lease, /^[0-9a-f-]{36}$/);
  const t2 = await oidc.refreshTokenGrant(wicPool, t.refresh_token);
  assert.equal(t2.impu, t.impu);
  assert.equal(t2.pool_lease, t.pool_lease, 'the lease is renewed, not replaced');
  await assert.rejects(oidc.refreshTokenGrant(wicPool, t.refresh_token), (e) => e.error === 'invalid_grant');
  assert.equal(sql(`SELECT release_reason FROM leases WHERE id = '${t.pool_lease}'`), 'revoked',
    'revoking the family gave the identity back');
  // The same user without a pool: no identity.
  const s2 = await browserLogin(wic, 'dave', 'pw-of-dave');
  await assert.rejects(oidc.authorizationCodeGrant(wic, s2.callback, { pkceCodeVerifier: s2.verifier, expectedState: s2.state }),
    (e) => e.error === 'invalid_grant');
});

test('wrong passwords: same message, lockout after five, no redirect', async () => {
  const r1 = await browserLogin(wic, 'erin', 'wrong');
  assert.equal(r1.callback, undefined);
  assert.match(r1.errorText, /Wrong username or password/);
  const unknown = await browserLogin(wic, 'nobody', 'wrong');
  assert.equal(unknown.errorText, r1.errorText, 'unknown users read the same');
  for (let i = 0; i < 4; i++) await loginPost('erin', 'wrong');
  // SQL metacharacters are a wrong username like any other.
  const inj = await loginPost("erin' OR '1'='1' --", "x' OR '1'='1");
  assert.equal(inj.status, 401);
  assert.equal(inj.headers.get('location'), null);
  const locked = await browserLogin(wic, 'erin', 'pw-of-erin');
  assert.equal(locked.callback, undefined, 'locked after five failures');
  assert.ok(Number(sql("SELECT extract(epoch FROM locked_until - now()) FROM password_credentials WHERE username = 'erin'")) > 800);
});

// A login POST as a browser would send it (GET the form, keep its CSRF cookie).
async function loginPost(user, password, params = {}) {
  const q = new URLSearchParams({ response_type: 'code', client_id: 'wic', redirect_uri: REDIRECT, scope: 'ims',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', state: 'st', ...params });
  const page = await fetch(`${base}/authorize?${q}`);
  const cookie = page.headers.get('set-cookie').split(';')[0];
  const csrf = (await page.text()).match(/name="csrf" value="([^"]+)"/)[1];
  return fetch(`${base}/authorize`, { method: 'POST', redirect: 'manual',
    headers: { 'content-type': form, cookie }, body: new URLSearchParams({ ...Object.fromEntries(q), csrf, username: user, password }) });
}

test('the login page: security headers, CSRF, fields escaped', async () => {
  const r = await fetch(`${base}/authorize?response_type=code&client_id=wic&code_challenge_method=S256&scope=ims` +
    `&redirect_uri=${encodeURIComponent(REDIRECT)}` +
    `&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&state=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-security-policy'), /default-src 'none'/);
  assert.equal(r.headers.get('x-frame-options'), 'DENY');
  assert.match(r.headers.get('set-cookie'), /HttpOnly; SameSite=Strict/);
  const html = await r.text();
  assert.ok(!html.includes('<script>'), 'state is escaped');
  assert.ok(html.includes('&quot;&gt;&lt;script&gt;'));
  // No cookie: refused, no code.
  const noCsrf = await fetch(`${base}/authorize`, { method: 'POST', redirect: 'manual', headers: { 'content-type': form },
    body: 'response_type=code&client_id=wic&scope=ims&code_challenge_method=S256&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&username=carol&password=pw-of-carol&csrf=x' });
  assert.equal(noCsrf.status, 400);
  assert.equal(noCsrf.headers.get('location'), null);
});

test('authorize errors: never redirect to an unregistered URI; others go back with state and iss', async () => {
  const good = { response_type: 'code', client_id: 'wic', redirect_uri: REDIRECT, scope: 'ims', state: 's1',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' };
  const get = (p) => fetch(`${base}/authorize?${new URLSearchParams(p)}`, { redirect: 'manual' });
  for (const bad of [{ client_id: 'nope' }, { client_id: undefined }, { redirect_uri: 'https://evil.example/cb' },
    { redirect_uri: `${REDIRECT}/../evil` }, { redirect_uri: 'https://wwsf.home1.net/cb?x=1' }, { client_id: 'svc' }]) {
    const p = { ...good, ...bad };
    for (const k of Object.keys(p)) if (p[k] === undefined) delete p[k];
    const r = await get(p);
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.equal(r.headers.get('location'), null, `no redirect for ${JSON.stringify(bad)}`);
  }
  const repeated = await fetch(`${base}/authorize?${new URLSearchParams(good)}&state=again`, { redirect: 'manual' });
  assert.equal(repeated.status, 400);
  assert.equal(repeated.headers.get('location'), null);
  const cases = [
    [{ code_challenge: undefined }, 'invalid_request'],
    [{ code_challenge_method: 'plain' }, 'invalid_request'],
    [{ code_challenge: 'short' }, 'invalid_request'],
    [{ response_type: 'token' }, 'unsupported_response_type'],
    [{ response_type: undefined }, 'invalid_request'],
    [{ scope: 'ims admin' }, 'invalid_scope'],
    [{ scope: 'openid' }, 'invalid_scope'],
  ];
  for (const [bad, error] of cases) {
    const p = { ...good, ...bad };
    for (const k of Object.keys(p)) if (p[k] === undefined) delete p[k];
    const r = await get(p);
    assert.equal(r.status, 303, JSON.stringify(bad));
    const loc = new URL(r.headers.get('location'));
    assert.equal(loc.origin + loc.pathname, REDIRECT);
    assert.equal(loc.searchParams.get('error'), error, JSON.stringify(bad));
    assert.equal(loc.searchParams.get('state'), 's1');
    assert.equal(loc.searchParams.get('iss'), base);
  }
  // A registered URI with a query keeps it.
  const withQuery = await fetch(`${base}/authorize?${new URLSearchParams({ ...good, client_id: 'wic-pool',
    redirect_uri: 'http://127.0.0.1:9/cb?x=1', response_type: 'token' })}`, { redirect: 'manual' });
  assert.match(withQuery.headers.get('location'), /^http:\/\/127\.0\.0\.1:9\/cb\?x=1&error=unsupported_response_type&/);
});

test('code redemption errors: PKCE mismatch and wrong client write nothing; expired codes fail', async () => {
  const verifier = 'a'.repeat(43);
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const r = await loginPost('carol', 'pw-of-carol', { code_challenge: challenge });
  assert.equal(r.status, 303);
  const code = new URL(r.headers.get('location')).searchParams.get('code');
  const redeem = (p) => fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': form },
    body: new URLSearchParams({ grant_type: 'authorization_code', client_id: 'wic', code, redirect_uri: REDIRECT, ...p }) })
    .then(async (x) => ({ status: x.status, json: await x.json() }));
  const before = sql("SELECT count(*) FROM authorization_codes WHERE used_at IS NOT NULL") + '/' + sql('SELECT count(*) FROM refresh_tokens');
  let x = await redeem({ code_verifier: 'b'.repeat(43) });
  assert.equal(x.json.error, 'invalid_grant');
  x = await redeem({ code_verifier: 'short' });
  assert.equal(x.json.error, 'invalid_request');
  x = await redeem({ code_verifier: verifier, redirect_uri: 'https://wwsf.home1.net/other' });
  assert.equal(x.json.error, 'invalid_grant');
  x = await redeem({ code_verifier: verifier, client_id: 'wic-pool' });
  assert.equal(x.json.error, 'invalid_grant');
  x = await redeem({ code_verifier: verifier, refresh_token: 'x' });
  assert.equal(x.json.error, 'invalid_request');
  x = await redeem({ code_verifier: undefined });
  assert.equal(x.json.error, 'invalid_request');
  x = await redeem({ code_verifier: verifier, code: "x' OR '1'='1" });
  assert.equal(x.json.error, 'invalid_grant');
  assert.equal(sql("SELECT count(*) FROM authorization_codes WHERE used_at IS NOT NULL") + '/' + sql('SELECT count(*) FROM refresh_tokens'),
    before, 'failed redemptions write nothing');
  // The code still works after those failures (they rolled back).
  x = await redeem({ code_verifier: verifier });
  assert.equal(x.status, 200, JSON.stringify(x.json));
  // An expired code.
  const r2 = await loginPost('carol', 'pw-of-carol', { code_challenge: challenge });
  const code2 = new URL(r2.headers.get('location')).searchParams.get('code');
  sql("UPDATE authorization_codes SET created_at = created_at - interval '1 hour', expires_at = created_at - interval '59 minutes' WHERE used_at IS NULL");
  x = await redeem({ code: code2, code_verifier: verifier });
  assert.equal(x.json.error, 'invalid_grant');
  assert.match(x.json.error_description, /expired/);
});

test('SQL metacharacters in every token-endpoint and authorize field: an error, nothing written', async () => {
  const snapshot = () => sql(`SELECT (SELECT count(*) FROM authorization_codes) || '/' || (SELECT count(*) FROM refresh_tokens)
    || '/' || (SELECT count(*) FROM leases) || '/' || (SELECT count(*) FROM revoked_tokens) || '/' ||
    (SELECT count(*) FROM consumed_assertions) || '/' || (SELECT count(*) FROM web_identities) || '/' ||
    (SELECT md5(string_agg(client_id || secret_mac::text, ',' ORDER BY client_id)) FROM oauth_clients WHERE secret_mac IS NOT NULL)`);
  const before = snapshot();
  const evil = ["x' OR '1'='1", "'; DROP TABLE leases; --", 'x" OR ""="', "\\'; SELECT pg_sleep(5); --", '$1', "%27%3B--"];
  const grants = {
    authorization_code: { client_id: 'wic', code: 'c', code_verifier: 'v'.repeat(43), redirect_uri: REDIRECT },
    refresh_token: { client_id: 'wic', refresh_token: 'r' },
    client_credentials: { client_id: 'svc', client_secret: svcSecret, scope: 'ims.lease' },
    'urn:ietf:params:oauth:grant-type:token-exchange': { client_id: 'svc', client_secret: svcSecret,
      subject_token: 's'.repeat(20), subject_token_type: 'urn:webrtc-ims:params:oauth:token-type:anonymous-session' },
  };
  let n = 0;
  for (const [grant, params] of Object.entries(grants)) {
    for (const field of ['grant_type', ...Object.keys(params)]) {
      for (const v of evil) {
        const body = new URLSearchParams({ grant_type: grant, ...params, [field]: v });
        const r = await fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': form }, body });
        const j = await r.json();
        assert.ok(r.status >= 400 && r.status < 500, `${grant} ${field}=${v}: ${r.status} ${JSON.stringify(j)}`);
        assert.match(j.error, /^(invalid_request|invalid_client|invalid_grant|invalid_scope|unauthorized_client|unsupported_grant_type|invalid_target)$/);
        n++;
      }
    }
  }
  for (const field of ['response_type', 'client_id', 'redirect_uri', 'scope', 'code_challenge', 'code_challenge_method']) {
    for (const v of evil) {
      const q = new URLSearchParams({ response_type: 'code', client_id: 'wic', redirect_uri: REDIRECT, scope: 'ims',
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', [field]: v });
      const r = await fetch(`${base}/authorize?${q}`, { redirect: 'manual' });
      assert.ok(r.status === 400 || (r.status === 303 && /[?&]error=/.test(r.headers.get('location'))),
        `authorize ${field}=${v}: ${r.status} ${r.headers.get('location')}`);
      n++;
    }
  }
  for (const path of ['/introspect', '/revoke']) {
    for (const v of evil) {
      const r = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': form },
        body: new URLSearchParams({ client_id: 'svc', client_secret: svcSecret, token: v }) });
      assert.equal(r.status, 200);
      if (path === '/introspect') assert.deepEqual(await r.json(), { active: false });
      n++;
    }
  }
  assert.equal(n, 150, "every field of every grant was tried");
  assert.equal(snapshot(), before, 'nothing was written');
});
