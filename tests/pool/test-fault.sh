#!/usr/bin/env bash
# Pool manager under concurrency and faults, on a private dev stack of its own.
#
# 16 fault_worker processes (pool-manager/tests/fault_worker.c) allocate, renew, release and
# sweep in a 24-member pool for 30 s. At 8 s three are killed with SIGKILL and replaced, at
# 12 s PostgreSQL is restarted, at 18 s Redis is emptied (FLUSHALL) and restarted; at 30 s
# the rest get SIGTERM and must exit 0. Each worker journals every call that returned OK.
# Then: imspool check; an SQL check of its own that no member was in two overlapping leases;
# every journalled allocation, renewal and release is in the database (no committed lease
# lost, killed workers' too); each surviving worker got calls through after each restart
# (the handle reconnected); enough work was done; leases abandoned by the workers ran out and
# a sweep leaves none open past its expiry; the Redis checks (redis_checks, at the end).
#
# usage: test-fault.sh BUILD_DIR SOURCE_DIR
# IMSPOOL_FAULT_WORKER overrides the worker binary (default BUILD_DIR/tests/...);
# IMSPOOL_FAULT_KEEP=1 keeps the journals and logs (the stack is stopped all the same).
set -euo pipefail

build=$1 src=$2
bin=$build/pool-manager/imspool
worker=${IMSPOOL_FAULT_WORKER:-$build/tests/imspool_fault_worker}
devstack=$src/scripts/devstack

readonly POOL=fault
readonly WORKERS=16
readonly RUN_S=30      # SIGTERM to the workers
readonly KILL_AT=8     # SIGKILL to three workers, replacements started
readonly PG_AT=12      # PostgreSQL restart
readonly REDIS_AT=18   # Redis FLUSHALL and restart
readonly WORKER_CAP_S=60 # a worker stops by itself after this, should the driver be gone
readonly STOP_WAIT_S=20  # time a worker has to exit after SIGTERM
readonly MIN_OPS=2000    # OK calls (A/N/R journal lines) in all; far below a normal run
readonly KILLED=(3 8 13)

[[ -x $bin ]] || { echo "FAIL: no $bin (build target imspool)" >&2; exit 1; }
[[ -x $worker ]] || { echo "FAIL: no $worker (build target imspool_fault_worker)" >&2; exit 1; }

stack=$(mktemp -d /tmp/imspool-fault.XXXXXX)
chmod 755 "$stack" # PostgreSQL runs as user postgres when we are root
jdir=$stack/journals
mkdir -p "$jdir"
declare -A pid=() # worker id -> pid of a worker not yet reaped

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
step() { printf '== %s\n' "$*"; }

