#!/usr/bin/env bash
# Starts the IMS core stand-in (tests/ims-core/kamailio.cfg, Debian's Kamailio 5.6) on a
# free loopback port in a temp dir, runs test_ims_core.py against it over SIP/UDP, checks
# in Kamailio's log that REGISTERs reached it with their Authorization headers (and that the
# refused Bearer one was logged as such), and stops it.
# usage: test-ims-core.sh SOURCE_DIR
set -euo pipefail
src=$1
here=$src/tests/ims-core
command -v kamailio >/dev/null || { echo "kamailio not installed (scripts/install-deps)" >&2; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -20 "$tmp/kamailio.log" >&2; exit 1; }
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
kamailio -c -f "$here/kamailio.cfg" >"$tmp/check.log" 2>&1 || { cat "$tmp/check.log" >&2; exit 1; }
kamailio -DD -E -f "$here/kamailio.cfg" -l "udp:127.0.0.1:$port" -l "tcp:127.0.0.1:$port" \
    -Y "$tmp" -P "$tmp/kamailio.pid" -m 32 -M 8 >"$tmp/kamailio.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    grep -q "INFO: <core> \[core/tcp_main.c" "$tmp/kamailio.log" 2>/dev/null && break
    python3 - "$port" <<'PY' && break
import socket, sys
s = socket.socket(); s.settimeout(0.2)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
    kill -0 "$pid" 2>/dev/null || fail "kamailio exited at start"
    sleep 0.1
done
python3 "$here/test_ims_core.py" "$port" || fail "test_ims_core.py"
grep -q 'ims-core: REGISTER sip:alice@home1.net .*integrity-protected="auth-done"' "$tmp/kamailio.log" \
    || fail "the TNA REGISTER is not in the log"
grep -q 'ims-core: REGISTER sip:alice@home1.net .*authorization: Bearer' "$tmp/kamailio.log" \
    || fail "the refused Bearer REGISTER is not in the log"
kill -TERM "$pid"
wait "$pid" || true
pid=
echo "ims-core stand-in: ok"
