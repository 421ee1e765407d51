// Black-box tests of waf-server's IMS tokens, run by tests/waf/test-waf.sh against a real
// server process: token exchange (RFC 8693) with portal assertions and private_key_jwt
// client authentication (RFC 7523), the anonymous pooled profile, revocation releasing a
// pooled identity, and the lease API of the eP-CSCF. Tokens are verified with jose and with
// libimsauth (imsauth-verify).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRemoteJWKSet, jwtVerify, importJWK, SignJWT } from 'jose';

const base = process.env.WAF_URL;
const svcSecret = process.env.SVC_SECRET;
const dbUrl = process.env.DATABASE_URL;
const keysDir = process.env.KEYS_DIR;
const form = 'application/x-www-form-urlencoded';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ANON_TYPE = 'urn:webrtc-ims:params:oauth:token-type:anonymous-session';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const jwks = createRemoteJWKSet(new URL(`${base}/jwks.json`));
const basic = (id, secret) =>
  'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');

const sql = (q) => execFileSync('psql', [dbUrl, '-Atqc', q], { encoding: 'utf8' }).trim();
const key = async (name) => importJWK(JSON.parse(readFileSync(`${keysDir}/${name}.jwk`, 'utf8')), 'ES256');
let seq = 0;
const jti = () => `t${Date.now()}-${++seq}`;

// A JWT signed by a portal's key; claims override the defaults.
async function signed(keyName, claims, { kid = `${keyName}-1`, alg = 'ES256', life = 120 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = { iat: now, exp: now + life, jti: jti(), ...claims };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return new SignJWT(body).setProtectedHeader({ alg, kid }).sign(await key(keyName));
}
const clientAssertion = (client, keyName = client, claims = {}) =>
  signed(keyName, { iss: client, sub: client, aud: `${base}/token`, ...claims });
const subjectAssertion = (client, sub, keyName = client, claims = {}, opts = {}) =>
  signed(keyName, { iss: client, sub, aud: base, ...claims }, opts);

async function post(path, params, headers = {}) {
  const r = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': form, ...headers },
    body: new URLSearchParams(params).toString(),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = { raw: text }; }
  return { status: r.status, headers: r.headers, json };
}

// A token exchange by client (authenticated with private_key_jwt unless auth is given).
async function exchange(client, subjectToken, subjectType = JWT_TYPE, extra = {}, auth) {
  const params = { grant_type: EXCHANGE, subject_token: subjectToken, subject_token_type: subjectType, ...extra };
  if (auth === undefined) {
    params.client_assertion_type = ASSERTION_TYPE;
    params.client_assertion = await clientAssertion(client);
  } else Object.assign(params, auth);
  return post('/token', params);
}

function oauthError(res, status, error, re) {
  assert.equal(res.status, status, JSON.stringify(res.json));
  assert.equal(res.json.error, error, JSON.stringify(res.json));
  assert.equal(typeof res.json.error_description, 'string');
  if (re) assert.match(res.json.error_description, re);
}

