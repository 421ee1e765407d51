// The demo page's web server (`make run` starts it): a tiny WWSF (TS 24.371) on loopback.
//
//   GET  /                 index.html (from this folder)
//   GET  /demo.bundle.js   demo.js bundled with JsSIP by esbuild (scripts/run-dev writes it
//                          into --www)
//   POST /token            an anonymous IMS identity for this browser tab: the WAF's token
//                          exchange (subject_token_type anonymous-session) done here, with
//                          the portal client's secret, which the browser never sees.
//                          Body {} starts a web session; {"session": "..."} (a session this
//                          server started) renews its token, keeping the pooled identity
//                          while the WAF's lease lives. Answer: access_token, expires_in,
//                          impu, impi, session and the eP-CSCF's URLs (ws_url, wss_url).
//
// usage: node serve.mjs --listen 127.0.0.1:8088 --www DIR --waf ISSUER_URL
//          --client-id ID --secret-file FILE --wss-url URL [--ws-url URL]
// The page must be opened at http://<listen>/: that origin is the eP-CSCF's
// ws.allowed_origins; other Host names are redirected to it.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    listen: { type: 'string', default: '127.0.0.1:8088' },
    www: { type: 'string' },
    waf: { type: 'string' },
    'client-id': { type: 'string' },
    'secret-file': { type: 'string' },
    'wss-url': { type: 'string' },
    'ws-url': { type: 'string', default: '' },
  },
});
for (const k of ['www', 'waf', 'client-id', 'secret-file', 'wss-url']) {
  if (!opt[k]) {
    console.error(`serve.mjs: --${k} is required (see the head of this file)`);
    process.exit(2);
  }
}
const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(opt.listen);
if (!m) {
  console.error(`serve.mjs: --listen must be IPv4:port, got ${opt.listen}`);
  process.exit(2);
}
const [host, port] = [m[1], Number(m[2])];
const origin = `http://${host}:${port}`;
const secret = readFileSync(opt['secret-file'], 'utf8').trim();
const basic = `Basic ${Buffer.from(`${encodeURIComponent(opt['client-id'])}:${encodeURIComponent(secret)}`).toString('base64')}`;
const tokenUrl = `${opt.waf.replace(/\/+$/, '')}/token`;
const here = dirname(fileURLToPath(import.meta.url));
const files = {
  '/': ['text/html; charset=utf-8', join(here, 'index.html')],
  '/demo.bundle.js': ['text/javascript; charset=utf-8', join(opt.www, 'demo.bundle.js')],
};
const security = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    + `connect-src 'self' ${[opt['ws-url'], opt['wss-url']].filter(Boolean).join(' ')}; `
    + "media-src 'self' blob: mediastream:; frame-ancestors 'none'",
};

// The web sessions this server started (the WWSF vouches only for those), oldest first.
const MAX_SESSIONS = 10000;
const sessions = new Set();

function log(line) {
  console.log(`${new Date().toISOString()} ${line}`);
}

function send(res, status, type, body, extra = {}) {
  res.writeHead(status, { ...security, 'content-type': type, ...extra }).end(body);
}

function json(res, status, obj) {
  send(res, status, 'application/json', JSON.stringify(obj));
}

// Reads a small request body; rejects past 1 KiB.
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let n = 0;
    req.on('data', (c) => {
      n += c.length;
      if (n > 1024) {
        reject(new Error('body too large'));
        req.destroy();
      } else {
        chunks.push(c);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function token(req, res) {
  // Same-origin JSON only: a cross-site form cannot send application/json, and a
  // cross-site fetch carries its Origin.
  if (req.headers.origin !== undefined && req.headers.origin !== origin) {
    json(res, 403, { error: 'origin not allowed' });
    return;
  }
  if (!/^application\/json\b/.test(req.headers['content-type'] || '')) {
    json(res, 415, { error: 'send application/json' });
    return;
  }
  let body;
  try {
    body = JSON.parse((await readBody(req)) || '{}');
  } catch {
    json(res, 400, { error: 'bad JSON body' });
    return;
  }
  let session = typeof body?.session === 'string' ? body.session : null;
  if (session !== null && !sessions.has(session)) {
    json(res, 400, { error: 'unknown session (the demo server restarted?): get a new identity' });
    return;
  }
  if (session === null) {
    session = randomBytes(16).toString('hex');
    sessions.add(session);
    if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.values().next().value);
  }
  const form = new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token_type: 'urn:webrtc-ims:params:oauth:token-type:anonymous-session',
    subject_token: `demo-session-${session}`,
  });
  let r, answer;
  try {
    r = await fetch(tokenUrl, {
      method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
      body: form,
      signal: AbortSignal.timeout(10000),
    });
    answer = await r.json();
  } catch (e) {
    log(`POST /token: the WAF at ${tokenUrl} failed: ${e.message}`);
    json(res, 502, { error: `the WAF did not answer (${e.message})` });
    return;
  }
  if (!r.ok || typeof answer.access_token !== 'string') {
    log(`POST /token: the WAF answered ${r.status} ${answer.error ?? ''}`);
    const retry = r.headers.get('retry-after');
    json(res, r.status === 503 ? 503 : 502, {
      error: `the WAF answered ${r.status} ${answer.error ?? ''} ${answer.error_description ?? ''}`.trim(),
      ...(retry ? { retry_after: retry } : {}),
    });
    return;
  }
  log(`POST /token: ${answer.impu} for session ${session.slice(0, 8)}... (expires in ${answer.expires_in} s)`);
  json(res, 200, {
    access_token: answer.access_token,
    expires_in: answer.expires_in,
    impu: answer.impu,
    impi: answer.impi,
    session,
    wss_url: opt['wss-url'],
    ws_url: opt['ws-url'] || null,
  });
}

const server = createServer((req, res) => {
  const path = new URL(req.url, origin).pathname;
  if (req.headers.host !== `${host}:${port}`) {
    // The eP-CSCF admits the page's origin only as http://HOST:PORT.
    if (req.method === 'GET') send(res, 302, 'text/plain', '', { location: `${origin}${path}` });
    else json(res, 421, { error: `use ${origin}/` });
    return;
  }
  if (path === '/token') {
    if (req.method !== 'POST') {
      json(res, 405, { error: 'POST only' });
      return;
    }
    token(req, res).catch((e) => {
      log(`POST /token: ${e.message}`);
      if (!res.headersSent) json(res, 400, { error: e.message });
    });
    return;
  }
  const f = files[path];
  if (!f || (req.method !== 'GET' && req.method !== 'HEAD')) {
    send(res, 404, 'text/plain', 'not found\n');
    return;
  }
  let data;
  try {
    data = readFileSync(f[1]);
  } catch (e) {
    send(res, 500, 'text/plain', `${e.code ?? e.message}: ${f[1]}\n`);
    return;
  }
  send(res, 200, f[0], req.method === 'HEAD' ? undefined : data);
});
server.on('error', (e) => {
  console.error(`serve.mjs: ${e.message}`);
  process.exit(1);
});
server.listen(port, host, () => log(`demo page on ${origin}/ (WAF ${opt.waf}, client ${opt['client-id']})`));
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
