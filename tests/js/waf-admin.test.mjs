// Black-box tests of waf-server's admin REST API (docs/openapi.yaml), run by
// tests/waf/test-waf-admin.sh against two real server processes of one deployment (A and
// B) on a private database. Tokens are verified with jose against the published JWKS.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { appendFileSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import {
  createRemoteJWKSet, jwtVerify, decodeProtectedHeader, generateKeyPair, exportJWK,
} from 'jose';
import YAML from 'yaml';

const PUB = process.env.WAF_URL;
const ADM = process.env.ADMIN_URL;
const PUB_B = process.env.WAF_URL_B;
const ADM_B = process.env.ADMIN_URL_B;
const ADMIN_SECRET = process.env.ADMIN_SECRET;
const DB = process.env.DATABASE_URL;
const IMSPOOL = process.env.IMSPOOL;
const MAX_BODY = Number(process.env.MAX_BODY ?? 65536);

const basic = (id, secret) =>
  'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
/** Secrets the server handed out: the script checks that none reaches a log. */
const remember = (s) => appendFileSync(process.env.SECRETS_FILE, `${s}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function tokenFor(id, secret, base = PUB) {
  const r = await fetch(`${base}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(id, secret) },
    body: 'grant_type=client_credentials',
  });
  const j = await r.json();
  return { status: r.status, token: j.access_token, json: j };
}

let T; // an admin access token
before(async () => {
  remember(ADMIN_SECRET);
  const t = await tokenFor('admin', ADMIN_SECRET);
  assert.equal(t.status, 200, JSON.stringify(t.json));
  T = t.token;
});

/** One admin API call; body is sent as JSON unless raw is given. */
async function api(method, path, { body, raw, type, token = T, headers = {}, base = ADM } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  let payload;
  if (raw !== undefined) {
    payload = raw;
    if (type !== null) h['content-type'] = type ?? 'application/json';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    h['content-type'] = type ?? 'application/json';
  }
  const r = await fetch(base + path, { method, headers: h, body: payload });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, json, text };
}

/** An RFC 9457 problem of this status (and type, and an error naming field). */
function problem(res, status, { type, field } = {}) {
  assert.equal(res.status, status, res.text);
  assert.equal(res.headers.get('content-type'), 'application/problem+json', res.text);
  assert.equal(res.json.status, status);
  assert.equal(typeof res.json.type, 'string');
  assert.equal(typeof res.json.title, 'string');
  // The HTTP layer's own problems (404, 405, 413 before routing) carry no detail.
  if (res.json.type !== 'about:blank' || res.json.detail !== undefined) {
    assert.equal(typeof res.json.detail, 'string', res.text);
  }
  if (type) assert.equal(res.json.type, type, res.text);
  if (field) {
    assert.ok(Array.isArray(res.json.errors) && res.json.errors.some((e) => e.field === field),
      `no error on ${field}: ${res.text}`);
  }
}
const VALIDATION = 'urn:ims-waf:problem:validation';
const CONFLICT = 'urn:ims-waf:problem:conflict';
const NOT_FOUND = 'urn:ims-waf:problem:not-found';
const INVALID_JSON = 'urn:ims-waf:problem:invalid-json';

const psql = (sql) => execFileSync('psql', [DB, '-Atc', sql]).toString().trim();
const TABLES = ['web_identities', 'password_credentials', 'ims_subscriptions', 'impus',
  'identity_mappings', 'oauth_clients', 'pools', 'pool_members', 'leases', 'signing_keys',
  'revoked_tokens', 'audit_log'];
/** A digest of every row of the tables, to show that a request wrote nothing. */
const snapshot = (tables = TABLES) => psql(`SELECT string_agg(s, ' ' ORDER BY s) FROM (${tables.map((t) =>
  `SELECT '${t}:' || count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM ${t} x`)
  .join(' UNION ALL ')}) q(s)`);

async function lastAudit(action) {
  const r = await api('GET', `/admin/v1/audit?action=${encodeURIComponent(action)}&limit=1`);
  assert.equal(r.status, 200, r.text);
  return r.json.items[0];
}

test('authentication: bearer tokens with scope admin only, as problem+json', async () => {
  const none = await api('GET', '/admin/v1/clients', { token: null });
  problem(none, 401, { type: 'urn:ims-waf:problem:invalid-token' });
  assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="waf-admin"');
  assert.equal(none.headers.get('cache-control'), 'no-store');
  assert.match(none.headers.get('x-request-id'), /^[A-Za-z0-9_-]+$/);
  const basicAuth = await api('GET', '/admin/v1/clients', { token: null, headers: { authorization: basic('admin', ADMIN_SECRET) } });
  problem(basicAuth, 401);
  for (const bad of ['garbage', 'a.b.c', T.slice(0, -3) + 'AAA', 'x y', T + '.x']) {
    const r = await api('GET', '/admin/v1/clients', { token: bad });
    problem(r, 401, { type: 'urn:ims-waf:problem:invalid-token' });
    assert.match(r.headers.get('www-authenticate'), /error="invalid_token"/);
  }
  // A token of a client without the admin scope: 403 insufficient_scope.
  const c = await api('POST', '/admin/v1/clients', {
    body: { client_id: 'svc-noadmin', name: 'svc', grant_types: ['client_credentials'], scopes: ['ims.lease'], audience: PUB },
  });
  assert.equal(c.status, 201, c.text);
  remember(c.json.client_secret);
  const svc = await tokenFor('svc-noadmin', c.json.client_secret);
  assert.equal(svc.status, 200);
  const r403 = await api('GET', '/admin/v1/clients', { token: svc.token });
  problem(r403, 403, { type: 'urn:ims-waf:problem:insufficient-scope' });
  assert.match(r403.headers.get('www-authenticate'), /error="insufficient_scope"/);
  // A revoked admin token stops working at once; the request id is echoed.
  const t2 = (await tokenFor('admin', ADMIN_SECRET)).token;
  assert.equal((await api('GET', '/admin/v1/keys', { token: t2 })).status, 200);
  const rv = await fetch(`${PUB}/revoke`, {
    method: 'POST', body: `token=${t2}`,
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('admin', ADMIN_SECRET) },
  });
  assert.equal(rv.status, 200);
  const revoked = await api('GET', '/admin/v1/keys', { token: t2, headers: { 'x-request-id': 'trace-42' } });
  problem(revoked, 401);
  assert.equal(revoked.json.request_id, 'trace-42');
  assert.match(revoked.json.detail, /revoked/);
  assert.equal((await api('DELETE', '/admin/v1/clients/svc-noadmin')).status, 204);
});

