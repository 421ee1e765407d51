// Browser tests of a SIP-over-WebSocket edge (Kamailio's websocket module in
// tests/ims-core/test-kamailio-ws.sh; the eP-CSCF later) with two WICs in Debian's Chromium:
// tests/js/wic/wic.js (JsSIP) bundled by esbuild into a temp dir and served from 127.0.0.1,
// driven by playwright-core. A and B register, A calls B, B answers, both receive audio
// (Chromium's fake devices), A hangs up, B's tab is closed, a call to B then fails, A
// unregisters.
//
// Environment (the caller starts the edge and the IMS core):
//   WSS_URL           ws:// or wss:// URL of the edge (wss: certificate errors are ignored)
//   IMPU_A, IMPU_B    the two users' IMPUs (sip:alice@home1.net)
//   SIP_DOMAIN        REGISTER Request-URI domain (default: IMPU_A's host)
//   TOKEN_A, TOKEN_B  optional access tokens: sent as `Authorization: Bearer <token>`
//   PAGE_PORT         port of the page's origin http://127.0.0.1:PAGE_PORT (default: any
//                     free port; the origin used is printed as "# wic page origin: ...")
//   AFTER_B_CLOSED    optional shell command run (sh -c) once B's tab is closed, retried
//                     until it exits 0 for up to 15 s: the caller's check of what the edge did
//   REGISTER_EXPIRES  Expires of the REGISTERs (default 600)
//   CHROMIUM          browser binary (default /usr/bin/chromium)
//   DEBUG_BROWSER     set: JsSIP debug logging and the pages' console on stderr
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';

const env = process.env;
for (const name of ['WSS_URL', 'IMPU_A', 'IMPU_B']) {
  if (!env[name]) throw new Error(`${name} is not set (see the head of wic-browser.test.mjs)`);
}
const WSS_URL = env.WSS_URL;
const IMPU_A = env.IMPU_A;
const IMPU_B = env.IMPU_B;
const SIP_DOMAIN = env.SIP_DOMAIN || new URL(IMPU_A.replace(/^sips?:/, 'sip://')).hostname;
const EXPIRES = Number(env.REGISTER_EXPIRES || 600);
const DEBUG = Boolean(env.DEBUG_BROWSER);
const WIC_DIR = join(dirname(fileURLToPath(import.meta.url)), 'wic');

let tmp, server, context, origin;
const pages = {};

// Rejects when p takes longer than ms.
function within(ms, what, p) {
  let timer;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms); }),
  ]);
}

// Runs fn(wic, arg) in a page; on failure the message carries both pages' WIC logs.
async function inPage(name, ms, what, fn, arg) {
  try {
    return await within(ms, `${name}: ${what}`, pages[name].evaluate(fn, arg));
  } catch (e) {
    e.message += `\n${await logs()}`;
    throw e;
  }
}

async function logs() {
  const out = [];
  for (const [name, page] of Object.entries(pages)) {
    if (page.isClosed()) continue;
    const lines = await page.evaluate(() => window.wic.log).catch(() => ['(no log)']);
    out.push(`--- ${name}:`, ...lines);
  }
  return out.join('\n');
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'wic-'));
  await build({
    entryPoints: [join(WIC_DIR, 'wic.js')],
    bundle: true,
    format: 'iife',
    target: 'chrome120',
    outfile: join(tmp, 'www', 'wic.bundle.js'),
    logLevel: 'warning',
  });
  const files = {
    '/': ['text/html', readFileSync(join(WIC_DIR, 'wic.html'))],
    '/wic.bundle.js': ['text/javascript', readFileSync(join(tmp, 'www', 'wic.bundle.js'))],
  };
  server = createServer((req, res) => {
    const f = files[new URL(req.url, 'http://x').pathname];
    if (!f) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': f[0], 'cache-control': 'no-store' }).end(f[1]);
  });
  await new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(Number(env.PAGE_PORT || 0), '127.0.0.1', ok);
  });
  origin = `http://127.0.0.1:${server.address().port}`;
  console.log(`# wic page origin: ${origin}`);

  context = await chromium.launchPersistentContext(join(tmp, 'profile'), {
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--ignore-certificate-errors',
      '--autoplay-policy=no-user-gesture-required',
      // Two tabs run at once: keep the one in the background at full speed.
      '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows'],
  });
  for (const name of ['A', 'B']) {
    const page = await context.newPage();
    if (DEBUG) page.on('console', (m) => console.error(`[${name}] ${m.text()}`));
    page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => window.wic !== undefined);
    pages[name] = page;
  }
});

