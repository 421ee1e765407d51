/* Leases: allocate, renew, release, sweep. PostgreSQL is the only authority: a lease
 * exists if and only if its row is committed. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

#define NOW_SQL           "to_timestamp($2::bigint / 1000.0)"
#define ALLOCATE_ATTEMPTS 5

static void copy_lease(PGresult *res, int row, int id_col, struct imspool_lease *out)
{
    snprintf(out->id, sizeof(out->id), "%s", PQgetvalue(res, row, id_col));
    snprintf(out->impi, sizeof(out->impi), "%s", PQgetvalue(res, row, id_col + 1));
    snprintf(out->impu, sizeof(out->impu), "%s", PQgetvalue(res, row, id_col + 2));
    out->expires_ms = atoll(PQgetvalue(res, row, id_col + 3));
}

/*
 * One call of imspool_allocate() (sql/migrations/0003): the holder's advisory lock, inline
 * expiry, the cap, the member pick (FOR UPDATE SKIP LOCKED) and the lease happen in one
 * server-side transaction, so an allocation costs one round trip. A unique violation (a
 * lease inserted around the library) comes back as IMSPOOL_ERR_DUPLICATE and is retried.
 */
static enum imspool_result allocate_once(struct imspool *p, const char *pool, const char *holder,
                                         int ttl_s, struct imspool_lease *out, char *detail,
                                         size_t dlen)
{
    enum imspool_result r = IMSPOOL_OK;
    char now[24], ttl[16];
    imspool_now_param(p, now);
    snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    const char *params[] = {pool, now, holder, ttl};
    PGresult *res = imspool_qs(p, IMSPOOL_STMT_ALLOCATE,
                               "SELECT status, lease_id, impi, impu, "
                               " (extract(epoch FROM expires_at) * 1000)::bigint, retry_after, "
                               " holder FROM imspool_allocate($1, $3, $4::int, " NOW_SQL ")",
                               4, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    int last = PQntuples(res) - 1;
    /* Rows before the last: leases of the pool the call ended at their expiry; with the
       new lease, one batch of events. */
    struct imspool_event one[8], *ev = last + 1 <= 8 ? one : calloc((size_t)last + 1, sizeof(*ev));
    size_t nev = 0;
    for (int i = 0; ev && i < last; i++)
        ev[nev++] = (struct imspool_event){"expired",
                                           PQgetvalue(res, i, 1),
                                           pool,
                                           PQgetvalue(res, i, 6),
                                           PQgetvalue(res, i, 2),
                                           PQgetvalue(res, i, 3),
                                           "expired",
                                           atoll(PQgetvalue(res, i, 4))};
    const char *st = last >= 0 ? PQgetvalue(res, last, 0) : "";
    if (strcmp(st, "ok") == 0) {
        copy_lease(res, last, 1, out);
        if (ev)
            ev[nev++] = (struct imspool_event){"allocated", out->id,   pool, holder,
                                               out->impi,   out->impu, NULL, out->expires_ms};
        r = IMSPOOL_OK;
    } else if (strcmp(st, "pool_unknown") == 0) {
        imspool_detail(detail, dlen, "no pool named %s", pool);
        r = IMSPOOL_ERR_POOL_UNKNOWN;
    } else if (strcmp(st, "pool_draining") == 0) {
        imspool_detail(detail, dlen, "pool %s is draining: no new leases", pool);
        r = IMSPOOL_ERR_POOL_DRAINING;
    } else if (strcmp(st, "holder_cap") == 0) {
        imspool_detail(detail, dlen, "holder has the maximum of open leases in %s", pool);
        r = IMSPOOL_ERR_HOLDER_CAP;
    } else if (strcmp(st, "pool_exhausted") == 0) {
        out->retry_after_s = PQgetisnull(res, last, 5) ? -1 : atoll(PQgetvalue(res, last, 5));
        imspool_detail(detail, dlen, "pool %s has no free member", pool);
        r = IMSPOOL_ERR_POOL_EXHAUSTED;
    } else {
        imspool_detail(detail, dlen, "imspool_allocate() gave no status (schema too old?)");
        r = IMSPOOL_ERR_DB_UNAVAILABLE;
    }
    imspool_redis_events(p, ev, ev ? nev : (size_t)last + 1);
    if (ev != one)
        free(ev);
    PQclear(res);
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
    PGresult *res = imspool_qs(
        p, IMSPOOL_STMT_RENEW,
        "UPDATE leases l SET expires_at = " NOW_SQL " + make_interval(secs => "
        " CASE WHEN $3::int = 0 THEN pl.lease_ttl_s ELSE $3::int END), "
        " renew_count = renew_count + 1 "
        "FROM pools pl, pool_members m WHERE l.id = $1::uuid AND pl.id = l.pool_id "
        " AND m.id = l.member_id AND l.released_at IS NULL AND l.expires_at > " NOW_SQL
        " RETURNING l.id, m.impi, m.impu, (extract(epoch FROM l.expires_at) * 1000)::bigint, "
        " pl.name, l.holder",
        3, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    bool ok = PQntuples(res) == 1;
    if (ok) {
        copy_lease(res, 0, 0, out);
        struct imspool_event e = {
            "renewed", out->id, PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5), out->impi,
            out->impu, NULL,    out->expires_ms};
        imspool_redis_events(p, &e, 1);
    }
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
    PGresult *res = imspool_qs(
        p, IMSPOOL_STMT_RELEASE,
        /* The end: now, or the expiry of a lease that ran out before anyone swept it
           (then it ends as the sweeper would have ended it). */
        "WITH ended AS (UPDATE leases l SET released_at = CASE WHEN l.expires_at <= " NOW_SQL
        "  THEN l.expires_at ELSE greatest(" NOW_SQL ", l.created_at) END, "
        "  release_reason = CASE WHEN l.expires_at <= " NOW_SQL " THEN 'expired' ELSE $3 END, "
        "  quarantine_until = CASE WHEN l.expires_at <= " NOW_SQL " THEN l.expires_at "
        "  ELSE greatest(" NOW_SQL ", l.created_at) END + make_interval(secs => pl.quarantine_s) "
        "  FROM pools pl WHERE l.id = $1::uuid AND pl.id = l.pool_id AND l.released_at IS NULL "
        "  RETURNING l.id, l.member_id, l.holder, l.released_at, l.quarantine_until, "
        "   l.expires_at, pl.name, l.release_reason) "
        "UPDATE pool_members m SET open_lease = NULL, last_holder = ended.holder, "
        " last_released_at = ended.released_at, quarantine_until = ended.quarantine_until "
        "FROM ended WHERE m.id = ended.member_id "
        "RETURNING ended.id, ended.name, ended.holder, m.impi, m.impu, "
        " (extract(epoch FROM ended.expires_at) * 1000)::bigint, ended.release_reason",
        3, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return why_not(p, lease_id, detail, dlen);
    }
    bool overdue = strcmp(PQgetvalue(res, 0, 6), "expired") == 0 && strcmp(params[2], "expired");
    struct imspool_event e = {overdue ? "expired" : "released",
                              PQgetvalue(res, 0, 0),
                              PQgetvalue(res, 0, 1),
                              PQgetvalue(res, 0, 2),
                              PQgetvalue(res, 0, 3),
                              PQgetvalue(res, 0, 4),
                              PQgetvalue(res, 0, 6),
                              atoll(PQgetvalue(res, 0, 5))};
    imspool_redis_events(p, &e, 1);
    if (overdue)
        imspool_detail(detail, dlen, "lease %s had expired before the release; ended at its expiry",
                       lease_id);
    PQclear(res);
    return overdue ? IMSPOOL_ERR_LEASE_RELEASED : IMSPOOL_OK;
}

IMSPOOL_API enum imspool_result imspool_sweep(struct imspool *p, long *expired, char *detail,
                                              size_t dlen)
{
    char now[24];
    imspool_now_param(p, now);
    /* Ends overdue leases at their expiry, quarantined from then, and updates their
       members in the same statement (the allocator does the same per pool, in
       imspool_allocate()). */
    const char *params[] = {now};
    enum imspool_result r = IMSPOOL_OK;
    PGresult *res = imspool_qs(
        p, IMSPOOL_STMT_SWEEP,
        "WITH ended AS (UPDATE leases l SET released_at = l.expires_at, "
        "  release_reason = 'expired', quarantine_until = l.expires_at + "
        "  make_interval(secs => pl.quarantine_s) FROM pools pl WHERE pl.id = l.pool_id "
        "  AND l.released_at IS NULL AND l.expires_at <= to_timestamp($1::bigint / 1000.0) "
        "  RETURNING l.id, l.member_id, l.holder, l.released_at, l.quarantine_until, pl.name) "
        "UPDATE pool_members m SET open_lease = NULL, last_holder = ended.holder, "
        " last_released_at = ended.released_at, quarantine_until = ended.quarantine_until "
        "FROM ended WHERE m.id = ended.member_id "
        "RETURNING ended.id, ended.name, ended.holder, m.impi, m.impu, "
        " (extract(epoch FROM ended.released_at) * 1000)::bigint",
        1, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    size_t n = (size_t)PQntuples(res);
    struct imspool_event *ev = n ? calloc(n, sizeof(*ev)) : NULL;
    for (size_t i = 0; ev && i < n; i++)
        ev[i] = (struct imspool_event){"expired",
                                       PQgetvalue(res, (int)i, 0),
                                       PQgetvalue(res, (int)i, 1),
                                       PQgetvalue(res, (int)i, 2),
                                       PQgetvalue(res, (int)i, 3),
                                       PQgetvalue(res, (int)i, 4),
                                       "expired",
                                       atoll(PQgetvalue(res, (int)i, 5))};
    imspool_redis_events(p, ev, n);
    free(ev);
    if (expired)
        *expired = PQntuples(res);
    PQclear(res);
    return IMSPOOL_OK;
}
