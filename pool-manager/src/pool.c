/* Pools and their members. */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_RANGE 1000000L

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

/* A pattern split at its one range "{A..B}". has_range false: no braces at all. */
struct pattern {
    char prefix[1024], suffix[1024];
    bool has_range;
    long lo, hi;
    int width;
};

static bool parse_pattern(const char *s, struct pattern *pt, char *detail, size_t dlen)
{
    memset(pt, 0, sizeof(*pt));
    const char *open = strchr(s, '{');
    if (open == NULL) {
        if (strchr(s, '}') || strlen(s) >= sizeof(pt->prefix)) {
            imspool_detail(detail, dlen, "pattern '%s': stray '}' or too long", s);
            return false;
        }
        strcpy(pt->prefix, s);
        return true;
    }
    const char *close = strchr(open, '}');
    const char *dots = strstr(open, "..");
    if (close == NULL || dots == NULL || dots > close || strchr(close + 1, '{') ||
        strchr(close + 1, '}') || (size_t)(open - s) >= sizeof(pt->prefix) ||
        strlen(close + 1) >= sizeof(pt->suffix)) {
        imspool_detail(detail, dlen, "pattern '%s' must hold one range {A..B}", s);
        return false;
    }
    size_t la = (size_t)(dots - open - 1), lb = (size_t)(close - dots - 2);
    bool digits = la > 0 && la == lb && la <= 7;
    for (const char *c = open + 1; digits && c < close; c++)
        digits = c == dots || c == dots + 1 || isdigit((unsigned char)*c);
    if (!digits) {
        imspool_detail(detail, dlen,
                       "pattern '%s': the range bounds must be decimal numbers written with "
                       "the same number of digits (e.g. {0000..9999})",
                       s);
        return false;
    }
    pt->has_range = true;
    pt->lo = strtol(open + 1, NULL, 10);
    pt->hi = strtol(dots + 2, NULL, 10);
    pt->width = (int)la;
    if (pt->lo > pt->hi || pt->hi - pt->lo + 1 > MAX_RANGE) {
        imspool_detail(detail, dlen, "pattern '%s': range must go up and hold at most %ld values",
                       s, MAX_RANGE);
        return false;
    }
    memcpy(pt->prefix, s, (size_t)(open - s));
    strcpy(pt->suffix, close + 1);
    return true;
}

IMSPOOL_API enum imspool_result imspool_members_add(struct imspool *p, const char *pool,
                                                    const char *impu_pattern,
                                                    const char *impi_pattern, long *added,
                                                    char *detail, size_t dlen)
{
    struct pattern u, i;
    if (added)
        *added = 0;
    if (pool == NULL || impu_pattern == NULL || impi_pattern == NULL) {
        imspool_detail(detail, dlen, "pool, IMPU pattern and IMPI pattern are required");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    if (!parse_pattern(impu_pattern, &u, detail, dlen) ||
        !parse_pattern(impi_pattern, &i, detail, dlen))
        return IMSPOOL_ERR_INVALID_ARG;
    if (!u.has_range && u.prefix[0]) {
        /* A single member: a range of one. */
        u.has_range = true;
        u.lo = u.hi = 0;
        u.width = 0;
    }
    if (i.has_range && (i.lo != u.lo || i.hi != u.hi || i.width != u.width)) {
        imspool_detail(detail, dlen, "the IMPI pattern's range must equal the IMPU pattern's");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    char lo[16], hi[16], w[8], ir[2];
    snprintf(lo, sizeof(lo), "%ld", u.lo);
    snprintf(hi, sizeof(hi), "%ld", u.hi);
    snprintf(w, sizeof(w), "%d", u.width);
    snprintf(ir, sizeof(ir), "%d", i.has_range ? 1 : 0);
    const char *params[] = {pool, u.prefix, u.suffix, i.prefix, i.suffix, lo, hi, w, ir};
    enum imspool_result r = IMSPOOL_OK;
    /* One statement: all members or none. width 0 means the single-member case. */
    PGresult *res = imspool_q(
        p,
        "INSERT INTO pool_members (pool_id, impu, impi) "
        "SELECT pl.id, "
        "  $2 || CASE WHEN $8::int = 0 THEN '' ELSE lpad(n::text, $8::int, '0') END || $3, "
        "  $4 || CASE WHEN $9::int = 1 THEN lpad(n::text, $8::int, '0') || $5 ELSE '' END "
        "FROM pools pl, generate_series($6::int, $7::int) n WHERE pl.name = $1",
        9, params, &r, detail, dlen);
    if (res == NULL) {
        if (r == IMSPOOL_ERR_DUPLICATE)
            imspool_detail(detail, dlen, "an IMPU of %s is a member already; nothing added",
                           impu_pattern);
        return r;
    }
    long n = atol(PQcmdTuples(res));
    PQclear(res);
    if (n == 0) {
        imspool_detail(detail, dlen, "no pool named %s", pool);
        return IMSPOOL_ERR_POOL_UNKNOWN;
    }
    if (added)
        *added = n;
    return IMSPOOL_OK;
}
