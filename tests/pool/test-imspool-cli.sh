#!/usr/bin/env bash
# Black-box test of `imspool migrate` against the dev stack's PostgreSQL, in a database of
# its own: apply, re-run (no-op), --json, and the error contract (one line on stderr,
# exit 1 for a failed operation, 2 for usage).
# usage: test-imspool-cli.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
bin=$build/pool-manager/imspool
: "${DATABASE_URL:?run under scripts/devstack (DATABASE_URL)}"
db="imspool_cli_$$"
url=$("$src/scripts/devstack" db "$db")
cleanup() { psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$bin" --db "$url" migrate)
[[ $out =~ ^applied\ [0-9]+\ migrations?\;\ schema\ version\ [0-9]{4}$ ]] || fail "first run: $out"
out=$("$bin" migrate --db "$url")
[[ $out =~ ^schema\ up\ to\ date ]] || fail "second run: $out"
out=$(DATABASE_URL=$url "$bin" --json migrate)
[[ $out =~ ^\{\"ok\":true,\"applied\":0,\"already\":[1-9][0-9]*,\"version\":[1-9][0-9]*\}$ ]] \
  || fail "json: $out"
n=$(psql "$url" -Atc "SELECT count(*) FROM schema_migrations")
[ "$n" -ge 1 ] || fail "schema_migrations has $n rows"

set +e
err=$("$bin" --db "host=127.0.0.1 port=1 dbname=x connect_timeout=2" migrate 2>&1 >/dev/null)
rc=$?
set -e
[ $rc -eq 1 ] || fail "unreachable database: exit $rc"
[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "stderr is not one line: $err"
[[ $err == "imspool: database_unavailable: cannot connect"* ]] || fail "stderr: $err"

set +e
env -u DATABASE_URL "$bin" migrate >/dev/null 2>&1; rc1=$?
"$bin" --db "$url" frobnicate >/dev/null 2>&1; rc2=$?
"$bin" >/dev/null 2>&1; rc3=$?
set -e
[ $rc1 -eq 2 ] && [ $rc2 -eq 2 ] && [ $rc3 -eq 2 ] || fail "usage exits: $rc1 $rc2 $rc3"
echo "imspool CLI: migrate applied, re-run no-op, JSON, error contract: ok"
