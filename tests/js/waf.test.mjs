// Black-box tests of waf-server's metadata, JWKS and client_credentials grant, run by
// tests/waf/test-waf.sh against a real server process. Tokens are verified with jose
// against the published JWKS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, jwtVerify, decodeProtectedHeader } from 'jose';

const base = process.env.WAF_URL;
const adminSecret = process.env.ADMIN_SECRET;
const svcSecret = process.env.SVC_SECRET;
const basic = (id, secret) =>
  'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
const form = 'application/x-www-form-urlencoded';

async function token(body, headers = {}) {
  const r = await fetch(`${base}/token`, {
    method: 'POST',
    headers: { 'content-type': form, ...headers },
    body,
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = { raw: text }; }
  return { status: r.status, headers: r.headers, json };
}

async function oauthError(res, status, error) {
  assert.equal(res.status, status, JSON.stringify(res.json));
  assert.equal(res.json.error, error, JSON.stringify(res.json));
  assert.equal(typeof res.json.error_description, 'string');
  assert.equal(res.headers.get('cache-control'), 'no-store');
}

test('RFC 8414 metadata names this issuer and its endpoints', async () => {
  const r = await fetch(`${base}/.well-known/oauth-authorization-server`);
  assert.equal(r.status, 200);
  const m = await r.json();
  assert.equal(m.issuer, base);
  assert.equal(m.token_endpoint, `${base}/token`);
  assert.equal(m.jwks_uri, `${base}/jwks.json`);
  assert.ok(m.grant_types_supported.includes('client_credentials'));
  assert.deepEqual(m.token_endpoint_auth_methods_supported.sort(),
    ['client_secret_basic', 'client_secret_post', 'none', 'private_key_jwt']);
});

test('JWKS publishes public EC keys only, with caching', async () => {
  const r = await fetch(`${base}/jwks.json`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('cache-control'), /max-age=\d+/);
  const { keys } = await r.json();
  assert.ok(keys.length >= 1);
  for (const k of keys) {
    assert.equal(k.kty, 'EC');
    assert.equal(k.crv, 'P-256');
    assert.equal(k.alg, 'ES256');
    assert.equal(k.use, 'sig');
    assert.equal(k.d, undefined, 'no private member');
    assert.match(k.kid, /^[A-Za-z0-9_-]{43}$/);
  }
});

test('client_credentials with client_secret_basic gives an RFC 9068 at+jwt', async () => {
  const res = await token('grant_type=client_credentials', { authorization: basic('admin', adminSecret) });
  assert.equal(res.status, 200, JSON.stringify(res.json));
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.equal(res.json.token_type, 'Bearer');
  assert.equal(res.json.expires_in, 600);
  assert.equal(res.json.scope, 'admin');
  const jwks = createRemoteJWKSet(new URL(`${base}/jwks.json`));
  const { payload, protectedHeader } = await jwtVerify(res.json.access_token, jwks, {
    issuer: base, audience: base, typ: 'at+jwt', algorithms: ['ES256'],
  });
  assert.equal(protectedHeader.typ, 'at+jwt');
  assert.equal(protectedHeader.alg, 'ES256');
  assert.equal(payload.sub, 'admin');
  assert.equal(payload.client_id, 'admin');
  assert.equal(payload.scope, 'admin');
  assert.equal(payload.exp - payload.iat, 600);
  assert.match(payload.jti, /^[A-Za-z0-9_-]{22}$/);
  const again = await token('grant_type=client_credentials', { authorization: basic('admin', adminSecret) });
  assert.notEqual(decodeProtectedHeader(again.json.access_token).kid, undefined);
  const p2 = (await jwtVerify(again.json.access_token, jwks, { issuer: base })).payload;
  assert.notEqual(p2.jti, payload.jti, 'a fresh jti per token');
});

test('client_secret_post, a requested subset of scopes, and the client audience', async () => {
  const res = await token(`grant_type=client_credentials&scope=ims.lease&client_id=svc&client_secret=${encodeURIComponent(svcSecret)}`);
  assert.equal(res.status, 200, JSON.stringify(res.json));
  assert.equal(res.json.scope, 'ims.lease');
  const jwks = createRemoteJWKSet(new URL(`${base}/jwks.json`));
  const { payload } = await jwtVerify(res.json.access_token, jwks, { issuer: base, audience: 'epcscf.home1.net' });
  assert.equal(payload.scope, 'ims.lease');
  const all = await token('grant_type=client_credentials', { authorization: basic('svc', svcSecret) });
  assert.equal(all.json.scope, 'ims.lease metrics', 'no scope: every registered scope');
});

test('client authentication errors (RFC 6749 5.2)', async () => {
  const wrong = await token('grant_type=client_credentials', { authorization: basic('admin', adminSecret + 'x') });
  await oauthError(wrong, 401, 'invalid_client');
  assert.match(wrong.headers.get('www-authenticate'), /^Basic/);
  await oauthError(await token('grant_type=client_credentials', { authorization: basic('nobody', 'x') }), 401, 'invalid_client');
  await oauthError(await token('grant_type=client_credentials'), 401, 'invalid_client');
  await oauthError(await token('grant_type=client_credentials', { authorization: 'Basic !!!' }), 401, 'invalid_client');
  await oauthError(await token(`grant_type=client_credentials&client_secret=${encodeURIComponent(adminSecret)}`,
    { authorization: basic('admin', adminSecret) }), 400, 'invalid_request');
  await oauthError(await token('grant_type=client_credentials&client_id=svc', { authorization: basic('admin', adminSecret) }),
    400, 'invalid_request');
  // A public client has no secret to authenticate with.
  await oauthError(await token('grant_type=client_credentials&client_id=wic&client_secret=x'), 401, 'invalid_client');
  // SQL metacharacters are just a client_id that does not exist.
  await oauthError(await token('grant_type=client_credentials', { authorization: basic("x'; DROP TABLE oauth_clients; --", 'y') }),
    401, 'invalid_client');
});

test('request errors (RFC 6749 5.2, 3.2)', async () => {
  const auth = { authorization: basic('admin', adminSecret) };
  await oauthError(await token('grant_type=client_credentials&grant_type=client_credentials', auth), 400, 'invalid_request');
  await oauthError(await token('scope=admin', auth), 400, 'invalid_request');
  await oauthError(await token('grant_type=', auth), 400, 'invalid_request');
  await oauthError(await token('grant_type=password&username=a&password=b', auth), 400, 'unsupported_grant_type');
  await oauthError(await token('grant_type=client_credentials&code=abc', auth), 400, 'invalid_request');
  await oauthError(await token('grant_type=client_credentials&scope=ims', auth), 400, 'invalid_scope');
  await oauthError(await token('grant_type=client_credentials&scope=%zz', auth), 400, 'invalid_request');
  const svc = { authorization: basic('svc', svcSecret) };
  await oauthError(await token('grant_type=client_credentials&scope=admin', svc), 400, 'invalid_scope');
  const json = await fetch(`${base}/token`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...auth },
    body: '{"grant_type":"client_credentials"}',
  });
  assert.equal(json.status, 400);
  assert.equal((await json.json()).error, 'invalid_request');
});

