#!/usr/bin/env bash
# The eP-CSCF benchmark (bench/README.md, "epcscf"): REGISTERs per second through epcscf-ref
# (every token verified) and through Kamailio's own websocket module in front of the same
# registrar (no token check), over WS and WSS, in alternating rounds of one run; then the
# memory of idle registered connections of each server (PSS from /proc/PID/smaps_rollup).
#
# Everything runs in a temp dir on free loopback ports and is stopped at the end, on error and
# on interrupt too. Each idle phase gets freshly started servers (the IMS core stand-in too),
# so one phase's freed memory does not hide another's.
#
# usage: bench/epcscf_bench.sh [SECONDS]   (seconds counted per round, default 10)
# Needs a release build (make build-release, or EPCSCFBENCH_BUILD=DIR) and kamailio with the
# tls and websocket modules (scripts/install-deps). Knobs (environment; not EPCSCF_*, which
# epcscf-ref reads as its own configuration and refuses when unknown):
#   EPCSCFBENCH_CONNS        connections per target in the rate rounds (100)
#   EPCSCFBENCH_ROUNDS       alternating rounds (3), EPCSCFBENCH_WARMUP seconds (3)
#   EPCSCFBENCH_FRESH_EVERY  a new registration with a fresh token every K REGISTERs (2)
#   EPCSCFBENCH_IDLE_CONNS   idle connections per server and transport (10000)
#   EPCSCFBENCH_HOLD         seconds the idle connections are held (10)
#   EPCSCFBENCH_IDLE_RETRY_CONNS  when Kamailio fails an idle phase, it is measured again at
#                            this size (1000; 0: no retry)
#   EPCSCFBENCH_RAMP         handshakes (and liveness re-REGISTERs) in flight in the idle phase (100)
#   EPCSCFBENCH_WORKERS      epcscf-ref workers (nproc)
#   EPCSCFBENCH_CORE_CHILDREN  UDP children of the IMS core stand-in (4)
#   EPCSCFBENCH_KAMAILIO_SHM shared memory of Kamailio's proxy in MB (2048)
#   EPCSCFBENCH_KAMAILIO_DEBUG its log level (0; 2 logs every REGISTER and closed WebSocket)
#   EPCSCFBENCH_PHASES       "rate idle" (default), or one of them
#   EPCSCFBENCH_IDLE_TARGETS "ep-ws ep-wss kam-ws kam-wss" (default) or a subset
#   EPCSCFBENCH_BUILD        build dir (build/release), EPCSCFBENCH_KEEP=1 keeps the logs
# Last line: one JSON object, the required keys last:
#   {...,"conns":N,"epcscf_reg_per_s":X,"kamailio_reg_per_s":Y,"ratio":R,
#    "kib_per_idle_ws_conn":W,"kib_per_idle_wss_conn":M}
# Exit 1 when the eP-CSCF had any error (Kamailio's errors are reported, not fatal).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(dirname "$here")
build=${EPCSCFBENCH_BUILD:-$src/build/release}
bench=$build/bench/epcscf_bench
ep=$build/epcscf-ref/epcscf-ref
seconds=${1:-10}
conns=${EPCSCFBENCH_CONNS:-100}
rounds=${EPCSCFBENCH_ROUNDS:-3}
warmup=${EPCSCFBENCH_WARMUP:-3}
fresh=${EPCSCFBENCH_FRESH_EVERY:-2}
idle=${EPCSCFBENCH_IDLE_CONNS:-10000}
ramp=${EPCSCFBENCH_RAMP:-100}
retry=${EPCSCFBENCH_IDLE_RETRY_CONNS:-1000}
hold=${EPCSCFBENCH_HOLD:-10}
workers=${EPCSCFBENCH_WORKERS:-$(nproc)}
core_children=${EPCSCFBENCH_CORE_CHILDREN:-4}
kam_shm=${EPCSCFBENCH_KAMAILIO_SHM:-2048}
kam_debug=${EPCSCFBENCH_KAMAILIO_DEBUG:-0}
phases=${EPCSCFBENCH_PHASES:-rate idle}
idle_targets=${EPCSCFBENCH_IDLE_TARGETS:-ep-ws ep-wss kam-ws kam-wss}
for b in "$bench" "$ep"; do
    [[ -x $b ]] || { echo "epcscf_bench: no $b (make build-release)" >&2; exit 2; }
done
for tool in kamailio openssl python3 curl; do
    command -v "$tool" >/dev/null || { echo "epcscf_bench: $tool not installed (scripts/install-deps)" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/epcscf-bench.XXXXXX)
