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
# Pools, members and leases through the CLI.
I() { "$bin" --db "$url" "$@"; }
I pool create anon --realm home1.net --lease-ttl 600 --quarantine 300 >/dev/null
out=$(I --json member add anon --impu 'sip:anon-{00..01}@home1.net' --impi 'anon-{00..01}@home1.net')
[ "$out" = '{"ok":true,"added":2}' ] || fail "member add: $out"
lease=$(I --json allocate anon --holder web-user-1)
[[ $lease =~ \"impu\":\"sip:anon-0[01]@home1.net\" ]] || fail "allocate: $lease"
id=$(sed 's/.*"lease":"\([^"]*\)".*/\1/' <<<"$lease")
I --json allocate anon --holder web-user-2 >/dev/null
set +e
err=$(I allocate anon --holder web-user-3 2>&1 >/dev/null); rc=$?
set -e
# Retry-After is the time left of the oldest lease (900 s): a loaded machine may have
# spent seconds since the first allocation (seen: 896 under a sanitizer build).
[ $rc -eq 1 ] && [[ $err =~ ^imspool:\ pool_exhausted:.*\(retry\ after\ (8[5-9][0-9]|900)\ s\)$ ]] ||
    fail "exhausted: $rc $err"
out=$(I --json stats anon)
[ "$out" = '{"ok":true,"free":0,"leased":2,"quarantined":0,"disabled":0}' ] || fail "stats: $out"
[[ $(I --json renew "$id" --ttl 60) =~ \"ok\":true ]] || fail "renew"
[ "$(I release "$id" --reason logout)" = "lease released" ] || fail "release"
[[ $(I --json sweep) == '{"ok":true,"expired":0}' ]] || fail "sweep"

[ "$(I check)" = "no violations" ] || fail "check"
out=$(I --json pool list)
[[ $out == '{"ok":true,"pools":[{"name":"anon","realm":"home1.net","lease_ttl":600,"quarantine":300,"max_per_holder":1,"state":"active","members":2}]}' ]] || fail "pool list: $out"
[ "$(I leases anon --active | wc -l)" -eq 2 ] || fail "leases --active (header + 1)"
[ "$(I --json leases anon | grep -o '"lease":' | wc -l)" -eq 2 ] || fail "leases"
set +e
out=$(I --json leases nopool 2>/dev/null); rc=$?
set -e
[ $rc -eq 1 ] && [ "$out" = '{"ok":false,"error":"pool_unknown"}' ] \
  || fail "a failing listing prints one JSON object: $rc $out"

# Bad input: a clear error and nothing written.
before=$(psql "$url" -Atc "SELECT (SELECT count(*) FROM pools) || '/' || (SELECT count(*) FROM pool_members) || '/' || (SELECT count(*) FROM leases)")
set +e
e1=$(I pool create "x'; drop table pools; --" --realm home1.net --lease-ttl 60 --quarantine 0 2>&1); r1=$?
e2=$(I pool create neg --realm home1.net --lease-ttl -5 --quarantine 0 2>&1); r2=$?
e3=$(I member add anon --impu 'sip:anon-{01..05}@home1.net' --impi 'anon-{01..05}@home1.net' 2>&1); r3=$?
e4=$(I member add anon --impu 'sip:a-{1..10}@home1.net' --impi x 2>&1); r4=$?
e5=$(I release 00000000-0000-0000-0000-000000000000 2>&1); r5=$?
e6=$(I release "$id" 2>&1); r6=$?
e7=$(I allocate nopool --holder h 2>&1); r7=$?
set -e
[ $r1 -eq 1 ] && [[ $e1 == "imspool: invalid_argument:"* ]] || fail "metachar name: $r1 $e1"
[ $r2 -eq 2 ] && [[ $e2 == *"--lease-ttl must be"* ]] || fail "negative ttl: $r2 $e2"
[ $r3 -eq 1 ] && [[ $e3 == "imspool: duplicate:"* ]] || fail "duplicate members: $r3 $e3"
[ $r4 -eq 1 ] && [[ $e4 == "imspool: invalid_argument:"* ]] || fail "bad pattern: $r4 $e4"
[ $r5 -eq 1 ] && [[ $e5 == "imspool: lease_unknown:"* ]] || fail "unknown lease: $r5 $e5"
[ $r6 -eq 1 ] && [[ $e6 == "imspool: lease_already_released:"* ]] || fail "released twice: $r6 $e6"
[ $r7 -eq 1 ] && [[ $e7 == "imspool: pool_unknown:"* ]] || fail "unknown pool: $r7 $e7"
for e in "$e1" "$e3" "$e4" "$e5" "$e6" "$e7"; do
  [ "$(printf '%s\n' "$e" | wc -l)" -eq 1 ] || fail "stderr is not one line: $e"
done
after=$(psql "$url" -Atc "SELECT (SELECT count(*) FROM pools) || '/' || (SELECT count(*) FROM pool_members) || '/' || (SELECT count(*) FROM leases)")
[ "$before" = "$after" ] || fail "bad input wrote something: $before -> $after"

# CSV import, member disable/enable, pool update.
csv=$(mktemp)
trap 'rm -f "$csv"; cleanup' EXIT
printf 'impu,impi\nsip:c-1@home1.net,c-1@home1.net\n"sip:c-2@home1.net;x=a,b",c-2@home1.net\n' >"$csv"
out=$(I --json member add anon --csv "$csv")
[ "$out" = '{"ok":true,"added":2}' ] || fail "csv import: $out"
printf 'c-3@home1.net,sip:c-3@home1.net\nc-4@home1.net,sip:c 4@home1.net\n' >"$csv"
before=$(psql "$url" -Atc "SELECT count(*) FROM pool_members")
set +e
e=$(I member add anon --csv "$csv" 2>&1); r=$?
e2=$(I member add anon --csv /nonexistent/x.csv 2>&1); r2=$?
e3=$(I member add anon --csv "$csv" --impu 'sip:x@h' 2>&1); r3=$?
e4=$(I member disable anon sip:nobody@home1.net 2>&1); r4=$?
set -e
[ $r -eq 1 ] && [[ $e == "imspool: invalid_argument: line 2: IMPU"* ]] || fail "bad csv: $r $e"
[ $r2 -eq 1 ] && [[ $e2 == "imspool: io_error: cannot open"* ]] || fail "missing csv: $r2 $e2"
[ $r3 -eq 2 ] || fail "csv and pattern together: $r3 $e3"
[ $r4 -eq 1 ] && [[ $e4 == "imspool: member_unknown:"* ]] || fail "unknown member: $r4 $e4"
[ "$(psql "$url" -Atc "SELECT count(*) FROM pool_members")" = "$before" ] \
  || fail "a bad CSV wrote members"
printf 'c-5@home1.net,sip:c-5@home1.net\n' | I member add anon --csv - >/dev/null
I member disable anon 'sip:c-5@home1.net' >/dev/null
[ "$(psql "$url" -Atc "SELECT state FROM pool_members WHERE impu = 'sip:c-5@home1.net'")" = disabled ] \
  || fail "member disable"
I member enable anon 'sip:c-5@home1.net' >/dev/null
[ "$(psql "$url" -Atc "SELECT state FROM pool_members WHERE impu = 'sip:c-5@home1.net'")" = available ] \
  || fail "member enable"
I pool update anon --quarantine 7 --max-per-holder 3 >/dev/null
[ "$(psql "$url" -Atc "SELECT quarantine_s || '/' || max_per_holder || '/' || lease_ttl_s FROM pools WHERE name = 'anon'")" = "7/3/600" ] \
  || fail "pool update: $(psql "$url" -Atc "SELECT * FROM pools WHERE name = 'anon'")"
set +e
I pool update anon >/dev/null 2>&1; r=$?
set -e
[ $r -eq 2 ] || fail "pool update without a change: exit $r"

# sweep --watch runs until SIGTERM and then exits 0.
"$bin" --db "$url" sweep --watch >/dev/null &
w=$!
sleep 1
kill -TERM $w
wait $w || fail "sweep --watch did not exit 0 on SIGTERM"

echo "imspool CLI: migrate, pools, members (patterns, CSV, disable), leases, JSON and error contract: ok"
