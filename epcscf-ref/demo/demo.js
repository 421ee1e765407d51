// The demo page's WIC: JsSIP over the eP-CSCF's WebSocket, audio only, one call at a time.
// scripts/run-dev bundles it with esbuild (JsSIP is CommonJS) into var/epcscf/www, where
// serve.mjs serves it next to index.html.
//
// 1. "Get an anonymous identity": POST /token (same origin) returns an access token and the
//    IMPU it is for; the token is renewed before it expires (same web session, so the same
//    pooled identity), and a live registration is refreshed with the new token.
// 2. Register: every request carries `Authorization: Bearer <token>` (JsSIP's
//    authorization_jwt); the eP-CSCF checks it and registers the IMPU at the IMS core.
// 3. Call a SIP URI (or a user name in the IMPU's domain), answer, hang up.
// Everything that happens goes to the status lines; window.demo exposes the state for
// scripted checks.
import JsSIP from 'jssip';

const $ = (id) => document.getElementById(id);
const ui = {
  identity: $('identity'), impu: $('impu'), server: $('server'), register: $('register'),
  unregister: $('unregister'), target: $('target'), call: $('call'), answer: $('answer'),
  hangup: $('hangup'), status: $('status'), remote: $('remote'), wssHint: $('wss-hint'),
  wssLink: $('wss-link'),
};

const state = {
  id: null, // { token, impu, impi, session, expiresAt }
  registered: false,
  lines: [],
};
let ua = null;
let session = null; // the current call
let renewTimer = null;

const media = {
  mediaConstraints: { audio: true, video: false },
  pcConfig: { iceServers: [] },
};

function status(text, cls = '') {
  const line = `${new Date().toLocaleTimeString()}  ${text}`;
  state.lines.push(line);
  const div = document.createElement('div');
  div.textContent = line;
  if (cls) div.className = cls;
  ui.status.append(div);
  ui.status.scrollTop = ui.status.scrollHeight;
}

function refresh() {
  const inCall = session !== null && !session.isEnded();
  ui.server.disabled = !state.id || ua !== null;
  ui.register.disabled = !state.id;
  ui.unregister.disabled = !state.registered;
  ui.call.disabled = !state.registered || inCall;
  ui.answer.disabled = !(inCall && session.direction === 'incoming' && !session.isEstablished());
  ui.hangup.disabled = !inCall;
  ui.wssHint.hidden = !ui.server.value.startsWith('wss:');
  if (!ui.wssHint.hidden) ui.wssLink.href = ui.server.value.replace(/^wss:/, 'https:');
}

function domainOf(uri) {
  return uri.replace(/^sips?:/, '').replace(/^[^@]*@/, '').replace(/[;>].*$/, '');
}