function imsauthVerify(token, impu) {
  const jwksFile = `${keysDir}/waf-jwks.json`;
  execFileSync('curl', ['-fsS', '-o', jwksFile, `${base}/jwks.json`]);
  const r = spawnSync(process.env.IMSAUTH_VERIFY, ['--jwks', jwksFile, '--issuer', base,
    '--audience', 'epcscf.home1.net', '--realm', 'home1.net', '--impu', impu],
  { input: `Bearer ${token}`, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

const leasesOpen = () => Number(sql("SELECT count(*) FROM leases WHERE released_at IS NULL"));
const counts = () => sql(`SELECT (SELECT count(*) FROM leases) || '/' || (SELECT count(*) FROM web_identities)
  || '/' || (SELECT count(*) FROM revoked_tokens)`);

test('metadata announces token exchange and private_key_jwt', async () => {
  const m = await (await fetch(`${base}/.well-known/oauth-authorization-server`)).json();
  assert.ok(m.grant_types_supported.includes(EXCHANGE));
  for (const e of ['token', 'introspection', 'revocation']) {
    assert.ok(m[`${e}_endpoint_auth_methods_supported`].includes('private_key_jwt'));
    assert.ok(m[`${e}_endpoint_auth_signing_alg_values_supported`].includes('ES256'));
  }
});

test('a portal exchanges an assertion for the mapped IMS identity (WWS-03)', async () => {
  const res = await exchange('portal', await subjectAssertion('portal', 'alice'));
  assert.equal(res.status, 200, JSON.stringify(res.json));
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.equal(res.json.token_type, 'Bearer');
  assert.equal(res.json.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token');
  assert.equal(res.json.scope, 'ims');
  assert.equal(res.json.impi, 'alice@home1.net');
  assert.equal(res.json.impu, 'sip:alice@home1.net');
  assert.equal(res.json.epcscf_wss_url, 'wss://epcscf.home1.net:7443/ws');
  assert.equal(res.json.pool_lease, undefined);
  assert.equal(res.json.refresh_token, undefined);
  const { payload, protectedHeader } = await jwtVerify(res.json.access_token, jwks, {
    issuer: base, audience: 'epcscf.home1.net', typ: 'at+jwt', algorithms: ['ES256'],
  });
  assert.equal(protectedHeader.typ, 'at+jwt');
  assert.equal(payload.impi, 'alice@home1.net');
  assert.deepEqual(payload.impu, ['sip:alice@home1.net', 'tel:+15551234'], 'default first, barred left out');
  assert.equal(payload.client_id, 'portal');
  assert.equal(payload.scope, 'ims');
  assert.equal(payload.wwsf, 'https://wwsf.home1.net');
  assert.match(payload.sub, /^u\d+$/);
  assert.equal(payload.pool_lease, undefined);
  assert.equal(payload.exp - payload.iat, 600);
  // The P-CSCF's library accepts it for the granted IMPUs and no other.
  const ok = imsauthVerify(res.json.access_token, 'sip:alice@home1.net');
  assert.equal(ok.status, 0, ok.out);
  assert.equal(imsauthVerify(res.json.access_token, 'tel:+15551234').status, 0);
  const barred = imsauthVerify(res.json.access_token, 'sip:alice-old@home1.net');
  assert.equal(barred.status, 1, barred.out);
  assert.match(barred.out, /identity_not_granted/);
  // Introspection shows the IMS claims.
  const intro = await post('/introspect', { token: res.json.access_token }, { authorization: basic('svc', svcSecret) });
  assert.equal(intro.json.active, true);
  assert.equal(intro.json.impi, 'alice@home1.net');
});

test('client_secret_basic works for token exchange too; scopes are checked', async () => {
  const a = await subjectAssertion('portal', 'alice');
  const r = await exchange('portal', a, JWT_TYPE, { scope: 'openid ims' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.scope, 'openid ims');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice'), JWT_TYPE, { scope: 'openid' }),
    400, 'invalid_scope');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice'), JWT_TYPE, { scope: 'ims admin' }),
    400, 'invalid_scope');
});

test('assertions are accepted once, signed by the portal, fresh, for this WAF', async () => {
  const before = counts();
  const a = await subjectAssertion('portal', 'alice');
  assert.equal((await exchange('portal', a)).status, 200);
  oauthError(await exchange('portal', a), 400, 'invalid_grant', /used before/);
  // Another portal's key, an unknown kid, the wrong audience, expired, too long-lived,
  // not yet valid, another issuer, no jti, alg none.
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice', 'portal2', {}, { kid: 'portal-1' })),
    400, 'invalid_grant');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice', 'portal2')), 400, 'invalid_grant');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice', 'portal', { aud: 'https://elsewhere' })),
    400, 'invalid_grant', /aud/);
  const now = Math.floor(Date.now() / 1000);
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice', 'portal', { iat: now - 400, exp: now - 100 })),
    400, 'invalid_grant', /exp/);
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice', 'portal', { exp: now + 3600 })),
    400, 'invalid_grant');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice', 'portal', { nbf: now + 600 })),
    400, 'invalid_grant');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice', 'portal', { iss: 'portal2' })),
    400, 'invalid_grant');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice', 'portal', { jti: undefined })),
    400, 'invalid_grant', /jti/);
  const none = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  oauthError(await exchange('portal', `${none({ alg: 'none' })}.${none({ iss: 'portal', sub: 'alice', aud: base, exp: now + 60, jti: jti() })}.`),
    400, 'invalid_grant');
  oauthError(await exchange('portal', 'not-a-jwt'), 400, 'invalid_grant');
  // A disabled user, and an unmapped user of a portal without a pool.
  oauthError(await exchange('portal', await subjectAssertion('portal', 'mallory')), 400, 'invalid_grant', /disabled/);
  oauthError(await exchange('portal2', await subjectAssertion('portal2', 'alice')), 400, 'invalid_grant', /no IMS identity/);
  assert.equal(counts(), before, 'failed exchanges write no lease, identity or revocation');
});