pids=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    if [[ ${EPCSCFBENCH_KEEP:-0} == 1 ]]; then
        echo "# logs kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_ports() { # N [K]: N distinct free TCP+UDP ports on 127.0.0.1; the first one followed by K more
    python3 - "$@" <<'PY'
import socket, sys
n, extra = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0
def free(p, kinds=(socket.SOCK_STREAM, socket.SOCK_DGRAM)):
    for kind in kinds:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            return False
        finally:
            s.close()
    return True
out, held = [], []
while len(out) < n:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
    p = s.getsockname()[1]
    if p in out or not free(p, (socket.SOCK_DGRAM,)):
        continue
    if not out and not all(p + i < 65536 and free(p + i) for i in range(1, extra + 1)):
        continue
    out.append(p)
print(*out)
PY
}
wait_port() { # PORT PID WHAT
    for _ in $(seq 1 200); do
        python3 - "$1" <<'PY' && return 0
import socket, sys
s = socket.socket(); s.settimeout(0.2)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
        kill -0 "$2" 2>/dev/null || { echo "epcscf_bench: $3 exited at start" >&2; tail -20 "$tmp/$phase.$3.log" >&2; exit 2; }
        sleep 0.05
    done
    echo "epcscf_bench: $3 does not listen on $1" >&2
    exit 2
}
stop() { # PID: TERM, wait, forget
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local keep=()
    for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}

# ---- keys: the WSS certificate (both servers) and the token signing key ---------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/wss.key" -out "$tmp/wss.crt" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/signing.pem" 2>/dev/null
"$bench" jwks "$tmp/signing.pem" bench-key >"$tmp/jwks.json"
issuer=https://waf.bench.invalid audience=epcscf.home1.net origin=https://wwsf.home1.net
common=(--key "$tmp/signing.pem" --kid bench-key --issuer "$issuer" --audience "$audience"
    --domain home1.net --origin "$origin")

# ---- the servers ---------------------------------------------------------------------------
core_pid='' core_port='' ep_pid='' ep_ws='' ep_wss='' ep_http='' kam_pid='' kam_port=''
start_core() {
    read -r core_port < <(free_ports 1)
    mkdir -p "$tmp/core"
    # --debug=0: the per-REGISTER NOTICE line of the test configuration is not written (the
    # same for both proxies); -n: UDP children (the stand-in must not be the bottleneck).
    kamailio -DD -E -f "$src/tests/ims-core/kamailio.cfg" -l "udp:127.0.0.1:$core_port" \
        -l "tcp:127.0.0.1:$core_port" -Y "$tmp/core" -P "$tmp/core/pid" -w "$tmp/core" -m 512 -M 16 \
        --debug=0 -n "$core_children" >"$tmp/$phase.core.log" 2>&1 &
    core_pid=$!
    pids+=("$core_pid")
    wait_port "$core_port" "$core_pid" core
}
start_ep() {
    local mw http
    read -r mw < <(free_ports 1 "$((workers - 1))")
    read -r ep_ws ep_wss http < <(free_ports 3)
    cat >"$tmp/epcscf.conf" <<EOF
ws.listen = 127.0.0.1:$ep_ws
wss.listen = 127.0.0.1:$ep_wss
wss.cert = $tmp/wss.crt
wss.key = $tmp/wss.key
ws.allowed_origins = $origin
ws.max_connections = 30000
ws.max_connections_per_ip = 30000
ws.ping_interval = 0
mw.listen = 127.0.0.1:$mw
mw.next_hop = 127.0.0.1:$core_port
ims.realm = home1.net
token.issuer = $issuer
token.audience = $audience
token.jwks_file = $tmp/jwks.json
http.listen = 127.0.0.1:$http
workers = $workers
log.level = warning
EOF
    "$ep" -c "$tmp/epcscf.conf" >"$tmp/$phase.epcscf.log" 2>&1 &
    ep_pid=$!
    pids+=("$ep_pid")
    ep_http=http://127.0.0.1:$http
    # /healthz, not a TCP probe of the WebSocket ports (a connection closed before it is
    # adopted is logged as a warning); the listeners are up before the operations listener.
    for _ in $(seq 1 200); do
        curl -fsS "$ep_http/healthz" >/dev/null 2>&1 && return 0
        kill -0 "$ep_pid" 2>/dev/null || { echo "epcscf_bench: epcscf-ref exited at start" >&2; tail -20 "$tmp/$phase.epcscf.log" >&2; exit 2; }
        sleep 0.05
    done
    echo "epcscf_bench: epcscf-ref does not answer $ep_http/healthz" >&2
    exit 2
}
# start_kam ws|wss: one instance of Kamailio's proxy for one transport (a WSS instance has
# the TLS defines; its WS listener is not used). Two instances, so that a crash of the TLS
# side (kamailio#3791, see bench/README.md) does not take the WS baseline with it. Sets
# kam_pid and kam_port; the log is $tmp/$phase.kamailio-TRANSPORT.log.
start_kam() {
    local tr=$1 sip ws wss tls=()
    read -r sip ws wss < <(free_ports 3)
    mkdir -p "$tmp/kam-$tr" # also its working dir: a core dump of a crash lands there
    [[ $tr == wss ]] && tls=(-A "TLS_CERT=\"$tmp/wss.crt\"" -A "TLS_KEY=\"$tmp/wss.key\"")
    kamailio -DD -E -f "$here/epcscf-kamailio-ws.cfg" -A "SIP_PORT=$sip" -A "WS_PORT=$ws" \
        -A "WSS_PORT=$wss" "${tls[@]}" -A "REGISTRAR=\"sip:127.0.0.1:$core_port\"" \
        -A MAX_CONNS=30000 --debug="$kam_debug" -Y "$tmp/kam-$tr" -P "$tmp/kam-$tr/pid" \
        -w "$tmp/kam-$tr" -m "$kam_shm" -M 16 >"$tmp/$phase.kamailio-$tr.log" 2>&1 &
    kam_pid=$!
    pids+=("$kam_pid")
    kam_port=$ws
    [[ $tr == wss ]] && kam_port=$wss
    wait_port "$kam_port" "$kam_pid" "kamailio-$tr"
}
# The eP-CSCF's token and transaction counters (what it verified and answered).
ep_metrics() {
    curl -fsS "$ep_http/metrics" 2>/dev/null |
        grep -E '^epcscf_(token_checks_total|transactions_total\{method="REGISTER"|ws_refused_total|ws_closed_total)' |
        grep -v ' 0$' | sed 's/^/#   /' || true
}
log_tail() { # NAME: the server's warnings and errors so far, if any (Kamailio's note about
    # an OpenSSL workaround at start-up is not one)
    local pat='error|warn|crit|segfault|signal' skip='openssl bug #1491'
    if grep -iE "$pat" "$tmp/$phase.$1.log" 2>/dev/null | grep -qv "$skip"; then
        echo "# $1 log (warnings/errors, last 10):"
        grep -iE "$pat" "$tmp/$phase.$1.log" | grep -v "$skip" | tail -10 | sed 's/^/#   /'
    fi
}