test('HTTP errors: method, path, body size', async () => {
  const get = await fetch(`${base}/token`);
  assert.equal(get.status, 405);
  assert.equal(get.headers.get('allow'), 'POST');
  assert.equal((await fetch(`${base}/nope`)).status, 404);
  const big = await fetch(`${base}/token`, {
    method: 'POST', headers: { 'content-type': form },
    body: 'grant_type=client_credentials&pad=' + 'a'.repeat(70000),
  });
  assert.equal(big.status, 413);
  assert.equal(big.headers.get('content-type'), 'application/problem+json');
});

async function post(path, body, auth) {
  const r = await fetch(`${base}${path}`, {
    method: 'POST', headers: { 'content-type': form, ...(auth ? { authorization: auth } : {}) }, body,
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = { raw: text }; }
  return { status: r.status, headers: r.headers, json };
}

test('introspection (RFC 7662): active with the claims, else active:false only', async () => {
  const admin = basic('admin', adminSecret);
  const svc = basic('svc', svcSecret);
  const t = (await token('grant_type=client_credentials', { authorization: svc })).json.access_token;
  const res = await post('/introspect', `token=${t}&token_type_hint=access_token`, admin);
  assert.equal(res.status, 200, JSON.stringify(res.json));
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.equal(res.json.active, true);
  assert.equal(res.json.client_id, 'svc');
  assert.equal(res.json.scope, 'ims.lease metrics');
  assert.equal(res.json.aud, 'epcscf.home1.net');
  assert.equal(res.json.iss, base);
  assert.equal(res.json.token_type, 'Bearer');
  // Tampered, foreign and garbage tokens: {"active":false} and nothing else.
  const parts = t.split('.');
  const forged = [parts[0], Buffer.from(JSON.stringify({ iss: base, exp: 9999999999, jti: 'x' })).toString('base64url'), parts[2]].join('.');
  for (const bad of [forged, t.slice(0, -2) + (t.endsWith('AA') ? 'BB' : 'AA'), 'garbage', 'a.b.c']) {
    const r = await post('/introspect', `token=${encodeURIComponent(bad)}`, admin);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { active: false });
  }
  const anon = await post('/introspect', `token=${t}`);
  assert.equal(anon.status, 401);
  assert.equal(anon.json.error, 'invalid_client');
  const missing = await post('/introspect', 'token_type_hint=access_token', admin);
  assert.equal(missing.json.error, 'invalid_request');
});

