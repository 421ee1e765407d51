/* Leases: allocate, renew, release, sweep. PostgreSQL is the only authority: a lease
 * exists if and only if its row is committed. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

#define NOW_SQL           "to_timestamp($2::bigint / 1000.0)"
#define ALLOCATE_ATTEMPTS 5

/* Ends overdue leases (those matching WHERE_EXTRA too) at their expiry, quarantined from
 * then, and updates their members in the same statement. Parameter $2 is now. */
#define EXPIRE_SQL(WHERE_EXTRA)                                                                    \
    "WITH ended AS (UPDATE leases l SET released_at = l.expires_at, "                              \
    "  release_reason = 'expired', quarantine_until = l.expires_at + "                             \
    "  make_interval(secs => pl.quarantine_s) FROM pools pl WHERE " WHERE_EXTRA                    \
    "  pl.id = l.pool_id AND l.released_at IS NULL AND l.expires_at <= " NOW_SQL                   \
    "  RETURNING l.member_id, l.holder, l.released_at, l.quarantine_until) "                       \
    "UPDATE pool_members m SET open_lease = NULL, last_holder = ended.holder, "                    \
    " last_released_at = ended.released_at, quarantine_until = ended.quarantine_until "            \
    "FROM ended WHERE m.id = ended.member_id"

static void copy_lease(PGresult *res, int row, int id_col, struct imspool_lease *out)
{
    snprintf(out->id, sizeof(out->id), "%s", PQgetvalue(res, row, id_col));
    snprintf(out->impi, sizeof(out->impi), "%s", PQgetvalue(res, row, id_col + 1));
    snprintf(out->impu, sizeof(out->impu), "%s", PQgetvalue(res, row, id_col + 2));
    out->expires_ms = atoll(PQgetvalue(res, row, id_col + 3));
}

static void rollback(struct imspool *p)
{
    enum imspool_result ignored;
    imspool_x(p, "ROLLBACK", &ignored, NULL, 0);
}

/*
 * One attempt, in one transaction. The per-holder advisory lock makes the holder cap exact;
 * FOR UPDATE SKIP LOCKED lets concurrent allocators take different members; the unique
 * index on open leases catches the rare race where a member was leased by a transaction
 * that committed after this one's snapshot (the caller then retries).
 */
static enum imspool_result allocate_once(struct imspool *p, const char *pool, const char *holder,
                                         int ttl_s, struct imspool_lease *out, char *detail,
                                         size_t dlen)
{
    enum imspool_result r = IMSPOOL_OK;
    char now[24], ttl[16];
    imspool_now_param(p, now);
    snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    if (!imspool_x(p, "BEGIN", &r, detail, dlen))
        return r;
    const char *pp[] = {pool};
    PGresult *res = imspool_q(p,
                              "SELECT id, state, lease_ttl_s, quarantine_s, max_per_holder "
                              "FROM pools WHERE name = $1",
                              1, pp, &r, detail, dlen);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) == 0) {
        PQclear(res);
        imspool_detail(detail, dlen, "no pool named %s", pool);
        r = IMSPOOL_ERR_POOL_UNKNOWN;
        goto fail;
    }
    char pool_id[24], q[16], cap[16];
    snprintf(pool_id, sizeof(pool_id), "%s", PQgetvalue(res, 0, 0));
    bool draining = strcmp(PQgetvalue(res, 0, 1), "draining") == 0;
    if (ttl_s == 0)
        snprintf(ttl, sizeof(ttl), "%s", PQgetvalue(res, 0, 2));
    snprintf(q, sizeof(q), "%s", PQgetvalue(res, 0, 3));
    snprintf(cap, sizeof(cap), "%s", PQgetvalue(res, 0, 4));
    PQclear(res);
    if (draining) {
        imspool_detail(detail, dlen, "pool %s is draining: no new leases", pool);
        r = IMSPOOL_ERR_POOL_DRAINING;
        goto fail;
    }
    /* Serialise this holder's allocations in this pool; expire this pool's overdue leases
       (the sweeper does the same for all pools). */
    const char *lk[] = {pool_id, holder};
    res = imspool_q(p, "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))", 2, lk,
                    &r, detail, dlen);
    if (res == NULL)
        goto fail;
    PQclear(res);
    const char *ex[] = {pool_id, now};
    res = imspool_q(p, EXPIRE_SQL("l.pool_id = $1::bigint AND"), 2, ex, &r, detail, dlen);
    if (res == NULL)
        goto fail;
    PQclear(res);
    const char *cp[] = {pool_id, holder};
    res = imspool_q(p,
                    "SELECT count(*) FROM leases WHERE pool_id = $1::bigint AND holder = $2 "
                    "AND released_at IS NULL",
                    2, cp, &r, detail, dlen);
    if (res == NULL)
        goto fail;
    bool capped = atol(PQgetvalue(res, 0, 0)) >= atol(cap);
    PQclear(res);
    if (capped) {
        imspool_detail(detail, dlen, "holder has %s open lease(s) in %s, the pool's maximum", cap,
                       pool);
        r = IMSPOOL_ERR_HOLDER_CAP;
        goto fail;
    }
    /* A free member: not leased, not in another holder's quarantine; this holder's previous
       member first (stickiness), then the one free the longest (index order). Locked here,
       leased by the next statement: its fresh snapshot sees every earlier lease of the
       member (all of them updated this row), so the lease starts no earlier than the last
       one ended. */