test('private_key_jwt client authentication errors', async () => {
  const sub = await subjectAssertion('portal', 'alice');
  const ca = await clientAssertion('portal');
  const ok = await exchange('portal', sub, JWT_TYPE, {}, { client_assertion_type: ASSERTION_TYPE, client_assertion: ca });
  assert.equal(ok.status, 200, JSON.stringify(ok.json));
  // Replayed, signed by another client's key, sub != iss, wrong type, two methods at once.
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice'), JWT_TYPE, {},
    { client_assertion_type: ASSERTION_TYPE, client_assertion: ca }), 401, 'invalid_client', /used before/);
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice'), JWT_TYPE, {},
    { client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion('portal', 'portal2', { }) }),
  401, 'invalid_client');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice'), JWT_TYPE, {},
    { client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion('portal', 'portal', { sub: 'alice' }) }),
  401, 'invalid_client');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice'), JWT_TYPE, {},
    { client_assertion_type: 'urn:x', client_assertion: await clientAssertion('portal') }), 401, 'invalid_client');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice'), JWT_TYPE, {},
    { client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion('portal'), client_secret: 'x', client_id: 'portal' }),
  400, 'invalid_request');
  oauthError(await exchange('portal', await subjectAssertion('portal', 'alice'), JWT_TYPE, {},
    { client_assertion: await clientAssertion('portal') }), 400, 'invalid_request');
  // A client without keys cannot use private_key_jwt.
  oauthError(await post('/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE,
    client_assertion: await clientAssertion('svc', 'portal') }), 401, 'invalid_client');
});

test('token exchange request errors (RFC 8693 2.2.2, RFC 6749 5.2)', async () => {
  const before = counts();
  const sub = () => subjectAssertion('portal', 'alice');
  oauthError(await exchange('portal', await sub(), JWT_TYPE, { code: 'x' }), 400, 'invalid_request', /code/);
  oauthError(await exchange('portal', await sub(), JWT_TYPE, { actor_token: 'x' }), 400, 'invalid_request');
  oauthError(await exchange('portal', await sub(), JWT_TYPE, { requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }),
    400, 'invalid_request');
  oauthError(await exchange('portal', await sub(), JWT_TYPE, { audience: 'other.home1.net' }), 400, 'invalid_target');
  oauthError(await exchange('portal', await sub(), 'urn:ietf:params:oauth:token-type:saml2'), 400, 'invalid_request');
  const p = { grant_type: EXCHANGE, subject_token_type: JWT_TYPE, client_assertion_type: ASSERTION_TYPE,
    client_assertion: await clientAssertion('portal') };
  oauthError(await post('/token', p), 400, 'invalid_request', /subject_token/);
  // A client not registered for token exchange.
  oauthError(await exchange('svc', await sub(), JWT_TYPE, {}, { client_id: 'svc', client_secret: svcSecret }),
    400, 'unauthorized_client');
  // SQL metacharacters in the user and session ids are data, nothing more.
  oauthError(await exchange('portal2', await subjectAssertion('portal2', "x' OR '1'='1'; DROP TABLE leases; --")),
    400, 'invalid_grant');
  oauthError(await exchange('portal', "s'; DELETE FROM leases; --xxxxxxx", ANON_TYPE), 400, 'invalid_request');
  oauthError(await exchange('portal2', 'session-0123456789abcdef', ANON_TYPE), 400, 'unauthorized_client');
  assert.equal(counts(), before);
});