test('revocation (RFC 7009) reaches introspection and the Redis set libimsauth reads', async () => {
  const { execFileSync } = await import('node:child_process');
  const inSet = (jti) => execFileSync('redis-cli', ['-u', process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    'SISMEMBER', process.env.REVOKED_KEY, jti]).toString().trim();
  const svc = basic('svc', svcSecret);
  const admin = basic('admin', adminSecret);
  const t = (await token('grant_type=client_credentials', { authorization: svc })).json.access_token;
  const jti = JSON.parse(Buffer.from(t.split('.')[1], 'base64url')).jti;
  assert.equal(inSet(jti), '0');
  // Only the token's client (or an admin client) may revoke it.
  const other = (await token('grant_type=client_credentials', { authorization: admin })).json.access_token;
  const refused = await post('/revoke', `token=${other}`, svc);
  assert.equal(refused.status, 400);
  assert.equal(refused.json.error, 'unauthorized_client');
  assert.equal((await post('/introspect', `token=${other}`, admin)).json.active, true);

  const t0 = Date.now();
  const r = await post('/revoke', `token=${t}&token_type_hint=access_token`, svc);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(inSet(jti), '1', 'in the Redis set when /revoke answers');
  assert.ok(Date.now() - t0 < 1000);
  assert.deepEqual((await post('/introspect', `token=${t}`, admin)).json, { active: false });
  // Again, and unknown tokens: 200 as RFC 7009 2.2 asks.
  assert.equal((await post('/revoke', `token=${t}`, svc)).status, 200);
  assert.equal((await post('/revoke', 'token=nonsense', svc)).status, 200);
  assert.equal((await post('/revoke', `token=${t}`)).status, 401);
  // An admin client may revoke any token.
  assert.equal((await post('/revoke', `token=${other}`, admin)).status, 200);
  assert.deepEqual((await post('/introspect', `token=${other}`, admin)).json, { active: false });
});

test('readiness and Prometheus metrics', async () => {
  const ready = await fetch(`${base}/readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'ready', database: 'ok', redis: 'ok' });
  await token('grant_type=client_credentials', { authorization: basic('svc', svcSecret) });
  await fetch(`${base}/nope`);
  const r = await fetch(`${base}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await r.text();
  const count = (re) => Number((text.match(re) ?? [])[1] ?? -1);
  assert.ok(count(/waf_http_requests_total\{listener="public",method="POST",endpoint="\/token",status="200"\} (\d+)/) >= 1, text);
  assert.ok(count(/waf_http_requests_total\{listener="public",method="POST",endpoint="\/token",status="401"\} (\d+)/) >= 1, text);
  assert.ok(count(/waf_http_requests_total\{listener="public",method="",endpoint="\(none\)",status="404"\} (\d+)/) >= 1, text);
  const n = count(/waf_token_response_seconds_count (\d+)/);
  assert.ok(n >= 1);
  assert.equal(count(/waf_token_response_seconds_bucket\{le="\+Inf"\} (\d+)/), n, 'the +Inf bucket holds every response');
  assert.match(text, /# TYPE waf_token_response_seconds histogram/);
});