#define FREE_MEMBER_SQL                                                                            \
    " m.pool_id = $1::bigint AND m.state = 'available' AND m.open_lease IS NULL "                  \
    " AND (m.quarantine_until IS NULL OR m.quarantine_until <= " NOW_SQL                           \
    "      OR m.last_holder = $3) "
    const char *ap[] = {pool_id, now, holder};
    res = imspool_q(p,
                    "SELECT m.id FROM pool_members m WHERE " FREE_MEMBER_SQL
                    "AND m.last_holder = $3 LIMIT 1 FOR UPDATE OF m SKIP LOCKED",
                    3, ap, &r, detail, dlen);
    if (res != NULL && PQntuples(res) == 0) {
        PQclear(res);
        res = imspool_q(p,
                        "SELECT m.id FROM pool_members m WHERE " FREE_MEMBER_SQL
                        "ORDER BY m.last_released_at NULLS FIRST, m.id "
                        "LIMIT 1 FOR UPDATE OF m SKIP LOCKED",
                        3, ap, &r, detail, dlen);
    }
    if (res == NULL)
        goto fail;
    if (PQntuples(res) == 1) {
        char member[24];
        snprintf(member, sizeof(member), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        const char *ip[] = {pool_id, now, holder, ttl, member};
        res = imspool_q(
            p,
            "WITH ins AS (INSERT INTO leases (pool_id, member_id, holder, created_at, "
            "  expires_at) SELECT $1::bigint, m.id, $3, t.start, t.start + "
            "  make_interval(secs => $4::int) FROM pool_members m, LATERAL (SELECT greatest("
            "  " NOW_SQL ", m.last_released_at) AS start) t "
            "  WHERE m.id = $5::bigint AND " FREE_MEMBER_SQL
            "  RETURNING id, member_id, expires_at), "
            "upd AS (UPDATE pool_members pm SET open_lease = ins.id FROM ins "
            "  WHERE pm.id = ins.member_id RETURNING pm.impi, pm.impu) "
            "SELECT ins.id, upd.impi, upd.impu, "
            " (extract(epoch FROM ins.expires_at) * 1000)::bigint FROM ins, upd",
            5, ip, &r, detail, dlen);
        if (res == NULL)
            goto fail;
        bool got = PQntuples(res) == 1;
        if (got)
            copy_lease(res, 0, 0, out);
        PQclear(res);
        if (!got) { /* taken between our snapshot and our lock: try again */
            r = IMSPOOL_ERR_DUPLICATE;
            goto fail;
        }
        if (!imspool_x(p, "COMMIT", &r, detail, dlen))
            goto fail;
        return IMSPOOL_OK;
    }
#undef FREE_MEMBER_SQL
    PQclear(res);
    /* Exhausted: when does the first member free up (expiry or end of quarantine)? */
    const char *ep[] = {pool_id, now, holder};
    res = imspool_q(p,
                    "SELECT ceil(extract(epoch FROM least("
                    " (SELECT min(expires_at) + make_interval(secs => (SELECT quarantine_s "
                    "  FROM pools WHERE id = $1::bigint)) FROM leases WHERE pool_id = "
                    "  $1::bigint AND released_at IS NULL), "
                    " (SELECT min(quarantine_until) FROM leases WHERE pool_id = $1::bigint "
                    "  AND quarantine_until > " NOW_SQL " AND holder <> $3)) - " NOW_SQL "))",
                    3, ep, &r, detail, dlen);
    if (res == NULL)
        goto fail;
    out->retry_after_s = PQgetisnull(res, 0, 0) ? -1 : atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    imspool_detail(detail, dlen, "pool %s has no free member", pool);
    r = IMSPOOL_ERR_POOL_EXHAUSTED;
fail:
    rollback(p);
    return r;
}