now_ms() {
    local t=${EPOCHREALTIME//[.,]/}
    echo $((10#$t / 1000))
}

cleanup() {
    local rc=$? id f
    trap - EXIT INT TERM
    for id in "${!pid[@]}"; do
        kill -KILL "${pid[$id]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if ((rc != 0)); then
        for f in "$jdir"/w*.err; do
            if [[ -s $f ]]; then
                echo "---- ${f##*/} (last lines) ----" >&2
                tail -n 8 "$f" >&2
            fi
        done
    fi
    DEVSTACK_DIR=$stack "$devstack" down >/dev/null 2>&1 || true
    if [[ ${IMSPOOL_FAULT_KEEP:-0} == 1 ]]; then
        echo "kept $stack" >&2
    else
        rm -rf "$stack"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ stack and pool --

t_setup=$(now_ms)
step "private stack in $stack"
DEVSTACK_DIR=$stack "$devstack" up >"$stack/devstack-up.log" 2>&1 ||
    { cat "$stack/devstack-up.log" >&2; fail "devstack up"; }
set -a
# shellcheck source=/dev/null
source "$stack/devstack.env"
set +a
unset IMSPOOL_FAULT_WORKER
rcli() { redis-cli -u "$REDIS_URL" "$@"; }
psq() { psql "$DATABASE_URL" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# The dev stack's Redis keeps nothing on disk, so a restart alone would empty it too; the
# FLUSHALL before it makes the test independent of that.
save=$(rcli CONFIG GET save | sed -n 2p)
aof=$(rcli CONFIG GET appendonly | sed -n 2p)
echo "redis persistence: save='$save' appendonly=$aof"

"$bin" migrate
"$bin" pool create "$POOL" --realm ims.example.net --lease-ttl 5 --quarantine 2 --max-per-holder 2
"$bin" member add "$POOL" --impu 'sip:f-{00..23}@ims.example.net' \
    --impi 'f-{00..23}@ims.example.net'

# ------------------------------------------------------------------------- workers --

start_worker() {
    local id=$1
    "$worker" "$POOL" "$id" "$jdir/w$id.log" "$WORKER_CAP_S" \
        >"$jdir/w$id.out" 2>"$jdir/w$id.err" &
    pid[$id]=$!
}

# A worker that ended before it was told to is a failure; say so now, not at the end.
check_alive() {
    local id
    for id in "${!pid[@]}"; do
        kill -0 "${pid[$id]}" 2>/dev/null && continue
        wait "${pid[$id]}" && rc=0 || rc=$?
        unset "pid[$id]"
        cat "$jdir/w$id.err" >&2
        fail "worker $id ended early with exit $rc ($1)"
    done
}

sleep_until() {
    local ms=$((t0 + $1 * 1000 - $(now_ms)))
    if ((ms > 0)); then
        sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
    fi
}

elapsed() {
    local ms=$(($(now_ms) - t0))
    printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100))
}

t0=$(now_ms)
step "starting $WORKERS workers for $RUN_S s"
for ((i = 0; i < WORKERS; i++)); do
    start_worker "$i"
done
next_id=$WORKERS
survivors=()

sleep_until "$KILL_AT"
check_alive "before the kills"
step "$(elapsed): kill -9 workers ${KILLED[*]}," \
    "replacements $next_id..$((next_id + ${#KILLED[@]} - 1))"
for id in "${KILLED[@]}"; do
    kill -KILL "${pid[$id]}"
    wait "${pid[$id]}" 2>/dev/null || true
    unset "pid[$id]"
    start_worker "$next_id"
    next_id=$((next_id + 1))
done

sleep_until "$PG_AT"
check_alive "before the PostgreSQL restart"
step "$(elapsed): restart postgres"
pg_begin=$(now_ms)
DEVSTACK_DIR=$stack "$devstack" restart postgres >"$stack/restart-pg.log" 2>&1 ||
    { cat "$stack/restart-pg.log" >&2; fail "devstack restart postgres"; }
pg_end=$(now_ms)
echo "   postgres down and back in $((pg_end - pg_begin)) ms"

sleep_until "$REDIS_AT"
check_alive "after the PostgreSQL restart"
step "$(elapsed): redis FLUSHALL and restart"
[[ $(rcli FLUSHALL) == OK ]] || fail "redis FLUSHALL"
redis_begin=$(now_ms)
DEVSTACK_DIR=$stack "$devstack" restart redis >"$stack/restart-redis.log" 2>&1 ||
    { cat "$stack/restart-redis.log" >&2; fail "devstack restart redis"; }
redis_end=$(now_ms)
echo "   redis down and back in $((redis_end - redis_begin)) ms"
[[ $(rcli DBSIZE) =~ ^[0-9]+$ ]] || fail "redis does not answer after its restart"

sleep_until "$RUN_S"
check_alive "before SIGTERM"
step "$(elapsed): SIGTERM to the ${#pid[@]} running workers"
for id in "${!pid[@]}"; do
    kill -TERM "${pid[$id]}"
done
deadline=$(($(now_ms) + STOP_WAIT_S * 1000))
bad=()
for id in $(printf '%s\n' "${!pid[@]}" | sort -n); do
    while kill -0 "${pid[$id]}" 2>/dev/null && (($(now_ms) < deadline)); do
        sleep 0.1
    done
    if kill -0 "${pid[$id]}" 2>/dev/null; then
        kill -KILL "${pid[$id]}" 2>/dev/null || true
        bad+=("$id: no exit ${STOP_WAIT_S} s after SIGTERM")
    fi
    wait "${pid[$id]}" && rc=0 || rc=$?
    unset "pid[$id]"
    survivors+=("$id")
    ((rc == 0)) || bad+=("$id: exit $rc")
done
t_run=$(($(now_ms) - t0))
if ((${#bad[@]})); then
    for b in "${bad[@]}"; do
        id=${b%%:*}
        echo "---- worker $id stderr ----" >&2
        cat "$jdir/w$id.err" >&2
    done
    fail "workers did not end cleanly: ${bad[*]}"
fi
echo "   every worker exited 0"
cat "$jdir"/w*.out | sort -t' ' -k2n | sed 's/^/   /'

# -------------------------------------------------------------------------- checks --

step "a. imspool check"
out=$("$bin" check 2>&1) || { echo "$out" >&2; fail "imspool check found violations"; }
echo "   $out"

step "b. no member in two leases whose lifetimes overlap (SQL of this test)"
overlaps=$(psq -F ' ' <<EOF
WITH iv AS (
    SELECT l.id, l.member_id, m.impu, l.created_at AS s,
           coalesce(l.released_at, l.expires_at) AS e
      FROM leases l JOIN pool_members m ON m.id = l.member_id
      JOIN pools p ON p.id = l.pool_id
     WHERE p.name = '$POOL'),
w AS (
    SELECT iv.*, max(e) OVER (PARTITION BY member_id ORDER BY s, id
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_e
      FROM iv)
SELECT w.impu, 'lease', w.id, 'from', w.s, 'overlaps lease', o.id, 'until', o.e
  FROM w CROSS JOIN LATERAL (
       SELECT id, e FROM iv WHERE iv.member_id = w.member_id AND (iv.s, iv.id) < (w.s, w.id)
          AND iv.e > w.s ORDER BY iv.s LIMIT 1) o
 WHERE w.prev_e > w.s
 ORDER BY w.impu, w.s;
EOF
)
if [[ -n $overlaps ]]; then
    head -n 20 <<<"$overlaps" >&2
    fail "$(wc -l <<<"$overlaps") overlapping leases"
fi
counts=$(psq -F ' ' -c "SELECT count(*), count(*) FILTER (WHERE released_at IS NULL),
                                 count(DISTINCT member_id) FROM leases")
read -r n_leases n_open n_members_used <<<"$counts"
echo "   $n_leases leases ($n_open open) over $n_members_used members: no overlap"

step "c. every journalled call is in the database"
# One row per A/N/R line: worker, line, kind, lease, holder, impu, expires_ms, and t_ms, the
# last T line before it (the call ended after t_ms).
tsv=$stack/journal.tsv
for f in "$jdir"/w*.log; do
    id=${f##*/w}
    id=${id%.log}
    killed=0
    [[ " ${KILLED[*]} " == *" $id "* ]] && killed=1
    awk -v w="$id" -v killed="$killed" -v OFS='\t' '
        $1 == "T" && NF == 2 { t = $2; next }
        $1 == "A" && NF == 5 { print w, FNR, "A", $2, $3, $4, $5, t; next }
        $1 == "N" && NF == 3 { print w, FNR, "N", $2, "\\N", "\\N", $3, t; next }
        $1 == "R" && NF == 2 { print w, FNR, "R", $2, "\\N", "\\N", "\\N", t; next }
        { bad = FNR; text = $0 }
        END {
            if (bad && !(killed && bad == FNR)) {
                printf "%s:%d: malformed journal line: %s\n", FILENAME, bad, text > "/dev/stderr"
                exit 1
            }
            if (bad)
                printf "   w%s: torn last line of a killed worker ignored: %s\n", w, text \
                    > "/dev/stderr"
        }' "$f"
done >"$tsv" || fail "malformed journal"

jsql() {
    psq -F ' ' <<EOF
CREATE TEMP TABLE j (worker int, lineno int, kind char(1), lease uuid, holder text,
                     impu text, expires_ms bigint, t_ms bigint);
\copy j FROM '$tsv'
$1
EOF
}
check_rows() { # check_rows WHAT SQL: SQL lists offending lines; none expected
    local rows
    rows=$(jsql "$2")
    if [[ -n $rows ]]; then
        head -n 20 <<<"$rows" >&2
        fail "$(wc -l <<<"$rows") journal lines with $1"
    fi
}
check_rows "an allocation missing from leases, or of another holder or IMPU" "
SELECT 'w' || j.worker || ':' || j.lineno, 'A', j.lease, j.holder, j.impu, '->',
       coalesce(l.holder, '(no such lease)'), coalesce(m.impu::text, '')
  FROM j LEFT JOIN leases l ON l.id = j.lease LEFT JOIN pool_members m ON m.id = l.member_id
 WHERE j.kind = 'A' AND (l.id IS NULL OR l.holder <> j.holder OR m.impu::text <> j.impu)
 ORDER BY j.worker, j.lineno;"
check_rows "an expiry later than the lease's in the database (a lost renewal)" "
SELECT 'w' || j.worker || ':' || j.lineno, j.kind, j.lease, j.expires_ms, '-> expires_ms',
       coalesce((extract(epoch FROM l.expires_at) * 1000)::bigint::text, '(no such lease)')
  FROM j LEFT JOIN leases l ON l.id = j.lease
 WHERE j.kind IN ('A', 'N')
   AND (l.id IS NULL OR j.expires_ms > (extract(epoch FROM l.expires_at) * 1000)::bigint)
 ORDER BY j.worker, j.lineno;"
check_rows "a release the database does not have" "
SELECT 'w' || j.worker || ':' || j.lineno, 'R', j.lease, '->',
       coalesce(l.released_at::text, CASE WHEN l.id IS NULL THEN '(no such lease)'
                                     ELSE '(open)' END), coalesce(l.release_reason, '')
  FROM j LEFT JOIN leases l ON l.id = j.lease
 WHERE j.kind = 'R' AND (l.released_at IS NULL OR l.release_reason <> 'fault-test')
 ORDER BY j.worker, j.lineno;"
counts=$(jsql "
SELECT count(*) FILTER (WHERE kind = 'A'), count(*) FILTER (WHERE kind = 'N'),
       count(*) FILTER (WHERE kind = 'R'), count(*),
       count(*) FILTER (WHERE worker IN ($(IFS=,; echo "${KILLED[*]}")))
  FROM j;")
read -r n_a n_n n_r n_ok n_killed_ok <<<"$counts"
echo "   $n_a allocations, $n_n renewals, $n_r releases journalled ($n_killed_ok by killed" \
    "workers): all in the database"

step "d. every surviving worker got calls through after each restart"
per_worker=$(jsql "
SELECT s.w, count(j.*) FILTER (WHERE j.t_ms >= $pg_end),
       count(j.*) FILTER (WHERE j.t_ms >= $redis_end)
  FROM unnest(ARRAY[$(IFS=,; echo "${survivors[*]}")]) AS s(w)
  LEFT JOIN j ON j.worker = s.w
 GROUP BY s.w ORDER BY s.w;")
stuck=$(awk '$2 == 0 || $3 == 0 { printf " w%s (after postgres %s, after redis %s)", $1, $2, $3 }' \
    <<<"$per_worker")
[[ -z $stuck ]] || fail "workers without an OK call after a restart:$stuck"
read -r min_pg min_redis <<<"$(awk 'NR == 1 || $2 < a { a = $2 } NR == 1 || $3 < b { b = $3 }
    END { print a, b }' <<<"$per_worker")"
echo "   ${#survivors[@]} workers; fewest OK calls after the postgres restart $min_pg," \
    "after the redis restart $min_redis"

step "e. enough work"
((n_ok >= MIN_OPS)) || fail "only $n_ok OK calls journalled (at least $MIN_OPS expected)"
echo "   $n_ok OK calls journalled (at least $MIN_OPS expected)"

step "f. expiry: abandoned leases ran out, and a sweep ends every overdue lease"
before_sweep=$(now_ms) # the sweep's clock reads this or later
swept=$("$bin" sweep)
overdue=$(psq -c "SELECT count(*) FROM leases WHERE released_at IS NULL
                   AND expires_at <= to_timestamp($before_sweep / 1000.0)")
((overdue == 0)) || fail "$overdue leases still open past their expiry after '$swept'"
expired=$(psq -c "SELECT count(*) FROM leases WHERE release_reason = 'expired'")
((expired > 0)) || fail "no lease ended by expiry: the expiry paths were not exercised"
echo "   $swept; $expired leases ended as expired, none open past its expiry"

# --------------------------------------------------------------------- Redis checks --
# After the FLUSHALL and the restart, the workers' handles found the keys gone and rebuilt
# them from PostgreSQL on their own; the stream carries the calls made since; and an
# explicit rebuild gives counters equal to PostgreSQL's. Before that rebuild the counters
# may be off by the calls of the killed workers (committed, then killed before Redis), and
# the difference is printed, not checked.
redis_checks() {
    step "redis: keys rebuilt after the FLUSHALL, events after the restart, counters"
    [[ $(rcli PING) == PONG ]] || fail "redis does not answer PING"
    local P # libimspool's default key prefix: imspool:<database name>:
    P="imspool:$(psq -c 'SELECT current_database()'):"
    local epoch
    epoch=$(rcli GET "${P}epoch")
    [[ $epoch =~ ^[0-9]+$ ]] || fail "${P}epoch missing: no handle rebuilt the keys"
    ((epoch >= redis_begin)) || fail "${P}epoch $epoch predates the FLUSHALL ($redis_begin)"
    local after
    after=$(rcli XRANGE "${P}events" "$redis_end" + | grep -c '^allocated$' || true)
    ((after > 0)) || fail "no allocated event in the stream after the Redis restart"
    local drift
    drift=$(rcli HGET "${P}pool:$POOL" leased)
    local db_open
    db_open=$(psq -c "SELECT count(*) FROM leases WHERE released_at IS NULL")
    echo "   epoch rebuilt $((epoch - redis_begin)) ms after the FLUSHALL; $after allocated" \
        "events since the restart; counter leased=$drift before a rebuild, $db_open in PostgreSQL"
    "$bin" redis rebuild >/dev/null || fail "imspool redis rebuild failed"
    local got want
    got=$(for f in members disabled leased allocated renewed released expired; do
        rcli HGET "${P}pool:$POOL" $f; done | paste -sd/)
    want=$(psq -c "SELECT (SELECT count(*) FROM pool_members) || '/' ||
        (SELECT count(*) FROM pool_members WHERE state = 'disabled') || '/' ||
        count(*) FILTER (WHERE released_at IS NULL) || '/' || count(*) || '/' ||
        coalesce(sum(renew_count), 0) || '/' ||
        count(*) FILTER (WHERE release_reason <> 'expired') || '/' ||
        count(*) FILTER (WHERE release_reason = 'expired') FROM leases")
    [[ $got == "$want" ]] || fail "counters after a rebuild: redis $got, postgresql $want"
    local zc
    zc=$(rcli ZCARD "${P}expiry")
    ((zc == db_open)) || fail "expiry schedule holds $zc leases, PostgreSQL has $db_open open"
    echo "   after imspool redis rebuild: counters $got (members/disabled/leased/allocated/" \
        "renewed/released/expired) equal PostgreSQL's; schedule holds the $zc open leases"
}
redis_checks

warnings=$(cat "$jdir"/w*.err | grep -c ': imspool warning: ' || true)
infos=$(cat "$jdir"/w*.err | grep -c ': imspool info: ' || true)
unavailable=$(cat "$jdir"/w*.out | sed -n 's/.*db_unavailable=\([0-9]*\).*/\1/p' |
    awk '{ s += $1 } END { print s + 0 }')
secs() { printf '%d.%d s' $(($1 / 1000)) $(($1 % 1000 / 100)); }
echo "pool.faults ok: $next_id workers (${#KILLED[@]} killed), run $(secs "$t_run")," \
    "total $(secs $(($(now_ms) - t_setup))); $n_ok OK calls ($n_a A, $n_n N, $n_r R)"
echo "  $n_leases leases in the database; $unavailable calls met the PostgreSQL outage" \
    "($((pg_end - pg_begin)) ms); restarts: postgres at $(secs $((pg_begin - t0)))," \
    "redis at $(secs $((redis_begin - t0)))"
echo "  library log: $warnings warnings, $infos info lines (e.g. Redis lost and back)"
