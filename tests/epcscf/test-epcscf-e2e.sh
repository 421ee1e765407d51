#!/usr/bin/env bash
# End to end through the real parts: waf-server issues the tokens (anonymous-session token
# exchange, pooled identities), epcscf-ref checks them and registers the WICs at the IMS
# core stand-in (Kamailio, tests/ims-core/kamailio.cfg) with the TNA header, Redis carries
# the WAF's revocations to the eP-CSCF. Runs tests/epcscf/test_epcscf_e2e.py (SIP over WS
# and WSS from Python) and then, when E2E_BROWSER is not 0, tests/js/wic-browser.test.mjs
# (JsSIP in Chromium: two WICs register and call each other, media flows).
#
# Everything runs in a temp dir on free loopback ports and is stopped at the end, on failure
# too. usage: test-epcscf-e2e.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
waf=$build/waf-server/waf-server
imspool=$build/pool-manager/imspool
ep=$build/epcscf-ref/epcscf-ref
devstack=$src/scripts/devstack
for b in "$waf" "$imspool" "$ep"; do
    [[ -x $b ]] || { echo "FAIL: no $b (build it first)" >&2; exit 1; }
done
command -v kamailio >/dev/null || { echo "FAIL: kamailio not installed (scripts/install-deps)" >&2; exit 1; }

ulimit -n 8192 # the fault test holds 1,000 connections from one client process
stack=$(mktemp -d /tmp/epcscf-e2e.XXXXXX)
chmod 755 "$stack" # PostgreSQL runs as user postgres when we are root
pids=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e # tear everything down even when a step here fails
    [[ -s $stack/waf.pids ]] && mapfile -t -O "${#pids[@]}" pids <"$stack/waf.pids"
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    if ((rc != 0)); then
        for l in waf epcscf kamailio; do
            [[ -s $stack/$l.log ]] || continue
            echo "---- $l log (last lines) ----" >&2
            tail -n 25 "$stack/$l.log" >&2
        done
    fi
    DEVSTACK_DIR=$stack "$devstack" down >/dev/null 2>&1 || true
    rm -rf "$stack"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# A base port whose next one is free too, over TCP and UDP, below the ephemeral range (the
# eP-CSCF's workers bind mw.listen's port + index for both).
free_port_pair() {
    python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 30000)
    socks = []
    try:
        for p in (base, base + 1):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind)
                socks.append(s)
                s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
PY
}
wait_http() { # url pid what
    for _ in $(seq 1 100); do
        curl -fsS "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || fail "$3 exited at start"
        sleep 0.1
    done
    fail "$3 not answering at $1"
}

DEVSTACK_DIR=$stack "$devstack" up >"$stack/devstack-up.log" 2>&1 ||
    { cat "$stack/devstack-up.log" >&2; fail "devstack up"; }
set -a
# shellcheck source=/dev/null
source "$stack/devstack.env"
set +a
"$imspool" migrate >/dev/null