IMSPOOL_API enum imspool_result imspool_allocate(struct imspool *p, const char *pool,
                                                 const char *holder, int ttl_s,
                                                 struct imspool_lease *out, char *detail,
                                                 size_t dlen)
{
    memset(out, 0, sizeof(*out));
    if (pool == NULL || holder == NULL || ttl_s < 0 || ttl_s > 604800) {
        imspool_detail(detail, dlen, "pool and holder are required; ttl is 0..604800 s");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    enum imspool_result r = IMSPOOL_ERR_DB_UNAVAILABLE;
    for (int i = 0; i < ALLOCATE_ATTEMPTS; i++) {
        r = allocate_once(p, pool, holder, ttl_s, out, detail, dlen);
        if (r != IMSPOOL_ERR_DUPLICATE)
            return r;
    }
    imspool_detail(detail, dlen, "allocation lost %d races for members in a row",
                   ALLOCATE_ATTEMPTS);
    return IMSPOOL_ERR_POOL_EXHAUSTED;
}

/* A lease id is a UUID in its canonical text form; anything else names no lease. */
static bool uuid_form(const char *s)
{
    if (s == NULL || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = s[i];
        if (dash ? c != '-'
                 : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/* Tells apart an unknown lease from an ended one after an UPDATE matched nothing. */
static enum imspool_result why_not(struct imspool *p, const char *lease_id, char *detail,
                                   size_t dlen)
{
    enum imspool_result r = IMSPOOL_OK;
    const char *params[] = {lease_id};
    PGresult *res = imspool_q(p, "SELECT released_at IS NOT NULL FROM leases WHERE id = $1::uuid",
                              1, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    bool known = PQntuples(res) == 1;
    PQclear(res);
    imspool_detail(detail, dlen, known ? "lease %s was released or has expired" : "no lease %s",
                   lease_id);
    return known ? IMSPOOL_ERR_LEASE_RELEASED : IMSPOOL_ERR_LEASE_UNKNOWN;
}

IMSPOOL_API enum imspool_result imspool_renew(struct imspool *p, const char *lease_id, int ttl_s,
                                              struct imspool_lease *out, char *detail, size_t dlen)
{
    memset(out, 0, sizeof(*out));
    if (lease_id == NULL || ttl_s < 0 || ttl_s > 604800) {
        imspool_detail(detail, dlen, "lease id required; ttl is 0..604800 s");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    if (!uuid_form(lease_id)) {
        imspool_detail(detail, dlen, "not a lease id (a UUID)");
        return IMSPOOL_ERR_LEASE_UNKNOWN;
    }
    char now[24], ttl[16];
    imspool_now_param(p, now);
    snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    const char *params[] = {lease_id, now, ttl};
    enum imspool_result r = IMSPOOL_OK;
    PGresult *res = imspool_q(
        p,
        "UPDATE leases l SET expires_at = " NOW_SQL " + make_interval(secs => "
        " CASE WHEN $3::int = 0 THEN pl.lease_ttl_s ELSE $3::int END), "
        " renew_count = renew_count + 1 "
        "FROM pools pl, pool_members m WHERE l.id = $1::uuid AND pl.id = l.pool_id "
        " AND m.id = l.member_id AND l.released_at IS NULL AND l.expires_at > " NOW_SQL
        " RETURNING l.id, m.impi, m.impu, (extract(epoch FROM l.expires_at) * 1000)::bigint",
        3, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    bool ok = PQntuples(res) == 1;
    if (ok)
        copy_lease(res, 0, 0, out);
    PQclear(res);
    return ok ? IMSPOOL_OK : why_not(p, lease_id, detail, dlen);
}

IMSPOOL_API enum imspool_result imspool_release(struct imspool *p, const char *lease_id,
                                                const char *reason, char *detail, size_t dlen)
{
    if (lease_id == NULL) {
        imspool_detail(detail, dlen, "lease id required");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    if (!uuid_form(lease_id)) {
        imspool_detail(detail, dlen, "not a lease id (a UUID)");
        return IMSPOOL_ERR_LEASE_UNKNOWN;
    }
    char now[24];
    imspool_now_param(p, now);
    const char *params[] = {lease_id, now, reason && *reason ? reason : "released"};
    enum imspool_result r = IMSPOOL_OK;
    PGresult *res = imspool_q(
        p,
        "WITH ended AS (UPDATE leases l SET released_at = greatest(" NOW_SQL ", l.created_at), "
        "  release_reason = $3, quarantine_until = greatest(" NOW_SQL ", l.created_at) + "
        "  make_interval(secs => pl.quarantine_s) FROM pools pl WHERE l.id = $1::uuid "
        "  AND pl.id = l.pool_id AND l.released_at IS NULL "
        "  RETURNING l.member_id, l.holder, l.released_at, l.quarantine_until) "
        "UPDATE pool_members m SET open_lease = NULL, last_holder = ended.holder, "
        " last_released_at = ended.released_at, quarantine_until = ended.quarantine_until "
        "FROM ended WHERE m.id = ended.member_id",
        3, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    bool ok = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return ok ? IMSPOOL_OK : why_not(p, lease_id, detail, dlen);
}

IMSPOOL_API enum imspool_result imspool_sweep(struct imspool *p, long *expired, char *detail,
                                              size_t dlen)
{
    char now[24];
    imspool_now_param(p, now);
    /* $1 is unused (an empty string): it keeps NOW_SQL's $2 numbering. */
    const char *params[] = {"", now};
    enum imspool_result r = IMSPOOL_OK;
    PGresult *res = imspool_q(p, EXPIRE_SQL("$1::text = '' AND"), 2, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    if (expired)
        *expired = atol(PQcmdTuples(res));
    PQclear(res);
    return IMSPOOL_OK;
}
