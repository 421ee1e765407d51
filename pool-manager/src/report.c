/* Listings and the invariant check. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

IMSPOOL_API enum imspool_result imspool_pool_list(struct imspool *p, imspool_pool_fn fn, void *arg,
                                                  char *detail, size_t dlen)
{
    enum imspool_result r = IMSPOOL_OK;
    PGresult *res = imspool_q(p,
                              "SELECT name, realm, lease_ttl_s, quarantine_s, max_per_holder, "
                              " state = 'draining', (SELECT count(*) FROM pool_members m "
                              " WHERE m.pool_id = pools.id) FROM pools ORDER BY name",
                              0, NULL, &r, detail, dlen);
    if (res == NULL)
        return r;
    for (int i = 0; i < PQntuples(res); i++) {
        struct imspool_pool_info info = {
            .name = PQgetvalue(res, i, 0),
            .realm = PQgetvalue(res, i, 1),
            .lease_ttl_s = atoi(PQgetvalue(res, i, 2)),
            .quarantine_s = atoi(PQgetvalue(res, i, 3)),
            .max_per_holder = atoi(PQgetvalue(res, i, 4)),
            .draining = PQgetvalue(res, i, 5)[0] == 't',
            .members = atol(PQgetvalue(res, i, 6)),
        };
        fn(&info, arg);
    }
    PQclear(res);
    return IMSPOOL_OK;
}

IMSPOOL_API enum imspool_result imspool_leases(struct imspool *p, const char *pool, int open_only,
                                               long limit, imspool_lease_fn fn, void *arg,
                                               char *detail, size_t dlen)
{
    char lim[24], open[2];
    snprintf(lim, sizeof(lim), "%ld", limit > 0 ? limit : 1000);
    snprintf(open, sizeof(open), "%d", open_only ? 1 : 0);
    const char *params[] = {pool, open, lim};
    enum imspool_result r = IMSPOOL_OK;
    PGresult *res = imspool_q(
        p,
        "SELECT (SELECT count(*) FROM pools WHERE name = $1), l.id, l.holder, m.impi, m.impu, "
        " l.release_reason, (extract(epoch FROM l.created_at) * 1000)::bigint, "
        " (extract(epoch FROM l.expires_at) * 1000)::bigint, "
        " coalesce((extract(epoch FROM l.released_at) * 1000)::bigint, 0) "
        "FROM pools pl LEFT JOIN leases l ON l.pool_id = pl.id "
        " AND ($2::int = 0 OR l.released_at IS NULL) "
        "LEFT JOIN pool_members m ON m.id = l.member_id WHERE pl.name = $1 "
        "ORDER BY l.created_at DESC LIMIT $3::bigint",
        3, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    if (PQntuples(res) == 0) {
        PQclear(res);
        imspool_detail(detail, dlen, "no pool named %s", pool);
        return IMSPOOL_ERR_POOL_UNKNOWN;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, 1))
            continue; /* the pool has no (matching) lease */
        struct imspool_lease_info info = {
            .id = PQgetvalue(res, i, 1),
            .holder = PQgetvalue(res, i, 2),
            .impi = PQgetvalue(res, i, 3),
            .impu = PQgetvalue(res, i, 4),
            .release_reason = PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5),
            .created_ms = atoll(PQgetvalue(res, i, 6)),
            .expires_ms = atoll(PQgetvalue(res, i, 7)),
            .released_ms = atoll(PQgetvalue(res, i, 8)),
        };
        fn(&info, arg);
    }
    PQclear(res);
    return IMSPOOL_OK;
}