# ---- the WAF: a portal client (anonymous sessions get pooled identities) and the eP-CSCF's
# service client (lease API) -------------------------------------------------------------
openssl rand -hex 32 >"$stack/kek.hex"
openssl rand -hex 32 >"$stack/server-key.hex"
secret() { openssl rand -base64 33 | tr '+/' '-_'; }
mac() { printf %s "$1" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(cat "$stack/server-key.hex")" | sed 's/^.*= //'; }
"$imspool" pool create anon --realm home1.net --lease-ttl 600 --quarantine 0 >/dev/null
"$imspool" member add anon --impu 'sip:anon-{10..49}@home1.net' --impi 'anon-{10..49}@home1.net' >/dev/null
portal_secret=$(secret) ep_secret=$(secret)
psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -v portal="\\x$(mac "$portal_secret")" \
    -v ep="\\x$(mac "$ep_secret")" <<'SQL'
INSERT INTO oauth_clients (client_id, name, client_type, grant_types, scopes, audience, secret_mac, allow_pool)
  VALUES ('portal', 'portal', 'confidential', '{urn:ietf:params:oauth:grant-type:token-exchange}',
          '{ims}', 'epcscf.home1.net', :'portal', 'anon');
INSERT INTO oauth_clients (client_id, name, client_type, grant_types, scopes, audience, secret_mac)
  VALUES ('epcscf', 'eP-CSCF', 'confidential', '{client_credentials}', '{ims.lease}',
          'epcscf.home1.net', :'ep');
SQL

wport=$(free_port) waport=$(free_port)
issuer="http://127.0.0.1:$wport"
# A script, so the fault test can start the WAF again after stopping it.
cat >"$stack/start-waf.sh" <<EOS
#!/usr/bin/env bash
WAF_ISSUER=$issuer WAF_PUBLIC_LISTEN=127.0.0.1:$wport WAF_ADMIN_LISTEN=127.0.0.1:$waport \\
    WAF_DATABASE_URL='$DATABASE_URL' WAF_REDIS_URL='$REDIS_URL' WAF_KEYS_KEK_FILE=$stack/kek.hex \\
    WAF_SECRETS_SERVER_KEY_FILE=$stack/server-key.hex \\
    WAF_BOOTSTRAP_ADMIN_CLIENT_SECRET='$(secret)' WAF_TOKEN_LIFETIME=600 \\
    '$waf' >>'$stack/waf.log' 2>&1 &
echo \$! >>'$stack/waf.pids'
for _ in \$(seq 1 100); do
    curl -fsS '$issuer/healthz' >/dev/null 2>&1 && exit 0
    sleep 0.1
done
exit 1
EOS
chmod +x "$stack/start-waf.sh"
"$stack/start-waf.sh" || fail "waf-server not answering at $issuer"

# ---- the IMS core stand-in ---------------------------------------------------------------
kport=$(free_port)
kamailio -DD -E -f "$src/tests/ims-core/kamailio.cfg" -l "udp:127.0.0.1:$kport" \
    -l "tcp:127.0.0.1:$kport" -Y "$stack" -P "$stack/kamailio.pid" -m 32 -M 8 \
    >"$stack/kamailio.log" 2>&1 &
pids+=($!)
kamailio_pid=${pids[-1]}

# ---- the eP-CSCF: WS and WSS (self-signed certificate) ------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$stack/wss.key" -out "$stack/wss.crt" 2>/dev/null
wsport=$(free_port) wssport=$(free_port) hport=$(free_port) pageport=$(free_port)
mwport=$(free_port_pair)
cat >"$stack/epcscf.conf" <<EOF
ws.listen = 127.0.0.1:$wsport
wss.listen = 127.0.0.1:$wssport
wss.cert = $stack/wss.crt
wss.key = $stack/wss.key
ws.allowed_origins = http://127.0.0.1:$pageport
ws.ping_interval = 120
ws.max_connections_per_ip = 5000
ws.ping_timeout = 30
mw.listen = 127.0.0.1:$mwport
mw.next_hop = 127.0.0.1:$kport
mw.transaction_timeout = 8000
ims.realm = home1.net
token.issuer = $issuer
token.audience = epcscf.home1.net
token.jwks_url = $issuer/jwks.json
revocation.redis_url = $REDIS_URL
waf.url = $issuer
waf.client_id = epcscf
waf.client_secret = $ep_secret
http.listen = 127.0.0.1:$hport
workers = 2
EOF
"$ep" -c "$stack/epcscf.conf" --check-config >/dev/null || fail "epcscf-ref --check-config"
# Full stacks for LeakSanitizer so tests/lsan.supp can name the library frame it suppresses.
ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:fast_unwind_on_malloc=0" \
    LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$src/tests/lsan.supp}" \
    "$ep" -c "$stack/epcscf.conf" >"$stack/epcscf.log" 2>&1 &
pids+=($!)
ep_pid=${pids[-1]}
wait_http "http://127.0.0.1:$hport/healthz" "$ep_pid" epcscf-ref

export E2E_WAF="$issuer" E2E_PORTAL_SECRET="$portal_secret" E2E_WS_PORT=$wsport
export E2E_WSS_PORT=$wssport E2E_HTTP="http://127.0.0.1:$hport" E2E_ORIGIN="http://127.0.0.1:$pageport"
export E2E_KAMAILIO_LOG="$stack/kamailio.log" E2E_EPCSCF_LOG="$stack/epcscf.log" E2E_EPCSCF_PID=$ep_pid
python3 "$src/tests/epcscf/test_epcscf_e2e.py" || fail "test_epcscf_e2e.py"

if [[ ${E2E_BROWSER:-1} != 0 ]]; then
    tok() {
        curl -fsS -u "portal:$portal_secret" \
            -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
            -d subject_token_type=urn:webrtc-ims:params:oauth:token-type:anonymous-session \
            -d "subject_token=session-$(openssl rand -hex 12)" "$issuer/token"
    }
    field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
    for url in "ws://127.0.0.1:$wsport" "wss://127.0.0.1:$wssport"; do
        a=$(tok) b=$(tok)
        WSS_URL=$url SIP_DOMAIN=home1.net PAGE_PORT=$pageport \
            IMPU_A=$(field "$a" impu) TOKEN_A=$(field "$a" access_token) \
            IMPU_B=$(field "$b" impu) TOKEN_B=$(field "$b" access_token) \
            AFTER_B_CLOSED="grep -q 'REGISTER $(field "$b" impu) .*expires: 0 ' $stack/kamailio.log" \
            node --test --test-reporter=spec "$src/tests/js/wic-browser.test.mjs" \
            >"$stack/browser.log" 2>&1 || { cat "$stack/browser.log" >&2; fail "browser WICs over $url"; }
        grep -q '^ℹ pass [1-9]' "$stack/browser.log" && grep -q '^ℹ fail 0' "$stack/browser.log" ||
            { cat "$stack/browser.log" >&2; fail "browser WICs over $url: no passing tests"; }
        echo "browser WICs over $url: $(grep '^ℹ pass' "$stack/browser.log")"
    done
    grep -q 'ims-core: INVITE to ' "$stack/kamailio.log" || fail "no INVITE reached the IMS core"
fi

# Mw over TCP: a second eP-CSCF on the same WAF, Redis and core.
tcp_ws=$(free_port) tcp_http=$(free_port) tcp_mw=$(free_port_pair)
sed -e "s/^ws.listen = .*/ws.listen = 127.0.0.1:$tcp_ws/" -e '/^wss\./d' \
    -e "s/^mw.listen = .*/mw.listen = 127.0.0.1:$tcp_mw/" \
    -e "s/^http.listen = .*/http.listen = 127.0.0.1:$tcp_http/" "$stack/epcscf.conf" >"$stack/epcscf-tcp.conf"
# ... which also pings idle WebSockets every 2 s and drops them 2 s later without a pong.
sed -i -e 's/^ws.ping_interval = .*/ws.ping_interval = 2/' \
    -e 's/^ws.ping_timeout = .*/ws.ping_timeout = 2/' "$stack/epcscf-tcp.conf"
echo "mw.transport = tcp" >>"$stack/epcscf-tcp.conf"
ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:fast_unwind_on_malloc=0" \
    LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$src/tests/lsan.supp}" \
    "$ep" -c "$stack/epcscf-tcp.conf" >"$stack/epcscf-tcp.log" 2>&1 &
pids+=($!)
tcp_pid=${pids[-1]}
wait_http "http://127.0.0.1:$tcp_http/healthz" "$tcp_pid" "epcscf-ref (Mw TCP)"
E2E_WS_PORT=$tcp_ws E2E_HTTP="http://127.0.0.1:$tcp_http" \
    python3 "$src/tests/epcscf/test_epcscf_mwtcp.py" || fail "test_epcscf_mwtcp.py"
kill -TERM "$tcp_pid"
wait "$tcp_pid" || { tail -20 "$stack/epcscf-tcp.log" >&2; fail "epcscf-ref (Mw TCP) did not stop cleanly"; }

# Faults last: they stop the WAF, restart Redis and stop the IMS core.
export E2E_WAF_PID=$(head -1 "$stack/waf.pids") E2E_KAMAILIO_PID=$kamailio_pid
export E2E_WAF_START="$stack/start-waf.sh"
export E2E_REDIS_RESTART="DEVSTACK_DIR=$stack $devstack restart redis >/dev/null"
export E2E_REDIS_PIDFILE="$stack/redis/redis.pid"
python3 "$src/tests/epcscf/test_epcscf_faults.py" || fail "test_epcscf_faults.py"

kill -TERM "$ep_pid"
wait "$ep_pid" || fail "epcscf-ref did not stop cleanly (exit $?)"
echo "epcscf e2e: ok"