rc=0
results=()
run() { # NAME ARGS...: runs the load generator, keeps its last line
    local name=$1
    shift
    local r=0
    "$bench" "$@" | tee "$tmp/$name.out" || r=$? # pipefail: the generator's status
    results+=("$name=$(tail -1 "$tmp/$name.out")")
    return "$r"
}

# ---- rate: alternating rounds --------------------------------------------------------------
phase=rate # names the logs: $tmp/$phase.{core,epcscf,kamailio-ws,kamailio-wss}.log
if [[ " $phases " == *" rate "* ]]; then
    start_core
    start_ep
    start_kam ws
    kws_pid=$kam_pid kws_port=$kam_port
    start_kam wss
    kwss_pid=$kam_pid kwss_port=$kam_port
    echo "# rate phase: epcscf-ref pid $ep_pid ($workers workers), Kamailio pids $kws_pid (WS) and $kwss_pid (WSS), core pid $core_pid ($core_children UDP children)"
    if ! run rate rate --ep-ws "127.0.0.1:$ep_ws" --ep-wss "127.0.0.1:$ep_wss" \
        --kam-ws "127.0.0.1:$kws_port" --kam-wss "127.0.0.1:$kwss_port" --ep-pid "$ep_pid" \
        --kam-pid "$kws_pid" --kam-wss-pid "$kwss_pid" --core-pid "$core_pid" --conns "$conns" \
        --seconds "$seconds" --warmup "$warmup" --rounds "$rounds" --fresh-every "$fresh" \
        --prefix r "${common[@]}"; then
        rc=1
    fi
    echo "# epcscf-ref counters after the rate phase:"
    ep_metrics
    kill -0 "$ep_pid" 2>/dev/null || { echo "# ERROR: epcscf-ref exited"; rc=1; }
    kill -0 "$kws_pid" 2>/dev/null || echo "# WARNING: Kamailio (WS) exited"
    kill -0 "$kwss_pid" 2>/dev/null || echo "# WARNING: Kamailio (WSS) exited"
    log_tail epcscf
    log_tail kamailio-ws
    log_tail kamailio-wss
    stop "$kws_pid"
    stop "$kwss_pid"
    stop "$ep_pid"
    stop "$core_pid"
fi

