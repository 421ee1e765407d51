#!/usr/bin/env bash
# Black-box test of waf-server's admin REST API (/admin/v1/, docs/openapi.yaml) with two
# instances of one deployment on the dev stack's PostgreSQL and Redis, in a database of
# its own: authentication, CRUD of every resource, bad input (invalid JSON, media types,
# sizes, SQL metacharacters in every field, each refused or stored verbatim and nothing
# else written), key rotation (tokens signed before and after verify at /introspect and
# with jose against /jwks.json on both instances), and the OpenAPI consistency check
# (waf-server --routes against the document, every documented route answered)
# (tests/js/waf-admin.test.mjs). No secret or token may reach the logs; both instances stop
# cleanly on SIGTERM (LeakSanitizer runs at exit in the sanitizer build).
# usage: test-waf-admin.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
bin=$build/waf-server/waf-server
imspool=$build/pool-manager/imspool
: "${DATABASE_URL:?run under scripts/devstack (DATABASE_URL)}"
: "${REDIS_URL:?run under scripts/devstack (REDIS_URL)}"
db="waf_admin_$$"
tmp=$(mktemp -d)
pid='' pid2=''
cleanup() {
    for p in $pid $pid2; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli -u "$REDIS_URL" DEL "$db:revoked" "$db:revoked:exp" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$tmp"/waf*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
    exit 1
}

url=$("$src/scripts/devstack" db "$db")
"$imspool" --db "$url" migrate >/dev/null
openssl rand -hex 32 >"$tmp/kek.hex"
openssl rand -hex 32 >"$tmp/server-key.hex"
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
port=$(free_port) aport=$(free_port) port2=$(free_port) aport2=$(free_port)
admin_secret=$(openssl rand -base64 33 | tr '+/' '-_')

export WAF_ISSUER="http://127.0.0.1:$port"
export WAF_DATABASE_URL="$url" WAF_REDIS_URL="$REDIS_URL"
export WAF_KEYS_KEK_FILE="$tmp/kek.hex" WAF_SECRETS_SERVER_KEY_FILE="$tmp/server-key.hex"
export WAF_BOOTSTRAP_ADMIN_CLIENT_SECRET="$admin_secret"
export WAF_REDIS_REVOKED_KEY="$db:revoked"
export WAF_KEYS_OVERLAP=3 # a rotated key signs 3 s after it is published (test only)

start() { # public-port admin-port log
    WAF_PUBLIC_LISTEN="127.0.0.1:$1" WAF_ADMIN_LISTEN="127.0.0.1:$2" "$bin" >"$3" 2>&1 &
    last=$!
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$2/healthz" >/dev/null 2>&1 && return 0
        kill -0 "$last" 2>/dev/null || fail "waf-server exited at start ($3)"
        sleep 0.1
    done
    fail "waf-server did not start ($3)"
}
start "$port" "$aport" "$tmp/waf.log"
pid=$last
start "$port2" "$aport2" "$tmp/waf2.log" # a second instance of the same deployment
pid2=$last

"$bin" --routes >"$tmp/routes.txt" || fail "waf-server --routes"
grep -q '^admin GET /admin/v1/identities$' "$tmp/routes.txt" || fail "--routes output"

WAF_URL="http://127.0.0.1:$port" ADMIN_URL="http://127.0.0.1:$aport" \
    WAF_URL_B="http://127.0.0.1:$port2" ADMIN_URL_B="http://127.0.0.1:$aport2" \
    ADMIN_SECRET="$admin_secret" DATABASE_URL="$url" IMSPOOL="$imspool" \
    ROUTES_FILE="$tmp/routes.txt" OPENAPI_FILE="$src/docs/openapi.yaml" \
    SECRETS_FILE="$tmp/secrets.txt" MAX_BODY=65536 \
    node --test --test-concurrency=1 "$src/tests/js/waf-admin.test.mjs" || fail "tests/js/waf-admin.test.mjs"

# No secret, password, token or password hash in the logs.
[ -s "$tmp/secrets.txt" ] || fail "the test recorded no secrets to look for"
for f in "$tmp/waf.log" "$tmp/waf2.log"; do
    if grep -qE "$admin_secret|eyJ|\\\$scrypt\\\$" "$f" || grep -qFf "$tmp/secrets.txt" "$f"; then
        fail "a secret or token in $f"
    fi
done
# Nor in the audit log, whose rows name secrets only as "(set)".
audit=$(psql "$url" -Atc "SELECT coalesce(string_agg(before::text || after::text, ' '), '') FROM audit_log")
if grep -qFf "$tmp/secrets.txt" <<<"$audit" || grep -qE 'eyJ|[$]scrypt[$]' <<<"$audit"; then
    fail "a secret in audit_log"
fi
grep -q '(set)' <<<"$audit" || fail "audit_log does not mark secrets as (set)"

for p in $pid $pid2; do
    kill -TERM "$p"
    set +e
    wait "$p"
    rc=$?
    set -e
    [ $rc -eq 0 ] || fail "waf-server exit status $rc after SIGTERM"
done
pid='' pid2=''
echo "waf-server admin API: auth, CRUD, bad input, SQL metacharacters, key rotation on two instances, OpenAPI consistency, logs, shutdown: ok"