test('pooled identities: leasing, stickiness, exhaustion, revocation releases (WWS-04..06, WAF-09)', async () => {
  assert.equal(leasesOpen(), 0);
  // An unmapped user of a portal with a pool gets a temporary identity; again the same one.
  const b1 = await exchange('portal', await subjectAssertion('portal', 'bob'));
  assert.equal(b1.status, 200, JSON.stringify(b1.json));
  assert.match(b1.json.impu, /^sip:anon-[123]@home1\.net$/);
  assert.match(b1.json.impi, /^anon-[123]@home1\.net$/);
  assert.match(b1.json.pool_lease, /^[0-9a-f-]{36}$/);
  const { payload } = await jwtVerify(b1.json.access_token, jwks, { issuer: base, audience: 'epcscf.home1.net' });
  assert.deepEqual(payload.impu, [b1.json.impu]);
  assert.equal(payload.pool_lease, b1.json.pool_lease);
  assert.equal(payload.sub, `lease:${b1.json.pool_lease}`);
  assert.equal(imsauthVerify(b1.json.access_token, b1.json.impu).status, 0);
  const b2 = await exchange('portal', await subjectAssertion('portal', 'bob'));
  assert.equal(b2.json.impu, b1.json.impu, 'the same user keeps its identity while the lease lives');
  assert.equal(b2.json.pool_lease, b1.json.pool_lease);
  // Anonymous sessions: two more identities, all distinct; the pool (3) is then empty.
  const s1 = await exchange('portal', 'session-aaaaaaaaaaaaaaaa', ANON_TYPE);
  const s2 = await exchange('portal', 'session-bbbbbbbbbbbbbbbb', ANON_TYPE);
  assert.equal(s1.status, 200, JSON.stringify(s1.json));
  assert.equal(s2.status, 200, JSON.stringify(s2.json));
  assert.equal(new Set([b1.json.impu, s1.json.impu, s2.json.impu]).size, 3);
  assert.equal(leasesOpen(), 3);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^waf_pool_identities\{pool="anon",state="leased"\} 3$/m);
  assert.match(metrics, /^waf_pool_identities\{pool="anon",state="free"\} 0$/m);
  const before = counts();
  const s3 = await exchange('portal', 'session-cccccccccccccccc', ANON_TYPE);
  oauthError(s3, 503, 'temporarily_unavailable');
  assert.match(s3.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
  assert.equal(s3.json.access_token, undefined);
  assert.equal(counts(), before, 'exhaustion writes nothing');
  // Revoking a pooled token gives its identity back; the next session gets it.
  const rv = await post('/revoke', { token: s1.json.access_token, client_assertion_type: ASSERTION_TYPE,
    client_assertion: await clientAssertion('portal') });
  assert.equal(rv.status, 200, JSON.stringify(rv.json));
  assert.equal(sql(`SELECT release_reason FROM leases WHERE id = '${s1.json.pool_lease}'`), 'revoked');
  const s4 = await exchange('portal', 'session-cccccccccccccccc', ANON_TYPE);
  assert.equal(s4.status, 200, JSON.stringify(s4.json));
  assert.equal(s4.json.impu, s1.json.impu);
  globalThis.lease = s4.json.pool_lease;
  globalThis.others = [b1.json.pool_lease, s2.json.pool_lease];
});

test('lease API for the eP-CSCF: renew and release with scope ims.lease', async () => {
  const id = globalThis.lease;
  const ep = { authorization: basic('epcscf', svcSecret) };
  const r1 = await post(`/leases/${id}/renew`, { ttl: '120' }, ep);
  assert.equal(r1.status, 200, JSON.stringify(r1.json));
  assert.equal(r1.json.lease_id, id);
  assert.ok(r1.json.expires_in > 100 && r1.json.expires_in <= 120, JSON.stringify(r1.json));
  assert.match(r1.json.impu, /^sip:anon-/);
  const r0 = await post(`/leases/${id}/renew`, {}, ep);
  assert.ok(r0.json.expires_in > 3000, 'default: the pool lease_ttl');
  oauthError(await post(`/leases/${id}/renew`, { ttl: '0' }, ep), 400, 'invalid_request');
  oauthError(await post(`/leases/${id}/renew`, { ttl: '1e3' }, ep), 400, 'invalid_request');
  oauthError(await post(`/leases/${id}/release`, { reason: "x'; --" }, ep), 400, 'invalid_request');
  // Only clients allowed ims.lease; always authenticated.
  const portalAuth = { client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion('portal') };
  oauthError(await post(`/leases/${id}/renew`, portalAuth), 403, 'insufficient_scope');
  oauthError(await post(`/leases/${id}/renew`, {}), 401, 'invalid_client');
  const rel = await post(`/leases/${id}/release`, {}, ep);
  assert.equal(rel.status, 200, JSON.stringify(rel.json));
  assert.equal(sql(`SELECT release_reason FROM leases WHERE id = '${id}'`), 'registration_ended');
  oauthError(await post(`/leases/${id}/release`, {}, ep), 409, 'lease_ended');
  oauthError(await post(`/leases/${id}/renew`, {}, ep), 409, 'lease_ended');
  oauthError(await post('/leases/00000000-0000-4000-8000-000000000000/renew', {}, ep), 404, 'invalid_lease');
  oauthError(await post("/leases/x'OR'1'='1/renew", {}, ep), 404, 'invalid_lease');
  const nf = await fetch(`${base}/leases/${id}/other`, { method: 'POST', headers: { 'content-type': form, ...ep }, body: '' });
  assert.equal(nf.status, 404);
  for (const other of globalThis.others)
    assert.equal((await post(`/leases/${other}/release`, { reason: 'test_cleanup' }, ep)).status, 200);
  assert.equal(leasesOpen(), 0);
});
