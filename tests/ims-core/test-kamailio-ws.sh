#!/usr/bin/env bash
# The Kamailio WebSocket baseline with real browsers: starts the IMS core stand-in
# (kamailio.cfg) and Kamailio's own WebSocket front proxy (kamailio-ws.cfg, WS and WSS with
# a self-signed certificate) on free loopback ports in a temp dir, runs
# tests/js/wic-browser.test.mjs (two JsSIP WICs in Chromium: register, call with audio,
# hang up, tab closed) over ws:// and then wss:// (with Bearer tokens the proxy must drop),
# checks in the core's log that the REGISTERs arrived with Trusted Node Authentication and
# no token and that the calls were routed back along the proxy's Path, and stops both.
# usage: test-kamailio-ws.sh SOURCE_DIR
set -euo pipefail
src=$1
here=$src/tests/ims-core
js=$src/tests/js
for tool in kamailio node openssl python3; do
    command -v "$tool" >/dev/null || { echo "$tool not installed (scripts/install-deps)" >&2; exit 1; }
done
if [ ! -d "$js/node_modules/jssip" ] || [ ! -d "$js/node_modules/esbuild" ]; then
    echo "npm test tools missing: npm ci in tests/js (scripts/install-deps)" >&2
    exit 1
fi
tmp=$(mktemp -d)
core_pid=
ws_pid=
stop() { # stop PID: TERM, then wait for it
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    stop "$ws_pid"
    stop "$core_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "FAIL: $*" >&2
    echo "--- core log (tail):" >&2; tail -25 "$tmp/core.log" >&2 || true
    echo "--- kamailio-ws log (tail):" >&2; tail -25 "$tmp/ws.log" >&2 || true
    exit 1
}
# Waits until something accepts TCP connections on 127.0.0.1:$1 (process $2 alive).
wait_port() {
    for _ in $(seq 1 100); do
        python3 - "$1" <<'PY' && return 0
import socket, sys
s = socket.socket(); s.settimeout(0.2)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
        kill -0 "$2" 2>/dev/null || fail "kamailio (pid $2) exited at start"
        sleep 0.1
    done
    fail "nothing listens on port $1"
}
read -r core_port ws_sip_port ws_port wss_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
mkdir "$tmp/core" "$tmp/ws"
ws_defs=(-A "SIP_PORT=$ws_sip_port" -A "WS_PORT=$ws_port" -A "WSS_PORT=$wss_port"
    -A "TLS_CERT=\"$tmp/cert.pem\"" -A "TLS_KEY=\"$tmp/key.pem\""
    -A "REGISTRAR=\"sip:127.0.0.1:$core_port\"")
kamailio -c -f "$here/kamailio.cfg" >"$tmp/check.log" 2>&1 || { cat "$tmp/check.log" >&2; exit 1; }
kamailio -c -f "$here/kamailio-ws.cfg" "${ws_defs[@]}" >"$tmp/check.log" 2>&1 \
    || { cat "$tmp/check.log" >&2; exit 1; }

kamailio -DD -E -f "$here/kamailio.cfg" -l "udp:127.0.0.1:$core_port" -l "tcp:127.0.0.1:$core_port" \
    -Y "$tmp/core" -P "$tmp/core.pid" -m 32 -M 8 >"$tmp/core.log" 2>&1 &
core_pid=$!
kamailio -DD -E -f "$here/kamailio-ws.cfg" "${ws_defs[@]}" \
    -Y "$tmp/ws" -P "$tmp/ws.pid" -m 64 -M 8 >"$tmp/ws.log" 2>&1 &
ws_pid=$!
wait_port "$core_port" "$core_pid"
wait_port "$ws_port" "$ws_pid"
wait_port "$wss_port" "$ws_pid"

# run_wic URL USER_A USER_B [TOKENS]: wic-browser.test.mjs against the proxy; B's closed tab
# must show up in the proxy's log as the close of the WebSocket B registered from (the
# check runs in sh -c with WS_LOG and WS_B from the environment).
# shellcheck disable=SC2016
closed_check='p=$(grep -o "kamailio-ws: REGISTER sip:$WS_B@home1.net from 127.0.0.1:[0-9]*" "$WS_LOG" | tail -1 | sed "s/.*://")
[ -n "$p" ] && grep -q "kamailio-ws: websocket closed 127.0.0.1:$p\$" "$WS_LOG"'
run_wic() {
    local url=$1 a=$2 b=$3 tokens=${4:-}
    echo "# wic-browser.test.mjs against $url"
    (cd "$js" && WSS_URL=$url SIP_DOMAIN=home1.net \
        IMPU_A="sip:$a@home1.net" IMPU_B="sip:$b@home1.net" \
        TOKEN_A=${tokens:+token-of-$a} TOKEN_B=${tokens:+token-of-$b} \
        AFTER_B_CLOSED=$closed_check WS_LOG=$tmp/ws.log WS_B=$b \
        node --test-reporter=spec wic-browser.test.mjs) || fail "wic-browser.test.mjs against $url"
}
run_wic "ws://127.0.0.1:$ws_port" alice bob
run_wic "wss://127.0.0.1:$wss_port" carol dave tokens

for user in alice bob carol dave; do
    grep -q "ims-core: REGISTER sip:$user@home1.net from 127.0.0.1:$ws_sip_port .*authorization: Digest username=\"$user@home1.net\", realm=\"home1.net\", .*integrity-protected=\"auth-done\"" \
        "$tmp/core.log" || fail "no TNA REGISTER of $user from the proxy in the core's log"
done
! grep -qi 'bearer' "$tmp/core.log" || fail "a Bearer credential reached the core"
# The core sends INVITEs to the registered Contact (aliased with the browser's WebSocket
# flow, proto 5 = ws, 6 = wss) through the proxy's Path.
for proto in 5 6; do
    grep -q "ims-core: INVITE to sip:[^ ]*;alias=127.0.0.1~[0-9]*~$proto;transport=ws via sip:term@127.0.0.1:$ws_sip_port;lr;ob\$" \
        "$tmp/core.log" || fail "no INVITE routed along the proxy's Path to a browser (alias proto $proto)"
done
! grep -q 'ims-core: IMPI .* does not own' "$tmp/core.log" || fail "the core refused an IMPI"
stop "$ws_pid"; ws_pid=
stop "$core_pid"; core_pid=
echo "kamailio-ws baseline with browsers: ok"