async function fetchToken() {
  const r = await fetch('/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(state.id?.session ? { session: state.id.session } : {}),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${r.status}: ${body.error ?? 'no answer'}`);
  return body;
}

function fillServers(t) {
  if (ua) return;
  const keep = ui.server.value;
  ui.server.replaceChildren();
  for (const [url, label] of [[t.ws_url, 'loopback, no certificate'], [t.wss_url, 'TLS, self-signed']]) {
    if (!url) continue;
    const o = document.createElement('option');
    o.value = url;
    o.textContent = `${url} (${label})`;
    ui.server.append(o);
    if (url === keep) ui.server.value = keep;
  }
}

// Renews the token at 80 % of its lifetime.
function scheduleRenewal(expiresIn) {
  clearTimeout(renewTimer);
  renewTimer = setTimeout(async () => {
    try {
      applyToken(await fetchToken());
    } catch (e) {
      status(`token renewal failed: ${e.message}`, 'err');
    }
    refresh();
  }, Math.max(5, expiresIn * 0.8) * 1000);
}

// Takes a token answer: a live UA sends the new token from now on (a registration is
// refreshed with it); another identity than before (the old lease ended) ends the UA.
function applyToken(t) {
  const old = state.id?.impu;
  if (ua && old && t.impu !== old) {
    status(`the WAF gave another identity (${t.impu}): the lease of ${old} ended; stopping`, 'err');
    ua.stop();
    ua = null;
    state.registered = false;
  }
  useToken(t);
  status(`${old === t.impu ? 'token renewed' : 'identity'}: ${t.impu} (IMPI ${t.impi}), token`
    + ` expires in ${t.expires_in} s`, 'ok');
  if (ua) {
    ua.set('authorization_jwt', `Bearer ${t.access_token}`);
    if (state.registered) ua.register();
  }
}

function useToken(t) {
  state.id = {
    token: t.access_token, impu: t.impu, impi: t.impi, session: t.session,
    expiresAt: Date.now() + t.expires_in * 1000,
  };
  sessionStorage.setItem('demo-session', t.session);
  ui.impu.textContent = t.impu;
  fillServers(t);
  scheduleRenewal(t.expires_in);
}

async function getIdentity() {
  ui.identity.disabled = true;
  try {
    if (!state.id) {
      const s = sessionStorage.getItem('demo-session');
      if (s) state.id = { session: s };
    }
    let t;
    try {
      t = await fetchToken();
    } catch (e) {
      if (!state.id?.session || !/unknown session/.test(e.message)) throw e;
      state.id = { impu: state.id.impu }; // the demo server restarted: a new web session
      t = await fetchToken();
    }
    applyToken(t);
  } catch (e) {
    status(`no identity: ${e.message}`, 'err');
  } finally {
    ui.identity.disabled = false;
    refresh();
  }
}

function track(s) {
  session = s;
  s.on('progress', (e) => status(e.originator === 'remote'
    ? `call: ${e.response.status_code} ${e.response.reason_phrase}` : 'call: ringing here'));
  s.on('accepted', () => status('call: answered'));
  s.on('confirmed', () => { status('call: established (audio)', 'ok'); refresh(); });
  s.on('ended', (e) => { status(`call ended by ${e.originator} (${e.cause})`); refresh(); });
  s.on('failed', (e) => {
    const code = e.message?.status_code;
    status(`call failed: ${code ? `${code} ` : ''}${e.cause} (${e.originator})`, 'err');
    refresh();
  });
  const watch = (pc) => {
    pc.addEventListener('track', (t) => {
      if (t.streams[0]) {
        ui.remote.srcObject = t.streams[0];
        ui.remote.play().catch(() => {});
      }
    });
    pc.addEventListener('iceconnectionstatechange', () => status(`media: ICE ${pc.iceConnectionState}`));
  };
  // An outgoing call has its RTCPeerConnection already (created inside ua.call()).
  if (s.connection) watch(s.connection);
  else s.on('peerconnection', (e) => watch(e.peerconnection));
  refresh();
}

function startUa() {
  const wsUrl = ui.server.value;
  ua = new JsSIP.UA({
    sockets: [new JsSIP.WebSocketInterface(wsUrl)],
    uri: state.id.impu,
    authorization_jwt: `Bearer ${state.id.token}`,
    registrar_server: `sip:${domainOf(state.id.impu)}`,
    register: true,
    register_expires: 600,
    session_timers: false,
    connection_recovery_min_interval: 2,
    connection_recovery_max_interval: 30,
  });
  ua.on('connecting', () => status(`connecting to ${wsUrl}`));
  ua.on('connected', () => status(`WebSocket open to ${wsUrl}`));
  ua.on('disconnected', (e) => {
    status(`WebSocket closed${e.code ? ` (${e.code}${e.reason ? ` ${e.reason}` : ''})` : ''}`
      + `${e.error && wsUrl.startsWith('wss:') ? ': accepted the certificate? see the hint above' : ''}`, 'err');
  });
  ua.on('registered', (e) => {
    state.registered = true;
    status(`registered: ${e.response.status_code} ${e.response.reason_phrase} (${state.id.impu})`, 'ok');
    refresh();
  });
  ua.on('unregistered', (e) => {
    state.registered = false;
    status(`unregistered${e.response ? `: ${e.response.status_code} ${e.response.reason_phrase}` : ''}`
      + `${e.cause ? ` (${e.cause})` : ''}`);
    refresh();
  });
  ua.on('registrationFailed', (e) => {
    state.registered = false;
    const r = e.response;
    status(`registration failed: ${r ? `${r.status_code} ${r.reason_phrase}` : ''} (${e.cause})`, 'err');
    refresh();
  });
  // Sessions are tracked here, outgoing calls too (ua.call() emits this before it returns).
  ua.on('newRTCSession', (e) => {
    if (e.originator !== 'remote') {
      track(e.session);
      return;
    }
    if (session && !session.isEnded()) {
      e.session.terminate({ status_code: 486, reason_phrase: 'Busy Here' });
      status(`busy: refused a call from ${e.request.from.uri}`);
      return;
    }
    status(`incoming call from ${e.request.from.uri}: press Answer`, 'ok');
    track(e.session);
  });
  ua.start();
}

function register() {
  if (!state.id) return;
  if (ua === null) startUa();
  else ua.register();
  status(`REGISTER ${state.id.impu} with its token`);
  refresh();
}

function call() {
  const target = ui.target.value.trim();
  if (!target) {
    status('enter a SIP URI to call (the other tab\'s IMPU)', 'err');
    return;
  }
  status(`calling ${target}`);
  try {
    ua.call(target, media);
  } catch (e) {
    status(`call: ${e.message}`, 'err');
  }
}

ui.identity.addEventListener('click', getIdentity);
ui.register.addEventListener('click', register);
ui.unregister.addEventListener('click', () => ua?.unregister());
ui.call.addEventListener('click', call);
ui.target.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !ui.call.disabled) call(); });
ui.answer.addEventListener('click', () => {
  if (session && !session.isEstablished()) session.answer(media);
});
ui.hangup.addEventListener('click', () => {
  if (session && !session.isEnded()) session.terminate();
});
ui.server.addEventListener('change', refresh);
window.addEventListener('beforeunload', () => ua?.stop());
JsSIP.debug.disable();
refresh();
status('ready: get an anonymous identity');

window.demo = { state, get ua() { return ua; }, get session() { return session; } };