# ---- idle: fresh servers per server and transport ------------------------------------------
# idle_phase TARGET CONNS NAME: one idle measurement with freshly started servers; fails when
# the generator saw errors.
idle_phase() {
    local t=$1 n=$2 name=$3 port spid r=0 target
    phase=$name
    start_core
    case $t in
    ep-ws | ep-wss)
        start_ep
        port=$ep_ws
        [[ $t == ep-wss ]] && port=$ep_wss
        target=(--"$t" "127.0.0.1:$port" --ep-pid "$ep_pid")
        spid=$ep_pid
        ;;
    kam-ws | kam-wss)
        start_kam "${t#kam-}"
        target=(--"$t" "127.0.0.1:$kam_port" --kam-pid "$kam_pid")
        spid=$kam_pid
        ;;
    *)
        echo "epcscf_bench: unknown idle target $t" >&2
        exit 2
        ;;
    esac
    sleep 1 # let the fresh server settle before its PSS is read
    echo "# idle phase $t, $n connections: server pid $spid"
    run "$name" idle "${target[@]}" --conns "$n" --hold "$hold" --ramp "$ramp" \
        --prefix "${t//-/}" "${common[@]}" || r=1
    if [[ $t == ep-* ]]; then
        ep_metrics
        kill -0 "$spid" 2>/dev/null || { echo "# ERROR: epcscf-ref exited"; r=1; }
        log_tail epcscf
        stop "$ep_pid"
    else
        kill -0 "$spid" 2>/dev/null || echo "# WARNING: Kamailio exited"
        log_tail "kamailio-${t#kam-}"
        stop "$kam_pid"
    fi
    stop "$core_pid"
    return "$r"
}

if [[ " $phases " == *" idle "* ]]; then
    for t in $idle_targets; do
        if ! idle_phase "$t" "$idle" "idle-$t"; then
            if [[ $t == ep-* ]]; then
                rc=1
            elif ((retry > 0 && retry < idle)); then
                # Kamailio failed at this size: measure what it holds at a smaller one.
                echo "# WARNING: Kamailio failed the idle phase $t at $idle connections; again with $retry"
                idle_phase "$t" "$retry" "retry-$t" || true
            fi
        fi
    done
fi

# ---- the last line -------------------------------------------------------------------------
python3 - "$conns" "$idle" "${results[@]}" <<'PY'
import json, sys
conns, idle = int(sys.argv[1]), int(sys.argv[2])
res = {}
for arg in sys.argv[3:]:
    name, _, line = arg.partition("=")
    try:
        res[name] = json.loads(line)
    except ValueError:
        res[name] = None
rate = res.get("rate") or {}
out = {}
for k in ("fresh_every", "rounds", "seconds"):
    if k in rate:
        out[k] = rate[k]
for k, v in rate.items():
    if k.endswith("_cpu_us_per_reg"):
        out[k] = v
errors = {k[:-len("_errors")]: v for k, v in rate.items() if k.endswith("_errors") and v}
out["idle_conns"] = idle
for t in ("ep-ws", "ep-wss", "kam-ws", "kam-wss"):
    r = res.get("idle-" + t)
    if r is None:
        continue
    if r.get("errors"):
        errors["idle_" + t.replace("-", "_")] = r["errors"]
    if r.get("registered") != idle or r.get("alive") != idle or not r.get("server_running"):
        out["idle_" + t.replace("-", "_")] = {
            k: r.get(k) for k in ("registered", "alive", "server_running", "first_error", "open_at_pss")}
    if t.startswith("kam"):
        out["kamailio_kib_per_idle_" + t[4:] + "_conn"] = r.get("kib_per_conn")
        again = res.get("retry-" + t)
        if again is not None:
            out["kamailio_" + t[4:] + "_idle_retry"] = {
                k: again.get(k) for k in ("conns", "registered", "alive", "server_running",
                                          "errors", "kib_per_conn")}
out["errors"] = errors
out["epcscf_wss_reg_per_s"] = rate.get("epcscf_wss_reg_per_s")
out["kamailio_wss_reg_per_s"] = rate.get("kamailio_wss_reg_per_s")
out["wss_ratio"] = rate.get("wss_ratio")
out["conns"] = conns
out["epcscf_reg_per_s"] = rate.get("epcscf_reg_per_s")
out["kamailio_reg_per_s"] = rate.get("kamailio_reg_per_s")
out["ratio"] = rate.get("ratio")
out["kib_per_idle_ws_conn"] = (res.get("idle-ep-ws") or {}).get("kib_per_conn")
out["kib_per_idle_wss_conn"] = (res.get("idle-ep-wss") or {}).get("kib_per_conn")
print(json.dumps(out, separators=(",", ":")))
PY
exit "$rc"
