// A tiny WebRTC IMS Client (WIC) for the browser tests: SIP over WebSocket with JsSIP,
// audio only, one call at a time. tests/js/wic-browser.test.mjs bundles it with esbuild
// (JsSIP is CommonJS) and drives it through window.wic from playwright-core:
//
//   register({ wsUrl, uri, token, domain, expires }) -> { ok, status, cause }
//       starts the UA and REGISTERs; with a token every request carries
//       `Authorization: Bearer <token>` (JsSIP's authorization_jwt). Resolves on the first
//       registered / registrationFailed, or on the WebSocket failing before either
//       (status null, cause 'disconnected: <code> <reason>').
//   call(target)   -> { state: 'confirmed' } | { state: 'failed', status, cause }
//   answerNext()   -> the same, for the next incoming call (answered with audio)
//   hangup()       -> { state: 'ended' | 'failed', originator, cause }
//   ended()        -> how the current (or last) call ended, once it has
//   stats()        -> { inboundBytes, outboundBytes, iceState } summed over the call's
//                     RTCPeerConnection.getStats() inbound-rtp / outbound-rtp entries
//   unregister()   -> { ok, status, cause }
//   log            -> event lines, for the test's failure messages
import JsSIP from 'jssip';

const log = [];
let ua = null;
let session = null; // the current or last call
const incoming = []; // incoming sessions not yet answered
const incomingWaiters = [];

function note(line) {
  log.push(`${(performance.now() / 1000).toFixed(3)} ${line}`);
}

// Resolves with the outcome of a session: confirmed (set up) or failed (never set up).
function setupOutcome(s) {
  return new Promise((resolve) => {
    s.once('confirmed', () => resolve({ state: 'confirmed' }));
    s.once('failed', (e) => resolve({
      state: 'failed', originator: e.originator, cause: e.cause, status: e.message?.status_code ?? null,
    }));
  });
}

// Keeps the end of a session (ended after confirmed, failed before) as s.wicEnd.
function track(s) {
  s.wicEnd = new Promise((resolve) => {
    s.once('ended', (e) => resolve({ state: 'ended', originator: e.originator, cause: e.cause }));
    s.once('failed', (e) => resolve({
      state: 'failed', originator: e.originator, cause: e.cause, status: e.message?.status_code ?? null,
    }));
  });
  s.wicEnd.then((r) => note(`session ${r.state} (${r.originator}: ${r.cause})`));
  s.on('peerconnection', (e) => {
    e.peerconnection.addEventListener('track', (t) => {
      const audio = document.getElementById('remote');
      if (audio && t.streams[0]) {
        audio.srcObject = t.streams[0];
        audio.play().catch(() => {});
      }
    });
    e.peerconnection.addEventListener('iceconnectionstatechange', () =>
      note(`ice ${e.peerconnection.iceConnectionState}`));
  });
}

const media = {
  mediaConstraints: { audio: true, video: false },
  pcConfig: { iceServers: [] },
};

function register({ wsUrl, uri, token, domain, expires = 600, debug = false }) {
  if (ua) throw new Error('register() already called');
  if (debug) JsSIP.debug.enable('JsSIP:*');
  else JsSIP.debug.disable();
  const config = {
    sockets: [new JsSIP.WebSocketInterface(wsUrl)],
    uri,
    register: true,
    register_expires: expires,
    session_timers: false,
    connection_recovery_min_interval: 2,
    connection_recovery_max_interval: 5,
  };
  if (token) config.authorization_jwt = `Bearer ${token}`;
  if (domain) config.registrar_server = `sip:${domain}`;
  ua = new JsSIP.UA(config);
  ua.on('connected', () => note('ws connected'));
  ua.on('newRTCSession', (e) => {
    note(`new ${e.originator} session ${e.request.method} ${e.request.ruri}`);
    track(e.session);
    if (e.originator === 'remote') {
      const w = incomingWaiters.shift();
      if (w) w(e.session);
      else incoming.push(e.session);
    }
  });
  const outcome = new Promise((resolve) => {
    ua.once('registered', (e) => resolve({ ok: true, status: e.response.status_code }));
    ua.once('registrationFailed', (e) => resolve({
      ok: false, status: e.response?.status_code ?? null, cause: e.cause,
    }));
    ua.once('disconnected', (e) => resolve({
      ok: false, status: null, cause: `disconnected: ${e.code ?? ''} ${e.reason ?? ''}`.trim(),
    }));
  });
  ua.on('registered', (e) => note(`registered ${e.response.status_code}`));
  ua.on('registrationFailed', (e) => note(`registration failed ${e.response?.status_code} ${e.cause}`));
  ua.on('unregistered', (e) => note(`unregistered ${e.response?.status_code ?? ''} ${e.cause ?? ''}`));
  ua.on('disconnected', (e) => note(`ws disconnected ${e.code ?? ''} ${e.reason ?? ''}`));
  ua.start();
  return outcome;
}

function call(target) {
  if (!ua) throw new Error('register() first');
  session = ua.call(target, media);
  return setupOutcome(session);
}

async function answerNext() {
  if (!ua) throw new Error('register() first');
  const s = incoming.shift() ?? await new Promise((resolve) => incomingWaiters.push(resolve));
  session = s;
  const outcome = setupOutcome(s);
  s.answer(media);
  return outcome;
}

function hangup() {
  if (!session) throw new Error('no call');
  if (!session.isEnded()) session.terminate();
  return session.wicEnd;
}

function ended() {
  if (!session) throw new Error('no call');
  return session.wicEnd;
}

async function stats() {
  const pc = session?.connection;
  const out = { inboundBytes: 0, outboundBytes: 0, iceState: pc?.iceConnectionState ?? null };
  if (!pc || pc.signalingState === 'closed') return out;
  const report = await pc.getStats();
  report.forEach((r) => {
    if (r.type === 'inbound-rtp') out.inboundBytes += r.bytesReceived ?? 0;
    if (r.type === 'outbound-rtp') out.outboundBytes += r.bytesSent ?? 0;
  });
  return out;
}

function unregister() {
  if (!ua) throw new Error('register() first');
  return new Promise((resolve) => {
    ua.once('unregistered', (e) => resolve({
      ok: !e.cause, status: e.response?.status_code ?? null, cause: e.cause ?? null,
    }));
    ua.unregister();
  });
}

window.wic = { register, call, answerNext, hangup, ended, stats, unregister, log };
