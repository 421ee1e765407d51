/* Pools and their members. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

IMSPOOL_API enum imspool_result
imspool_pool_create(struct imspool *p, const struct imspool_pool_spec *s, char *detail, size_t dlen)
{
    if (s == NULL || s->name == NULL || s->realm == NULL) {
        imspool_detail(detail, dlen, "name and realm are required");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    char ttl[16], q[16], cap[16];
    snprintf(ttl, sizeof(ttl), "%d", s->lease_ttl_s);
    snprintf(q, sizeof(q), "%d", s->quarantine_s);
    snprintf(cap, sizeof(cap), "%d", s->max_per_holder ? s->max_per_holder : 1);
    const char *params[] = {s->name, s->realm, ttl, q, cap};
    enum imspool_result r = IMSPOOL_OK;
    PGresult *res = imspool_q(p,
                              "INSERT INTO pools (name, realm, lease_ttl_s, quarantine_s, "
                              "max_per_holder) VALUES ($1, $2, $3::int, $4::int, $5::int)",
                              5, params, &r, detail, dlen);
    if (res == NULL && r == IMSPOOL_ERR_DUPLICATE)
        imspool_detail(detail, dlen, "pool %s exists already", s->name);
    PQclear(res);
    return res ? IMSPOOL_OK : r;
}

IMSPOOL_API enum imspool_result
imspool_pool_update(struct imspool *p, const struct imspool_pool_spec *s, char *detail, size_t dlen)
{
    if (s == NULL || s->name == NULL) {
        imspool_detail(detail, dlen, "name is required");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    char ttl[16], q[16], cap[16];
    snprintf(ttl, sizeof(ttl), "%d", s->lease_ttl_s);
    snprintf(q, sizeof(q), "%d", s->quarantine_s);
    snprintf(cap, sizeof(cap), "%d", s->max_per_holder);
    const char *params[] = {s->name, s->realm, ttl, q, cap};
    enum imspool_result r = IMSPOOL_OK;
    PGresult *res =
        imspool_q(p,
                  "UPDATE pools SET realm = coalesce($2, realm), "
                  " lease_ttl_s = CASE WHEN $3::int = -1 THEN lease_ttl_s ELSE $3::int END, "
                  " quarantine_s = CASE WHEN $4::int = -1 THEN quarantine_s ELSE $4::int END, "
                  " max_per_holder = CASE WHEN $5::int = -1 THEN max_per_holder ELSE $5::int END, "
                  " updated_at = now() WHERE name = $1",
                  5, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    bool hit = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!hit) {
        imspool_detail(detail, dlen, "no pool named %s", s->name);
        return IMSPOOL_ERR_POOL_UNKNOWN;
    }
    return IMSPOOL_OK;
}

/* Runs a one-row UPDATE/DELETE on the pool called name; POOL_UNKNOWN when none matched. */
static enum imspool_result pool_change(struct imspool *p, const char *sql, const char *name,
                                       char *detail, size_t dlen)
{
    enum imspool_result r = IMSPOOL_OK;
    const char *params[] = {name};
    PGresult *res = imspool_q(p, sql, 1, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    bool hit = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!hit) {
        imspool_detail(detail, dlen, "no pool named %s", name);
        return IMSPOOL_ERR_POOL_UNKNOWN;
    }
    return IMSPOOL_OK;
}

IMSPOOL_API enum imspool_result imspool_pool_drain(struct imspool *p, const char *name,
                                                   char *detail, size_t dlen)
{
    return pool_change(p, "UPDATE pools SET state = 'draining' WHERE name = $1", name, detail,
                       dlen);
}

IMSPOOL_API enum imspool_result imspool_pool_delete(struct imspool *p, const char *name,
                                                    char *detail, size_t dlen)
{
    enum imspool_result r = pool_change(p, "DELETE FROM pools WHERE name = $1", name, detail, dlen);
    if (r == IMSPOOL_ERR_INVALID_ARG) { /* foreign key: members (and leases) still there */
        imspool_detail(detail, dlen, "pool %s still has members; remove them first", name);
        return IMSPOOL_ERR_POOL_NOT_EMPTY;
    }
    if (r == IMSPOOL_OK)
        imspool_redis_pool_deleted(p, name);
    return r;
}

IMSPOOL_API enum imspool_result imspool_pool_stats(struct imspool *p, const char *name,
                                                   struct imspool_stats *st, char *detail,
                                                   size_t dlen)
{
    char now[24];
    imspool_now_param(p, now);
    const char *params[] = {name, now};
    enum imspool_result r = IMSPOOL_OK;
    PGresult *res = imspool_q(
        p,
        "WITH m AS (SELECT mb.state, mb.open_lease IS NOT NULL AS leased, "
        "  coalesce(mb.quarantine_until > to_timestamp($2::bigint / 1000.0), false) "
        "    AS quarantined "
        "  FROM pools pl JOIN pool_members mb ON mb.pool_id = pl.id WHERE pl.name = $1) "
        "SELECT (SELECT count(*) FROM pools WHERE name = $1), "
        " count(*) FILTER (WHERE state = 'available' AND NOT leased AND NOT quarantined), "
        " count(*) FILTER (WHERE leased), "
        " count(*) FILTER (WHERE NOT leased AND quarantined AND state = 'available'), "
        " count(*) FILTER (WHERE state = 'disabled' AND NOT leased) FROM m",
        2, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    bool known = atol(PQgetvalue(res, 0, 0)) == 1;
    st->free = atol(PQgetvalue(res, 0, 1));
    st->leased = atol(PQgetvalue(res, 0, 2));
    st->quarantined = atol(PQgetvalue(res, 0, 3));
    st->disabled = atol(PQgetvalue(res, 0, 4));
    PQclear(res);
    if (!known) {
        imspool_detail(detail, dlen, "no pool named %s", name);
        return IMSPOOL_ERR_POOL_UNKNOWN;
    }
    return IMSPOOL_OK;
}