/* Each check: a query whose rows are violations, first column a one-line description. */
static const char *const checks[] = {
    /* Two leases of one member whose lifetimes overlap (history included). */
    "SELECT 'member ' || m.impu || ': leases ' || a.id || ' and ' || b.id || ' overlap' "
    "FROM leases a JOIN leases b ON a.member_id = b.member_id AND a.id < b.id "
    "JOIN pool_members m ON m.id = a.member_id "
    "WHERE tstzrange(a.created_at, coalesce(a.released_at, 'infinity')) && "
    "      tstzrange(b.created_at, coalesce(b.released_at, 'infinity'))",
    /* A lease to another holder that started inside a quarantine. */
    "SELECT 'member ' || m.impu || ': lease ' || b.id || ' to ' || b.holder || "
    " ' started inside the quarantine of lease ' || a.id "
    "FROM leases a JOIN leases b ON a.member_id = b.member_id AND a.id <> b.id "
    "JOIN pool_members m ON m.id = a.member_id "
    "WHERE a.released_at IS NOT NULL AND b.created_at >= a.released_at "
    "  AND b.created_at < a.quarantine_until AND a.holder <> b.holder",
    /* A holder with more open leases in a pool than the pool allows. */
    "SELECT 'pool ' || pl.name || ': holder ' || l.holder || ' has ' || count(*) || "
    " ' open leases, more than ' || pl.max_per_holder "
    "FROM leases l JOIN pools pl ON pl.id = l.pool_id WHERE l.released_at IS NULL "
    "GROUP BY pl.name, pl.max_per_holder, l.holder HAVING count(*) > pl.max_per_holder",
    /* A member whose open_lease does not name its open lease. */
    "SELECT 'member ' || m.impu || ': open_lease does not match the leases table' "
    "FROM pool_members m LEFT JOIN leases l ON l.member_id = m.id AND l.released_at IS NULL "
    "WHERE m.open_lease IS DISTINCT FROM l.id",
    /* A member whose copy of its last ended lease (0002) differs from the leases table. */
    "SELECT 'member ' || m.impu || ': last_holder/last_released_at/quarantine_until do not "
    " match its last ended lease' "
    "FROM pool_members m LEFT JOIN LATERAL (SELECT holder, released_at, quarantine_until "
    "  FROM leases l WHERE l.member_id = m.id AND l.released_at IS NOT NULL "
    "  ORDER BY l.released_at DESC, l.id LIMIT 1) last ON true "
    "WHERE m.last_holder IS DISTINCT FROM last.holder "
    "   OR m.last_released_at IS DISTINCT FROM last.released_at "
    "   OR m.quarantine_until IS DISTINCT FROM last.quarantine_until",
    /* A pool IMPU that is also a permanent subscription's, as the P-CSCF compares IMPUs
       (0001: the schema cannot enforce this across the two tables). */
    "SELECT 'member ' || m.impu || ': IMPU is also the permanent IMPU ' || i.uri "
    "FROM pool_members m JOIN impus i ON impu_match_key(i.uri) = impu_match_key(m.impu)",
    /* A pool IMPI that is also a permanent subscription's IMPI. */
    "SELECT 'member ' || m.impu || ': IMPI ' || m.impi || ' is also a permanent "
    "subscription''s' FROM pool_members m JOIN ims_subscriptions s ON s.impi = m.impi",
    /* A released lease whose quarantine is not the pool's (release bypassed the library). */
    "SELECT 'lease ' || l.id || ': quarantine_until does not follow the pool''s quarantine' "
    "FROM leases l JOIN pools pl ON pl.id = l.pool_id WHERE l.released_at IS NOT NULL "
    "  AND l.quarantine_until IS DISTINCT FROM l.released_at + "
    "      make_interval(secs => pl.quarantine_s)",
};

IMSPOOL_API enum imspool_result imspool_check(struct imspool *p, long *violations,
                                              imspool_violation_fn fn, void *arg, char *detail,
                                              size_t dlen)
{
    long n = 0;
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        enum imspool_result r = IMSPOOL_OK;
        PGresult *res = imspool_q(p, checks[i], 0, NULL, &r, detail, dlen);
        if (res == NULL)
            return r;
        for (int k = 0; k < PQntuples(res); k++, n++)
            if (fn)
                fn(PQgetvalue(res, k, 0), arg);
        PQclear(res);
    }
    if (violations)
        *violations = n;
    return IMSPOOL_OK;
}