test('OAuth clients: create with a server-made secret shown once, read, list, update, rotate, delete', async () => {
  const body = {
    client_id: 'svc-a', name: 'Service A', grant_types: ['client_credentials'],
    scopes: ['ims.lease', 'metrics'], audience: 'epcscf.home1.net', token_lifetime_s: 300,
  };
  const c = await api('POST', '/admin/v1/clients', { body });
  assert.equal(c.status, 201, c.text);
  assert.equal(c.headers.get('location'), '/admin/v1/clients/svc-a');
  assert.equal(c.headers.get('cache-control'), 'no-store');
  assert.match(c.json.client_secret, /^[A-Za-z0-9_-]{43}$/, '256 bits, base64url');
  remember(c.json.client_secret);
  assert.equal(c.json.client_type, 'confidential');
  assert.equal(c.json.token_endpoint_auth_method, 'client_secret_basic');
  assert.deepEqual(c.json.redirect_uris, []);
  assert.equal(c.json.status, 'active');
  const mac = psql("SELECT encode(secret_mac, 'hex') FROM oauth_clients WHERE client_id = 'svc-a'");
  assert.match(mac, /^[0-9a-f]{64}$/, 'stored as a 32-byte HMAC');
  assert.equal(psql("SELECT count(*) FROM oauth_clients WHERE secret_hash IS NOT NULL AND client_id = 'svc-a'"), '0');
  const tok = await tokenFor('svc-a', c.json.client_secret);
  assert.equal(tok.status, 200, JSON.stringify(tok.json));
  assert.equal(tok.json.expires_in, 300);

  const got = await api('GET', '/admin/v1/clients/svc-a');
  assert.equal(got.status, 200);
  assert.equal(got.json.client_secret, undefined, 'a secret is answered once only');
  assert.equal(got.json.name, 'Service A');
  assert.equal((await api('POST', '/admin/v1/clients', { body })).status, 409);
  problem(await api('POST', '/admin/v1/clients', { body }), 409, { type: CONFLICT, field: 'client_id' });

  // Pagination by client_id: admin, svc-a, svc-b.
  const b = await api('POST', '/admin/v1/clients', { body: { ...body, client_id: 'svc-b', name: 'Service B' } });
  remember(b.json.client_secret);
  const p1 = await api('GET', '/admin/v1/clients?limit=2');
  assert.deepEqual(p1.json.items.map((i) => i.client_id), ['admin', 'svc-a']);
  assert.equal(typeof p1.json.next_cursor, 'string');
  const p2 = await api('GET', `/admin/v1/clients?limit=2&cursor=${p1.json.next_cursor}`);
  assert.deepEqual(p2.json.items.map((i) => i.client_id), ['svc-b']);
  assert.equal(p2.json.next_cursor, null);
  const q = await api('GET', '/admin/v1/clients?q=SERVICE%20a');
  assert.deepEqual(q.json.items.map((i) => i.client_id), ['svc-a']);

  // Merge-patch: given members change, null clears, others stay.
  const u = await api('PATCH', '/admin/v1/clients/svc-a', {
    body: { name: 'Service A2', scopes: ['ims.lease'], token_lifetime_s: null },
    type: 'application/merge-patch+json',
  });
  assert.equal(u.status, 200, u.text);
  assert.equal(u.json.name, 'Service A2');
  assert.deepEqual(u.json.scopes, ['ims.lease']);
  assert.equal(u.json.token_lifetime_s, null);
  assert.equal(u.json.audience, 'epcscf.home1.net');
  const audit = await lastAudit('client.update');
  assert.equal(audit.actor, 'admin');
  assert.equal(audit.target_id, 'svc-a');
  assert.equal(audit.before.name, 'Service A');
  assert.equal(audit.after.name, 'Service A2');
  problem(await api('PATCH', '/admin/v1/clients/svc-a', { body: { client_id: 'x' } }), 422, { field: 'client_id' });
  problem(await api('PATCH', '/admin/v1/clients/nope', { body: { name: 'x' } }), 404, { type: NOT_FOUND });

  // Rotation: a new secret, answered once; the old one stops working (client cache <= 5 s).
  const rot = await api('POST', '/admin/v1/clients/svc-a/secret');
  assert.equal(rot.status, 200, rot.text);
  assert.notEqual(rot.json.client_secret, c.json.client_secret);
  remember(rot.json.client_secret);
  let ok = false;
  for (let i = 0; i < 30 && !ok; i++) {
    ok = (await tokenFor('svc-a', rot.json.client_secret)).status === 200;
    if (!ok) await sleep(250);
  }
  assert.ok(ok, 'the new secret works');
  assert.equal((await tokenFor('svc-a', c.json.client_secret)).status, 401, 'the old one does not');
  const ra = await lastAudit('client.secret.rotate');
  assert.deepEqual(ra.after, { client_secret: '(set)' });
  const created = await lastAudit('client.create');
  assert.equal(created.after.client_secret, '(set)');

  // A private_key_jwt client: keys, no secret; a public client: neither.
  const { publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', use: 'sig', alg: 'ES256' };
  const pk = await api('POST', '/admin/v1/clients', {
    body: {
      client_id: 'portal-x', name: 'Portal', token_endpoint_auth_method: 'private_key_jwt',
      grant_types: ['urn:ietf:params:oauth:grant-type:token-exchange'], scopes: ['ims'],
      audience: 'epcscf.home1.net', jwks: { keys: [jwk] },
    },
  });
  assert.equal(pk.status, 201, pk.text);
  assert.equal(pk.json.client_secret, undefined);
  assert.equal(pk.json.token_endpoint_auth_method, 'private_key_jwt');
  assert.deepEqual(pk.json.jwks.keys[0].x, jwk.x);
  problem(await api('POST', '/admin/v1/clients/portal-x/secret'), 409, { type: CONFLICT });
  problem(await api('PATCH', '/admin/v1/clients/portal-x', { body: { jwks: null } }), 422, { field: 'jwks' });
  const priv = { ...jwk, d: 'AAAA' };
  problem(await api('PATCH', '/admin/v1/clients/portal-x', { body: { jwks: { keys: [priv] } } }), 422, { field: 'jwks' });
  const pub = await api('POST', '/admin/v1/clients', {
    body: {
      client_id: 'wic-x', name: 'Browser', token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'], redirect_uris: ['https://wwsf.home1.net/cb', 'http://127.0.0.1:8080/cb'],
      allowed_origins: ['https://wwsf.home1.net'], scopes: ['ims'], audience: 'epcscf.home1.net',
    },
  });
  assert.equal(pub.status, 201, pub.text);
  assert.equal(pub.json.client_type, 'public');
  assert.equal(pub.json.client_secret, undefined);
  // Rules across fields.
  const base = { client_id: 'r1', name: 'R', audience: 'epcscf.home1.net' };
  problem(await api('POST', '/admin/v1/clients', { body: { ...base, token_endpoint_auth_method: 'none', grant_types: ['client_credentials'] } }), 422, { field: 'grant_types' });
  problem(await api('POST', '/admin/v1/clients', { body: { ...base, grant_types: ['authorization_code'] } }), 422, { field: 'redirect_uris' });
  problem(await api('POST', '/admin/v1/clients', { body: { ...base, token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'] } }), 422, { field: 'jwks' });
  problem(await api('POST', '/admin/v1/clients', { body: { ...base, grant_types: ['client_credentials'], scopes: ['admin'] } }), 422, { field: 'audience' });
  problem(await api('POST', '/admin/v1/clients', { body: { ...base, grant_types: ['client_credentials'], allow_pool: 'no-such-pool' } }), 422, { field: 'allow_pool' });
  problem(await api('POST', '/admin/v1/clients', { body: { ...base, grant_types: ['authorization_code'], redirect_uris: ['http://evil.example/cb'] } }), 422, { field: 'redirect_uris[0]' });

  // The last active admin client cannot be disabled, stripped of admin or deleted.
  problem(await api('PATCH', '/admin/v1/clients/admin', { body: { status: 'disabled' } }), 409, { type: CONFLICT });
  problem(await api('PATCH', '/admin/v1/clients/admin', { body: { scopes: [] } }), 409);
  problem(await api('DELETE', '/admin/v1/clients/admin'), 409);
  assert.equal(psql("SELECT status FROM oauth_clients WHERE client_id = 'admin'"), 'active');

  for (const id of ['svc-a', 'svc-b', 'portal-x', 'wic-x']) {
    const d = await api('DELETE', `/admin/v1/clients/${id}`);
    assert.equal(d.status, 204, d.text);
    assert.equal(d.text, '');
  }
  problem(await api('GET', '/admin/v1/clients/svc-a'), 404, { type: NOT_FOUND });
  problem(await api('DELETE', '/admin/v1/clients/svc-a'), 404);
  const del = await lastAudit('client.delete');
  assert.equal(del.after, null);
  assert.equal(del.before.client_id, 'wic-x');
});

const alice = () => ({
  issuer: 'local', subject: 'alice', display_name: "Alice O'Brien", password: 'correct horse battery',
  ims: {
    impi: 'alice@home1.net', realm: 'home1.net', default_impu: 'sip:alice@home1.net',
    impus: [{ uri: 'sip:alice@home1.net' }, { uri: 'tel:+4930123456', barred: true }],
  },
});

test('web identities: create with password and IMS mapping, search, paginate, update, delete', async () => {
  remember('correct horse battery');
  const c = await api('POST', '/admin/v1/identities', { body: alice() });
  assert.equal(c.status, 201, c.text);
  const id = c.json.id;
  assert.equal(c.headers.get('location'), `/admin/v1/identities/${id}`);
  assert.equal(c.json.password, undefined, 'write-only');
  assert.equal(c.json.has_password, true);
  assert.equal(c.json.username, 'alice', 'the subject by default');
  assert.deepEqual(c.json.ims, {
    impi: 'alice@home1.net', realm: 'home1.net', default_impu: 'sip:alice@home1.net',
    impus: [{ uri: 'sip:alice@home1.net', barred: false }, { uri: 'tel:+4930123456', barred: true }],
  });
  assert.match(psql(`SELECT password_hash FROM password_credentials WHERE web_identity_id = ${id}`), /^\$scrypt\$ln=\d+,r=8,p=1\$/);
  const a = await lastAudit('identity.create');
  assert.equal(a.after.password, '(set)');
  assert.equal(a.target_id, String(id));

  problem(await api('POST', '/admin/v1/identities', { body: alice() }), 409, { field: 'subject' });
  const other = { issuer: 'https://idp.example', subject: 'bob', ims: { ...alice().ims, impi: 'bob@home1.net' } };
  problem(await api('POST', '/admin/v1/identities', { body: other }), 409, { field: 'ims.impus' });
  // The same IMPU as the P-CSCF compares it (host case, URI parameters).
  other.ims.impus = [{ uri: 'sip:alice@HOME1.net;transport=tcp' }];
  other.ims.default_impu = 'sip:alice@HOME1.net;transport=tcp';
  problem(await api('POST', '/admin/v1/identities', { body: other }), 409, { field: 'ims.impus' });
  problem(await api('POST', '/admin/v1/identities', { body: { ...other, password: 'long enough pw', ims: undefined } }), 422, { field: 'password' });
  problem(await api('POST', '/admin/v1/identities', {
    body: { ...other, ims: { ...alice().ims, impi: 'bob@home1.net', default_impu: 'sip:nobody@home1.net' } },
  }), 422, { field: 'ims.default_impu' });
  problem(await api('POST', '/admin/v1/identities', {
    body: { ...other, ims: { ...alice().ims, impi: 'bob@home1.net', default_impu: 'tel:+4930123456' } },
  }), 422, { field: 'ims.default_impu' });

  // More identities for search and pagination.
  const ids = [id];
  for (const s of ['bob', 'carol', 'dave']) {
    const r = await api('POST', '/admin/v1/identities', {
      body: { issuer: 'https://idp.example', subject: s, display_name: s.toUpperCase() },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.ims, null);
    assert.equal(r.json.has_password, false);
    ids.push(r.json.id);
  }
  const seen = [];
  let cursor = null;
  do {
    const r = await api('GET', `/admin/v1/identities?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.items.length <= 3);
    seen.push(...r.json.items.map((i) => i.id));
    cursor = r.json.next_cursor;
  } while (cursor);
  assert.deepEqual(seen, ids);
  const byImpu = await api('GET', '/admin/v1/identities?q=tel%3A%2B4930123');
  assert.deepEqual(byImpu.json.items.map((i) => i.id), [id]);
  const byName = await api('GET', '/admin/v1/identities?q=CaRoL&issuer=https%3A%2F%2Fidp.example');
  assert.deepEqual(byName.json.items.map((i) => i.subject), ['carol']);
  assert.equal((await api('GET', '/admin/v1/identities?status=disabled')).json.items.length, 0);

  // Update: display name cleared, disabled, IMS mapping replaced, password changed.
  const before = psql(`SELECT password_hash FROM password_credentials WHERE web_identity_id = ${id}`);
  psql(`UPDATE password_credentials SET failed_attempts = 5, locked_until = now() + interval '1 hour' WHERE web_identity_id = ${id}`);
  remember('another long password');
  const u = await api('PATCH', `/admin/v1/identities/${id}`, {
    body: {
      display_name: null, status: 'disabled', password: 'another long password',
      ims: { impi: 'alice2@home1.net', realm: 'home1.net', impus: [{ uri: 'sip:alice2@home1.net' }], default_impu: 'sip:alice2@home1.net' },
    },
  });
  assert.equal(u.status, 200, u.text);
  assert.equal(u.json.display_name, null);
  assert.equal(u.json.status, 'disabled');
  assert.equal(u.json.locked_until, null, 'a new password ends a lockout');
  assert.equal(u.json.ims.impi, 'alice2@home1.net');
  assert.notEqual(psql(`SELECT password_hash FROM password_credentials WHERE web_identity_id = ${id}`), before);
  assert.equal(psql("SELECT count(*) FROM ims_subscriptions WHERE impi = 'alice@home1.net'"), '0', 'the old subscription is gone');
  assert.equal(psql("SELECT count(*) FROM impus WHERE uri = 'sip:alice@home1.net'"), '0');
  const ua = await lastAudit('identity.update');
  assert.equal(ua.before.ims.impi, 'alice@home1.net');
  assert.equal(ua.after.ims.impi, 'alice2@home1.net');
  assert.equal(ua.after.password, '(set)');
  problem(await api('PATCH', `/admin/v1/identities/${id}`, { body: { issuer: 'x' } }), 422, { field: 'issuer' });
  problem(await api('PATCH', `/admin/v1/identities/${ids[1]}`, { body: { password: 'long enough pw' } }), 422, { field: 'password' });
  const rm = await api('PATCH', `/admin/v1/identities/${id}`, { body: { ims: null, password: null } });
  assert.equal(rm.status, 200, rm.text);
  assert.equal(rm.json.ims, null);
  assert.equal(rm.json.has_password, false);
  assert.equal(psql("SELECT count(*) FROM ims_subscriptions WHERE impi = 'alice2@home1.net'"), '0');

  for (const i of ids) assert.equal((await api('DELETE', `/admin/v1/identities/${i}`)).status, 204);
  problem(await api('GET', `/admin/v1/identities/${id}`), 404, { type: NOT_FOUND });
  problem(await api('GET', '/admin/v1/identities/abc'), 404, { type: NOT_FOUND });
  assert.equal(psql('SELECT count(*) FROM web_identities'), '0');
});

test('pools: create, bulk add members, stats, leases, forced release, drain, update, delete', async () => {
  const p = await api('POST', '/admin/v1/pools', { body: { name: 'anon', realm: 'home1.net', lease_ttl_s: 3600, quarantine_s: 60 } });
  assert.equal(p.status, 201, p.text);
  assert.equal(p.headers.get('location'), '/admin/v1/pools/anon');
  assert.equal(p.json.max_per_holder, 1);
  assert.equal(p.json.state, 'active');
  problem(await api('POST', '/admin/v1/pools', { body: { name: 'anon', realm: 'home1.net', lease_ttl_s: 1, quarantine_s: 0 } }), 409, { field: 'name' });
  problem(await api('POST', '/admin/v1/pools', { body: { name: 'Anon', realm: 'home1.net', lease_ttl_s: 0, quarantine_s: -1 } }), 422, { field: 'lease_ttl_s' });

  const m = await api('POST', '/admin/v1/pools/anon/members', {
    body: { impu_pattern: 'sip:anon-{000..049}@home1.net', impi_pattern: 'anon-{000..049}@home1.net' },
  });
  assert.equal(m.status, 201, m.text);
  assert.equal(m.json.added, 50);
  problem(await api('POST', '/admin/v1/pools/anon/members', {
    body: { impu_pattern: 'sip:anon-{040..059}@home1.net', impi_pattern: 'x@home1.net' },
  }), 409);
  problem(await api('POST', '/admin/v1/pools/anon/members', {
    body: { impu_pattern: 'sip:anon-{5..1}@home1.net', impi_pattern: 'x@home1.net' },
  }), 422, { field: 'impu_pattern' });
  problem(await api('POST', '/admin/v1/pools/nope/members', {
    body: { impu_pattern: 'sip:n@home1.net', impi_pattern: 'n@home1.net' },
  }), 404);
  // A permanent identity cannot also be a temporary one, either way round.
  const perm = await api('POST', '/admin/v1/identities', { body: { ...alice(), password: undefined } });
  assert.equal(perm.status, 201, perm.text);
  const before = snapshot();
  problem(await api('POST', '/admin/v1/pools/anon/members', {
    body: { impu_pattern: 'sip:alice@HOME1.net;user=phone', impi_pattern: 'z@home1.net' },
  }), 409, { field: 'impu_pattern' });
  problem(await api('POST', '/admin/v1/pools/anon/members', {
    body: { impu_pattern: 'sip:z-{1..3}@home1.net', impi_pattern: 'alice@home1.net' },
  }), 409, { field: 'impi_pattern' });
  problem(await api('POST', '/admin/v1/identities', {
    body: { issuer: 'x', subject: 'y', ims: { impi: 'y@home1.net', realm: 'home1.net', impus: [{ uri: 'sip:anon-007@home1.net' }], default_impu: 'sip:anon-007@home1.net' } },
  }), 409, { field: 'ims.impus' });
  assert.equal(snapshot(), before, 'refused changes write nothing');
  assert.equal((await api('DELETE', `/admin/v1/identities/${perm.json.id}`)).status, 204);

  // Leases come from libimspool (the pooled grant does the same).
  const lease = JSON.parse(execFileSync(IMSPOOL, ['--db', DB, '--json', 'allocate', 'anon', '--holder', 'h1'])).lease;
  assert.match(lease, /^[0-9a-f-]{36}$/);
  const g = await api('GET', '/admin/v1/pools/anon');
  assert.equal(g.status, 200, g.text);
  assert.deepEqual(g.json.stats, { free: 49, leased: 1, quarantined: 0, disabled: 0 });
  assert.equal(g.json.members, 50);
  const ls = await api('GET', '/admin/v1/pools/anon/leases');
  assert.equal(ls.status, 200, ls.text);
  assert.equal(ls.json.items.length, 1);
  assert.equal(ls.json.items[0].id, lease);
  assert.equal(ls.json.items[0].holder, 'h1');
  assert.equal(ls.json.items[0].released_at, null);
  const rel = await api('POST', `/admin/v1/leases/${lease}/release`);
  assert.equal(rel.status, 200, rel.text);
  assert.equal(rel.json.release_reason, 'forced');
  assert.equal(rel.json.pool, 'anon');
  assert.equal(typeof rel.json.released_at, 'string');
  problem(await api('POST', `/admin/v1/leases/${lease}/release`), 409, { type: CONFLICT });
  problem(await api('POST', `/admin/v1/leases/${randomUUID()}/release`), 404, { type: NOT_FOUND });
  problem(await api('POST', '/admin/v1/leases/not-a-uuid/release'), 404);
  assert.equal((await api('GET', '/admin/v1/pools/anon/leases')).json.items.length, 0, 'open leases only by default');
  const all = await api('GET', '/admin/v1/pools/anon/leases?state=all&limit=10');
  assert.equal(all.json.items[0].release_reason, 'forced');
  const la = await lastAudit('lease.release');
  assert.equal(la.before.released_at, null);
  assert.equal(la.after.release_reason, 'forced');
  assert.equal((await api('GET', '/admin/v1/pools/anon')).json.stats.quarantined, 1);

  const u = await api('PATCH', '/admin/v1/pools/anon', { body: { lease_ttl_s: 600, max_per_holder: 2 } });
  assert.equal(u.status, 200, u.text);
  assert.equal(u.json.lease_ttl_s, 600);
  assert.equal(u.json.quarantine_s, 60);
  problem(await api('PATCH', '/admin/v1/pools/anon', { body: { name: 'other' } }), 422, { field: 'name' });
  const d = await api('POST', '/admin/v1/pools/anon/drain');
  assert.equal(d.status, 200, d.text);
  assert.equal(d.json.state, 'draining');
  assert.equal((await lastAudit('pool.drain')).after.state, 'draining');
  const list = await api('GET', '/admin/v1/pools');
  assert.deepEqual(list.json.items.map((i) => [i.name, i.state]), [['anon', 'draining']]);
  problem(await api('DELETE', '/admin/v1/pools/anon'), 409, { type: CONFLICT });
  const e = await api('POST', '/admin/v1/pools', { body: { name: 'empty', realm: 'home1.net', lease_ttl_s: 60, quarantine_s: 0 } });
  assert.equal(e.status, 201);
  assert.equal((await api('DELETE', '/admin/v1/pools/empty')).status, 204);
  problem(await api('GET', '/admin/v1/pools/empty'), 404, { type: NOT_FOUND });
});

test('revoked tokens and the audit log: listings with filters and cursors', async () => {
  const r = await api('GET', '/admin/v1/revoked-tokens?client_id=admin');
  assert.equal(r.status, 200, r.text);
  assert.ok(r.json.items.length >= 1, 'the token revoked in the authentication test');
  assert.equal(r.json.items[0].client_id, 'admin');
  assert.match(r.json.items[0].exp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal((await api('GET', '/admin/v1/revoked-tokens?client_id=nobody')).json.items.length, 0);
  // Walk the audit log two at a time, newest first, and compare with the table.
  const ids = [];
  let cursor = null;
  do {
    const p = await api('GET', `/admin/v1/audit?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(p.status, 200, p.text);
    ids.push(...p.json.items.map((i) => i.id));
    cursor = p.json.next_cursor;
  } while (cursor);
  assert.deepEqual(ids, psql('SELECT string_agg(id::text, \',\' ORDER BY id DESC) FROM audit_log').split(',').map(Number));
  const f = await api('GET', '/admin/v1/audit?target_type=pool&action=pool.create&since=2000-01-01T00:00:00Z');
  assert.ok(f.json.items.every((i) => i.target_type === 'pool' && i.action === 'pool.create'));
  assert.ok(f.json.items.length >= 2);
  assert.equal((await api('GET', '/admin/v1/audit?until=2000-01-01T00:00:00Z')).json.items.length, 0);
  problem(await api('GET', '/admin/v1/audit?since=yesterday'), 422, { field: 'since' });
  problem(await api('GET', '/admin/v1/audit?cursor=eA'), 422, { field: 'cursor' });
});

test('signing key rotation: published as next first, then active; old and new tokens verify on both instances', async () => {
  const tBefore = (await tokenFor('admin', ADMIN_SECRET)).token;
  const oldKid = decodeProtectedHeader(tBefore).kid;
  const rot = await api('POST', '/admin/v1/keys/rotate');
  assert.equal(rot.status, 201, rot.text);
  assert.equal(rot.json.state, 'next');
  const newKid = rot.json.kid;
  assert.notEqual(newKid, oldKid);
  assert.equal(rot.json.public_jwk.d, undefined);
  problem(await api('POST', '/admin/v1/keys/rotate'), 409, { type: CONFLICT });
  // Published at once here, within a reload (5 s) at the other instance, before it signs.
  const kids = async (base) => (await (await fetch(`${base}/jwks.json`)).json()).keys.map((k) => k.kid);
  assert.ok((await kids(PUB)).includes(newKid));
  let atB = false;
  for (let i = 0; i < 40 && !atB; i++) {
    atB = (await kids(PUB_B)).includes(newKid);
    if (!atB) await sleep(250);
  }
  assert.ok(atB, 'instance B publishes the next key');
  // Promotion after the overlap (3 s here), by whichever instance reloads first.
  let active = false;
  for (let i = 0; i < 60 && !active; i++) {
    const k = await api('GET', '/admin/v1/keys');
    active = k.json.items.some((x) => x.kid === newKid && x.state === 'active');
    if (!active) await sleep(250);
  }
  assert.ok(active, 'the next key became active');
  const keys = (await api('GET', '/admin/v1/keys')).json.items;
  const old = keys.find((x) => x.kid === oldKid);
  assert.equal(old.state, 'retired');
  assert.equal(old.published, true);
  const oldExp = JSON.parse(Buffer.from(tBefore.split('.')[1], 'base64url')).exp;
  assert.ok(Date.parse(old.publish_until) / 1000 >= oldExp + 60, 'published until its tokens expired, plus leeway');
  assert.equal(keys.filter((x) => x.state === 'active').length, 1);
  const act = await lastAudit('key.activate');
  assert.equal(act.actor, 'waf-server');
  assert.equal(act.after.active, newKid);

  // New tokens are signed with the new key (at both instances, after their reload).
  let tAfter;
  for (let i = 0; i < 40; i++) {
    tAfter = (await tokenFor('admin', ADMIN_SECRET)).token;
    if (decodeProtectedHeader(tAfter).kid === newKid) break;
    await sleep(250);
  }
  assert.equal(decodeProtectedHeader(tAfter).kid, newKid);
  let tAfterB;
  for (let i = 0; i < 40; i++) {
    tAfterB = (await tokenFor('admin', ADMIN_SECRET, PUB_B)).token;
    if (decodeProtectedHeader(tAfterB).kid === newKid) break;
    await sleep(250);
  }
  assert.equal(decodeProtectedHeader(tAfterB).kid, newKid);
  for (const base of [PUB, PUB_B]) {
    const jwks = createRemoteJWKSet(new URL(`${base}/jwks.json`));
    for (const t of [tBefore, tAfter, tAfterB]) {
      const { payload } = await jwtVerify(t, jwks, { issuer: PUB, audience: PUB, typ: 'at+jwt', algorithms: ['ES256'] });
      assert.equal(payload.client_id, 'admin');
      const r = await fetch(`${base}/introspect`, {
        method: 'POST', body: `token=${t}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('admin', ADMIN_SECRET) },
      });
      assert.equal((await r.json()).active, true, `introspection at ${base}`);
    }
    // Both keep working at the admin API of either instance.
    assert.equal((await api('GET', '/admin/v1/keys', { token: tBefore, base: base === PUB ? ADM : ADM_B })).status, 200);
    assert.equal((await api('GET', '/admin/v1/keys', { token: tAfter, base: base === PUB ? ADM : ADM_B })).status, 200);
  }
});

test('bad input: malformed JSON, media types, body size, unknown fields, query strings, paths; nothing written', async () => {
  const before = snapshot();
  const good = { client_id: 'bad-1', name: 'x', grant_types: ['client_credentials'], audience: 'a' };
  for (const raw of ['{', '{"client_id":"a"} x', '{"client_id":"a","client_id":"b"}', '{"name":"\\ud800"}',
    '{"n":NaN}', "{'client_id':'a'}", '', '{"a":1}{"b":2}']) {
    problem(await api('POST', '/admin/v1/clients', { raw }), 400, { type: INVALID_JSON });
  }
  problem(await api('POST', '/admin/v1/clients', { raw: Buffer.from([0x7b, 0x22, 0x61, 0xff, 0x22, 0x3a, 0x31, 0x7d]) }), 400, { type: INVALID_JSON });
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1',
    'application/merge-patch+json', 'application/jsonx']) {
    const r = await api('POST', '/admin/v1/clients', { raw: JSON.stringify(good), type });
    problem(r, 415);
    assert.equal(r.headers.get('accept-post'), 'application/json');
  }
  problem(await api('POST', '/admin/v1/clients', { raw: JSON.stringify(good), type: null }), 415);
  const pt = await api('PATCH', '/admin/v1/clients/admin', { raw: '{}', type: 'text/plain' });
  problem(pt, 415);
  assert.match(pt.headers.get('accept-patch'), /application\/merge-patch\+json/);
  const big = await api('POST', '/admin/v1/clients', { raw: JSON.stringify({ ...good, name: 'x'.repeat(MAX_BODY) }) });
  problem(big, 413);
  problem(await api('POST', '/admin/v1/clients', { body: [good] }), 422, { field: '(body)' });
  problem(await api('POST', '/admin/v1/clients', { body: { ...good, extra: 1 } }), 422, { type: VALIDATION, field: 'extra' });
  problem(await api('POST', '/admin/v1/clients', { body: { ...good, client_secret: 'mine' } }), 422, { field: 'client_secret' });
  problem(await api('POST', '/admin/v1/clients', { body: { name: 'x' } }), 422, { field: 'client_id' });
  problem(await api('POST', '/admin/v1/identities', { body: { issuer: 'local', subject: 'a', ims: { impi: 'a', realm: 'r', impus: [{ uri: 'sip:a@r', x: 1 }], default_impu: 'sip:a@r' } } }), 422, { field: 'ims.impus[0].x' });
  problem(await api('POST', '/admin/v1/pools/anon/drain', { body: { now: true } }), 422, { field: 'now' });
  problem(await api('POST', '/admin/v1/keys/rotate', { body: { kid: 'mine' } }), 422, { field: 'kid' });
  // fetch() sends no body with GET: a raw request does.
  const getWithBody = await new Promise((resolve, reject) => {
    const rq = request(`${ADM}/admin/v1/clients`, {
      method: 'GET',
      headers: { authorization: `Bearer ${T}`, 'content-type': 'application/json', 'content-length': '2' },
    }, (rs) => {
      let text = '';
      rs.on('data', (d) => { text += d; });
      rs.on('end', () => resolve({ status: rs.statusCode, headers: new Headers(rs.headers), json: JSON.parse(text), text }));
    });
    rq.on('error', reject);
    rq.end('{}');
  });
  problem(getWithBody, 400);
  problem(await api('GET', '/admin/v1/clients?limit=0'), 422, { field: 'limit' });
  problem(await api('GET', '/admin/v1/clients?limit=abc'), 422, { field: 'limit' });
  problem(await api('GET', '/admin/v1/clients?limit=201'), 422, { field: 'limit' });
  problem(await api('GET', '/admin/v1/clients?sort=name'), 422, { field: 'sort' });
  problem(await api('GET', '/admin/v1/clients?limit=1&limit=2'), 400);
  problem(await api('GET', '/admin/v1/clients?q=%zz'), 400);
  problem(await api('GET', '/admin/v1/clients?cursor=!!'), 422, { field: 'cursor' });
  problem(await api('GET', '/admin/v1/identities?cursor=eA'), 422, { field: 'cursor' });
  problem(await api('GET', '/admin/v1/keys?limit=1'), 422, { field: 'limit' });
  problem(await api('GET', '/admin/v1/identities/0'), 404, { type: NOT_FOUND });
  problem(await api('GET', '/admin/v1/identities/1%27%20OR%201=1'), 404, { type: NOT_FOUND });
  problem(await api('GET', '/admin/v1/identitiesX'), 404, { type: 'about:blank' });
  problem(await api('GET', '/admin/v1/identities/'), 404);
  problem(await api('GET', '/admin/v1/nope'), 404);
  const m1 = await api('POST', '/admin/v1/identities/1', { body: {} });
  problem(m1, 405);
  assert.equal(m1.headers.get('allow'), 'GET, PATCH, DELETE');
  const m2 = await api('PUT', '/admin/v1/pools/anon', { body: {} });
  problem(m2, 405);
  assert.match(m2.headers.get('allow'), /PATCH/);
  const m3 = await api('GET', '/admin/v1/keys/rotate');
  problem(m3, 405);
  assert.equal(m3.headers.get('allow'), 'POST');
  assert.equal(snapshot(), before, 'bad requests changed the database');
});

const PAYLOADS = [
  "x'; DROP TABLE audit_log; --",
  "' OR '1'='1",
  '"; DELETE FROM oauth_clients; --',
  "x');TRUNCATE/**/pools;--",
  '$1; SELECT pg_sleep(10)',
];
/** Every string field of a body as [path, setter]. */
function stringFields(obj, prefix = []) {
  const out = [];
  for (const [k, v] of Object.entries(obj)) {
    const p = [...prefix, k];
    if (typeof v === 'string') out.push(p);
    else if (v && typeof v === 'object') out.push(...stringFields(v, p));
  }
  return out;
}
const setPath = (obj, path, value) => {
  const copy = structuredClone(obj);
  let o = copy;
  for (const k of path.slice(0, -1)) o = o[k];
  o[path.at(-1)] = value;
  return copy;
};
const getPath = (obj, path) => path.reduce((o, k) => o?.[k], obj);
const fieldName = (path) => path.reduce((s, k) => (typeof k === 'number' || /^\d+$/.test(k) ? `${s}[${k}]` : s ? `${s}.${k}` : k), '');

test('SQL metacharacters in every field: refused naming the field with nothing written, or stored verbatim', async () => {
  await api('POST', '/admin/v1/pools', { body: { name: 'inj', realm: 'home1.net', lease_ttl_s: 60, quarantine_s: 0 } });
  const resources = [
    {
      path: '/admin/v1/identities',
      body: {
        issuer: 'https://idp.example', subject: 'inj', display_name: 'Inj', status: 'active',
        ims: { impi: 'inj@home1.net', realm: 'home1.net', impus: [{ uri: 'sip:inj@home1.net' }], default_impu: 'sip:inj@home1.net' },
      },
      url: (j) => `/admin/v1/identities/${j.id}`,
      mustRefuse: ['status', 'ims.impi', 'ims.realm', 'ims.impus[0].uri', 'ims.default_impu'],
    },
    {
      path: '/admin/v1/clients',
      body: {
        client_id: 'inj', name: 'Inj', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'],
        redirect_uris: ['https://wwsf.example/cb'], scopes: ['ims'], allowed_origins: ['https://wwsf.example'],
        audience: 'epcscf.example', allow_pool: 'inj', status: 'active',
      },
      url: (j) => `/admin/v1/clients/${j.client_id}`,
      mustRefuse: ['client_id', 'token_endpoint_auth_method', 'grant_types[0]', 'redirect_uris[0]', 'scopes[0]',
        'allowed_origins[0]', 'audience', 'allow_pool', 'status'],
    },
    {
      path: '/admin/v1/pools',
      body: { name: 'inj2', realm: 'home1.net', lease_ttl_s: 60, quarantine_s: 0 },
      url: (j) => `/admin/v1/pools/${j.name}`,
      mustRefuse: ['name', 'realm'],
    },
    {
      path: '/admin/v1/pools/inj/members',
      body: { impu_pattern: 'sip:inj-{1..2}@home1.net', impi_pattern: 'inj-{1..2}@home1.net' },
      url: null,
      mustRefuse: ['impu_pattern', 'impi_pattern'],
    },
  ];
  let refused = 0; let stored = 0;
  for (const res of resources) {
    for (const path of stringFields(res.body)) {
      const field = fieldName(path);
      for (const payload of PAYLOADS) {
        const body = setPath(res.body, path, payload);
        if (field === 'ims.impus[0].uri') body.ims.default_impu = payload;
        if (field === 'ims.default_impu') body.ims.impus[0].uri = payload;
        const before = snapshot();
        const r = await api('POST', res.path, { body });
        if (r.status === 422 || r.status === 409) {
          problem(r, r.status, { field: field === 'ims.default_impu' ? undefined : field });
          assert.equal(snapshot(), before, `${field}=${payload}: refused but written`);
          refused++;
          continue;
        }
        // Fields with a syntax refuse anything with whitespace.
        assert.ok(!(res.mustRefuse.includes(field) && /\s/.test(payload)), `${field} accepted ${payload}`);
        assert.equal(r.status, 201, `${field}=${payload}: ${r.text}`);
        assert.equal(getPath(r.json, path), payload, `${field} stored verbatim`);
        if (res.url) {
          const g = await api('GET', res.url(r.json));
          assert.equal(getPath(g.json, path), payload);
          assert.equal((await api('DELETE', res.url(r.json))).status, 204);
        }
        stored++;
      }
    }
    for (const f of res.mustRefuse) {
      const path = stringFields(res.body).find((p) => fieldName(p) === f);
      const r = await api('POST', res.path, { body: setPath(res.body, path, PAYLOADS[0]) });
      problem(r, 422, { field: f === 'ims.default_impu' ? undefined : f });
    }
  }
  assert.ok(refused > 40 && stored > 5, `refused ${refused}, stored ${stored}`);
  // Path and query parameters.
  for (const payload of PAYLOADS) {
    const e = encodeURIComponent(payload);
    for (const p of [`/admin/v1/clients/${e}`, `/admin/v1/pools/${e}`, `/admin/v1/identities/${e}`]) {
      problem(await api('GET', p), 404);
      problem(await api('DELETE', p), 404);
    }
    const q = await api('GET', `/admin/v1/identities?q=${e}`);
    assert.equal(q.status, 200);
    assert.deepEqual(q.json.items, []);
    problem(await api('GET', `/admin/v1/identities?status=${e}`), 422, { field: 'status' });
    problem(await api('GET', `/admin/v1/revoked-tokens?client_id=${e}`), 422, { field: 'client_id' });
    assert.equal((await api('GET', `/admin/v1/audit?actor=${e}`)).json.items.length, 0);
  }
  for (const t of TABLES) assert.match(psql(`SELECT count(*) FROM ${t}`), /^\d+$/, `${t} is still there`);
  assert.equal(psql('SELECT count(*) FROM web_identities'), '0');
  assert.equal(psql("SELECT count(*) FROM oauth_clients WHERE client_id <> 'admin'"), '0');
});

test('OpenAPI: the routes the server answers are the documented ones, and every documented route answers', async () => {
  const text = readFileSync(process.env.OPENAPI_FILE, 'utf8');
  const doc = YAML.parse(text);
  assert.match(doc.openapi, /^3\.1\./);
  for (const [base, listener] of [[PUB, 'public'], [ADM, 'admin']]) {
    const r = await fetch(`${base}/openapi.yaml`);
    assert.equal(r.status, 200, `GET /openapi.yaml on the ${listener} listener (its route table needs `
      + "{\"GET\", \"/openapi.yaml\", waf_h_openapi})");
    assert.match(r.headers.get('content-type'), /^application\/yaml/);
    assert.equal(await r.text(), text, `the ${listener} listener serves docs/openapi.yaml as built`);
  }
  const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];
  const documented = [];
  const opIds = new Set();
  for (const [path, item] of Object.entries(doc.paths)) {
    const listeners = item['x-listeners'];
    assert.ok(Array.isArray(listeners) && listeners.length, `${path}: x-listeners`);
    for (const m of METHODS) {
      if (!item[m]) continue;
      assert.ok(item[m].operationId && !opIds.has(item[m].operationId), `${m} ${path}: unique operationId`);
      opIds.add(item[m].operationId);
      assert.ok(item[m].responses && Object.keys(item[m].responses).length, `${m} ${path}: responses`);
      for (const l of listeners) documented.push(`${l} ${m.toUpperCase()} ${path}`);
    }
  }
  const served = readFileSync(process.env.ROUTES_FILE, 'utf8').trim().split('\n');
  const covers = (route, doc) => {
    const [l, m, p] = route.split(' ');
    const [dl, dm, dp] = doc.split(' ');
    if (l !== dl || m !== dm) return false;
    return p.endsWith('*') ? dp.startsWith(p.slice(0, -1)) : p === dp;
  };
  for (const r of served) assert.ok(documented.some((d) => covers(r, d)), `served but not documented: ${r}`);
  for (const d of documented) assert.ok(served.some((r) => covers(r, d)), `documented but not served: ${d}`);

  // Call each: a route that exists answers anything but 405 or the router's own 404
  // (type about:blank). Changes are probed with a body the validator refuses, so nothing
  // happens; resources named by the path do not exist (their 404 has another type).
  const params = { id: '999999999', client_id: 'no-such-client', name: 'no-such-pool' };
  for (const d of documented) {
    const [l, m, p] = d.split(' ');
    let path = p.replace(/\{(\w+)\}/g, (_, k) => (p.includes('leases/') && k === 'id' ? randomUUID() : params[k]));
    const admin = l === 'admin' && p.startsWith('/admin/');
    const opts = { base: l === 'admin' ? ADM : PUB, token: admin ? T : null };
    if (admin && (m === 'POST' || m === 'PATCH')) opts.body = { __probe: true };
    const r = await api(m, path, opts);
    assert.notEqual(r.status, 405, `${d}: 405 ${r.text}`);
    assert.ok(!(r.status === 404 && r.json?.type === 'about:blank'), `${d}: not routed (${r.text})`);
    if (admin && opts.body) problem(r, 422, { field: '__probe' });
  }
});