after(async () => {
  await context?.close();
  server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('A and B register: 200', async () => {
  const reg = (name, uri, token) => inPage(name, 10000, 'register',
    (opts) => window.wic.register(opts),
    { wsUrl: WSS_URL, uri, token: token || null, domain: SIP_DOMAIN, expires: EXPIRES, debug: DEBUG });
  const [a, b] = await Promise.all([reg('A', IMPU_A, env.TOKEN_A), reg('B', IMPU_B, env.TOKEN_B)]);
  assert.deepEqual(a, { ok: true, status: 200 }, 'A registered');
  assert.deepEqual(b, { ok: true, status: 200 }, 'B registered');
});

test('A calls B, B answers, both receive audio', async () => {
  const answered = inPage('B', 15000, 'answer', () => window.wic.answerNext());
  answered.catch(() => {}); // A's outcome is reported first
  const a = await inPage('A', 15000, 'call', (target) => window.wic.call(target), IMPU_B);
  assert.equal(a.state, 'confirmed', `A: ${JSON.stringify(a)}\n${await logs()}`);
  const b = await answered;
  assert.equal(b.state, 'confirmed', `B: ${JSON.stringify(b)}`);
  const deadline = Date.now() + 10000;
  let sa, sb;
  for (;;) {
    sa = await pages.A.evaluate(() => window.wic.stats());
    sb = await pages.B.evaluate(() => window.wic.stats());
    if (sa.inboundBytes > 0 && sb.inboundBytes > 0) break;
    if (Date.now() > deadline) {
      assert.fail(`no media in 10 s: A ${JSON.stringify(sa)}, B ${JSON.stringify(sb)}\n${await logs()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log(`# media: A received ${sa.inboundBytes} bytes, B ${sb.inboundBytes} bytes`);
});

test('A hangs up: both calls end', async () => {
  const [b, a] = await Promise.all([
    inPage('B', 10000, 'ended', () => window.wic.ended()),
    inPage('A', 10000, 'hangup', () => window.wic.hangup()),
  ]);
  assert.deepEqual([a.state, a.originator], ['ended', 'local'], `A: ${JSON.stringify(a)}`);
  assert.deepEqual([b.state, b.originator], ['ended', 'remote'], `B: ${JSON.stringify(b)}`);
});

test("B's tab closes; a call to B then fails", async () => {
  await pages.B.close();
  console.log(`# B's tab closed at ${new Date().toISOString()}`);
  delete pages.B;
  if (env.AFTER_B_CLOSED) {
    const deadline = Date.now() + 15000;
    for (;;) {
      const r = await new Promise((resolve) => {
        execFile('sh', ['-c', env.AFTER_B_CLOSED], (err, stdout, stderr) => resolve({ err, out: stdout + stderr }));
      });
      if (!r.err) break;
      if (Date.now() > deadline) assert.fail(`AFTER_B_CLOSED still fails after 15 s: ${r.out}`);
      await new Promise((ok) => setTimeout(ok, 250));
    }
  }
  const a = await inPage('A', 15000, 'call to the closed tab', (target) => window.wic.call(target), IMPU_B);
  assert.equal(a.state, 'failed', `A: ${JSON.stringify(a)}`);
  console.log(`# call to the closed tab: ${a.status} ${a.cause}`);
});

test('A unregisters: 200', async () => {
  const a = await inPage('A', 10000, 'unregister', () => window.wic.unregister());
  assert.deepEqual(a, { ok: true, status: 200, cause: null });
});
