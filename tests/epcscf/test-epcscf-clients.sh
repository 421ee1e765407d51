#!/usr/bin/env bash
# The eP-CSCF's two clients of the WAF against real servers: the revocation feed
# (epcscf-ref/src/revfeed.c, tests/test_revfeed.c) and the lease API client
# (epcscf-ref/src/lease.c, tests/test_lease.c).
#
# Starts a private dev stack (PostgreSQL, Redis: scripts/devstack with a DEVSTACK_DIR of its
# own, so the test may kill and restart Redis), a waf-server on it (default revoked set
# imsauth:revoked, so its feed is imsauth:revoked:feed), an eP-CSCF client allowed the
# scope ims.lease and one that is not, and a pool with open leases (imspool); exports what
# the tests need (below) and runs the Criterion binaries, each with --jobs 1. Everything is
# stopped and removed at the end, on failure too.
#
# usage: test-epcscf-clients.sh BUILD_DIR SOURCE_DIR [TEST_BINARY...]
#   (default: BUILD_DIR/epcscf-ref/epcscf_test_revfeed and epcscf_test_lease)
# Exported: DATABASE_URL REDIS_URL (private stack), EP_TEST_WAF_URL, EP_TEST_CLIENT_ID,
#   EP_TEST_CLIENT_SECRET, EP_TEST_NOSCOPE_ID, EP_TEST_NOSCOPE_SECRET, EP_TEST_ODD_ID,
#   EP_TEST_ODD_SECRET, EP_TEST_POOL,
#   EP_TEST_LEASES (four open lease ids), EP_TEST_IMSPOOL, EP_TEST_REDIS_KILL (SIGKILL to
#   redis-server), EP_TEST_REDIS_START (start it again on the same port), EP_TEST_REDIS_PAUSE
#   and EP_TEST_REDIS_RESUME (SIGSTOP and SIGCONT: a Redis that is silent, not gone).
set -euo pipefail
build=$1 src=$2
shift 2
bins=("$@")
((${#bins[@]})) || bins=("$build/epcscf-ref/epcscf_test_revfeed" "$build/epcscf-ref/epcscf_test_lease")
waf=$build/waf-server/waf-server
imspool=$build/pool-manager/imspool
devstack=$src/scripts/devstack
for b in "$waf" "$imspool" "${bins[@]}"; do
    [[ -x $b ]] || { echo "FAIL: no $b (build it first)" >&2; exit 1; }
done

stack=$(mktemp -d /tmp/epcscf-clients.XXXXXX)
chmod 755 "$stack" # PostgreSQL runs as user postgres when we are root
waf_pid=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $waf_pid ]]; then
        kill -TERM "$waf_pid" 2>/dev/null && wait "$waf_pid" 2>/dev/null
    fi
    if ((rc != 0)) && [[ -s $stack/waf.log ]]; then
        echo "---- waf-server log (last lines) ----" >&2
        tail -n 20 "$stack/waf.log" >&2
    fi
    if [[ -s $stack/redis/redis.pid ]]; then # a test may have left it stopped
        kill -CONT "$(cat "$stack/redis/redis.pid")" 2>/dev/null || true
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

DEVSTACK_DIR=$stack "$devstack" up >"$stack/devstack-up.log" 2>&1 ||
    { cat "$stack/devstack-up.log" >&2; fail "devstack up"; }
set -a
# shellcheck source=/dev/null
source "$stack/devstack.env"
set +a
"$imspool" migrate >/dev/null

# The eP-CSCF's client (scope ims.lease) and a service client without that scope, their
# secrets stored as the admin API stores them (HMAC under the server key).
openssl rand -hex 32 >"$stack/kek.hex"
openssl rand -hex 32 >"$stack/server-key.hex"
secret() { openssl rand -base64 33 | tr '+/' '-_'; }
mac() { printf %s "$1" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(cat "$stack/server-key.hex")" | sed 's/^.*= //'; }
# A third eP-CSCF client has characters in its secret that the Basic credentials
# carry form-encoded (RFC 6749 2.3.1).
ep_secret=$(secret)
other_secret=$(secret)
odd_id='ep.cscf~1' odd_secret="p%2B+ /:$(secret)"
psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -v ep="\\x$(mac "$ep_secret")" \
    -v other="\\x$(mac "$other_secret")" -v odd_id="$odd_id" -v odd="\\x$(mac "$odd_secret")" <<'SQL'
INSERT INTO oauth_clients (client_id, name, client_type, grant_types, scopes, audience, secret_mac)
  VALUES ('epcscf', 'eP-CSCF', 'confidential', '{client_credentials}', '{ims.lease}',
          'epcscf.home1.net', :'ep'),
         ('other', 'no lease scope', 'confidential', '{client_credentials}', '{ims}',
          'epcscf.home1.net', :'other'),
         (:'odd_id', 'eP-CSCF, odd credentials', 'confidential', '{client_credentials}',
          '{ims.lease}', 'epcscf.home1.net', :'odd');
SQL

# A pool whose leases are allocated for 60 s (a renewal through the WAF takes the pool's
# 600 s, which the lease test sees in expires_ms).
"$imspool" pool create anon --realm home1.net --lease-ttl 600 --quarantine 0 >/dev/null
"$imspool" member add anon --impu 'sip:anon-{1..6}@home1.net' --impi 'anon-{1..6}@home1.net' >/dev/null
leases=
for h in 1 2 3 4; do
    l=$("$imspool" --json allocate anon --holder "test-$h" --ttl 60 |
        sed -n 's/.*"lease":"\([0-9a-f-]*\)".*/\1/p')
    [[ -n $l ]] || fail "no lease allocated"
    leases="$leases $l"
done

port=$(free_port)
aport=$(free_port)
WAF_ISSUER="http://127.0.0.1:$port" WAF_PUBLIC_LISTEN="127.0.0.1:$port" \
    WAF_ADMIN_LISTEN="127.0.0.1:$aport" WAF_DATABASE_URL="$DATABASE_URL" \
    WAF_REDIS_URL="$REDIS_URL" WAF_KEYS_KEK_FILE="$stack/kek.hex" \
    WAF_SECRETS_SERVER_KEY_FILE="$stack/server-key.hex" \
    WAF_BOOTSTRAP_ADMIN_CLIENT_SECRET="$(secret)" \
    WAF_TOKEN_EPCSCF_WSS_URL="wss://epcscf.home1.net:7443/ws" WAF_TOKEN_WWSF="https://wwsf.home1.net" \
    "$waf" >"$stack/waf.log" 2>&1 &
waf_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$waf_pid" 2>/dev/null || fail "waf-server exited at start"
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || fail "waf-server not answering"

export EP_TEST_WAF_URL="http://127.0.0.1:$port"
export EP_TEST_CLIENT_ID=epcscf EP_TEST_CLIENT_SECRET="$ep_secret"
export EP_TEST_NOSCOPE_ID=other EP_TEST_NOSCOPE_SECRET="$other_secret"
export EP_TEST_ODD_ID="$odd_id" EP_TEST_ODD_SECRET="$odd_secret"
export EP_TEST_POOL=anon EP_TEST_LEASES="${leases# }" EP_TEST_IMSPOOL="$imspool"
export EP_TEST_REDIS_KILL="kill -KILL \$(cat '$stack/redis/redis.pid')"
export EP_TEST_REDIS_START="DEVSTACK_DIR='$stack' '$devstack' restart redis >/dev/null 2>&1"
export EP_TEST_REDIS_PAUSE="kill -STOP \$(cat '$stack/redis/redis.pid')"
export EP_TEST_REDIS_RESUME="kill -CONT \$(cat '$stack/redis/redis.pid')"

for b in "${bins[@]}"; do
    echo "== ${b##*/}"
    "$b" --jobs 1 || fail "${b##*/}"
done
for s in "$ep_secret" "$odd_secret"; do
    if grep -qF -- "$s" "$stack/waf.log"; then fail "a client secret in the WAF log"; fi
done
echo "eP-CSCF clients against a private stack and waf-server: ${bins[*]##*/}: ok"
