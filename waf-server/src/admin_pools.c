/*
 * /admin/v1/pools and /admin/v1/leases: temporary-identity pools, their members and
 * leases. Every change goes through libimspool (wpool.h), which keeps the Redis side
 * (events, counters) in step; reads are plain SQL. libimspool commits on its own
 * connection, so the audit row cannot share its transaction: it is written on a
 * transaction opened before the change (which therefore cannot start without the
 * database) and committed right after it succeeds. No row that libimspool changes is
 * locked here (that would wait for ourselves).
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const LEASE_STATES[] = {"open", "all", NULL};

const struct admin_field admin_pool_fields[] = {
    {"name", AT_STRING, AF_REQUIRED | AF_IMMUTABLE, 1, 63, 0, 0, admin_check_pool_name, NULL, NULL,
     NULL},
    {"realm", AT_STRING, AF_REQUIRED, 1, 253, 0, 0, admin_check_realm, NULL, NULL, NULL},
    {"lease_ttl_s", AT_INT, AF_REQUIRED, 1, 604800, 0, 0, NULL, NULL, NULL, NULL},
    {"quarantine_s", AT_INT, AF_REQUIRED, 0, 2592000, 0, 0, NULL, NULL, NULL, NULL},
    {"max_per_holder", AT_INT, 0, 1, 1000000, 0, 0, NULL, NULL, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

const struct admin_field admin_members_fields[] = {
    {"impu_pattern", AT_STRING, AF_REQUIRED, 5, 1100, 0, 0, admin_check_impu, NULL, NULL, NULL},
    {"impi_pattern", AT_STRING, AF_REQUIRED, 1, 1100, 0, 0, admin_check_impi, NULL, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

const struct admin_field admin_leases_query[] = {
    {"state", AT_STRING, 0, 1, 8, 0, 0, NULL, LEASE_STATES, NULL, NULL},
    {"limit", AT_INT, 0, 1, 1000, 0, 0, NULL, NULL, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

#define POOL_JSON                                                                                  \
    "json_build_object('name', name, 'realm', realm, 'lease_ttl_s', lease_ttl_s, "                 \
    " 'quarantine_s', quarantine_s, 'max_per_holder', max_per_holder, 'state', state, "            \
    " 'members', (SELECT count(*) FROM pool_members m WHERE m.pool_id = pools.id), "               \
    " 'created_at', " ADMIN_TS("created_at") ", 'updated_at', " ADMIN_TS("updated_at") ")"

#define LEASE_JSON                                                                                 \
    "json_build_object('id', l.id, 'pool', p.name, 'holder', l.holder, 'impi', m.impi, "           \
    " 'impu', m.impu, 'created_at', " ADMIN_TS(                                                    \
        "l.created_at") ", "                                                                       \
                        " 'expires_at', " ADMIN_TS("l.expires_at") ", 'released_at', " ADMIN_TS(   \
                            "l.released_at") ", "                                                  \
                                             " 'release_reason', l.release_reason, "               \
                                             "'renew_count', l.renew_count) "                      \
                                             "FROM leases l JOIN pools p ON p.id = l.pool_id "     \
                                             "JOIN pool_members m ON m.id = l.member_id "

#define POOL_BY_NAME "SELECT " POOL_JSON " FROM pools WHERE name = $1"

#define LEASE_BY_ID "SELECT " LEASE_JSON "WHERE l.id = $1::uuid"

/* The pool named name; NULL after answering 404 or a failure. */
static json_t *load(struct admin_ctx *x, PGconn *c, const char *name)
{
    return admin_load(x, c, POOL_BY_NAME, name, "pool named");
}

/* Answers a libimspool failure; field names the body member an INVALID_ARG is about. */
static void pool_problem(struct admin_ctx *x, enum imspool_result r, const char *detail,
                         const char *field)
{
    switch (r) {
    case IMSPOOL_ERR_POOL_UNKNOWN:
    case IMSPOOL_ERR_LEASE_UNKNOWN:
    case IMSPOOL_ERR_MEMBER_UNKNOWN:
        admin_problem(x, AP_NOT_FOUND, NULL, "%s", detail);
        return;
    case IMSPOOL_ERR_DUPLICATE:
    case IMSPOOL_ERR_POOL_NOT_EMPTY:
    case IMSPOOL_ERR_POOL_DRAINING:
    case IMSPOOL_ERR_LEASE_RELEASED:
        admin_problem(x, AP_CONFLICT, NULL, "%s", detail);
        return;
    case IMSPOOL_ERR_INVALID_ARG:
        admin_invalid(x, field, "%s", detail);
        return;
    case IMSPOOL_ERR_DB_UNAVAILABLE:
        admin_problem(x, AP_UNAVAILABLE, NULL, "the database cannot be reached");
        waf_resp_header(x->rs, "Retry-After", "5");
        return;
    default:
        admin_problem(x, AP_INTERNAL, NULL, "pool operation failed: %s", imspool_strerror(r));
        return;
    }
}

/* A libimspool handle; NULL after answering 503. */
static struct imspool *handle(struct admin_ctx *x)
{
    char d[256];
    struct imspool *p = waf_pools_get(x->a->pools, d, sizeof(d));
    if (p == NULL) {
        admin_problem(x, AP_UNAVAILABLE, NULL, "the pool store cannot be reached");
        waf_resp_header(x->rs, "Retry-After", "5");
    }
    return p;
}

/* Audits a change libimspool made and commits; on an audit failure the change stands,
 * so it is logged (without values) and the request still succeeds. */
static void audit_after(struct admin_ctx *x, PGconn *c, const char *action, const char *type,
                        const char *id, const json_t *before, const json_t *after)
{
    if (admin_audit(x, c, action, type, id, before, after) && admin_commit(x, c))
        return;
    fprintf(stderr, "waf-server: admin: %s of %s %s done, but its audit record failed\n", action,
            type, id);
}

static int intval(const json_t *o, const char *name, int dflt)
{
    const json_t *v = json_object_get(o, name);
    return v ? (int)json_integer_value(v) : dflt;
}

void admin_pools_list(struct admin_ctx *x)
{
    json_t *rows = NULL;
    if (admin_fetch_rows(x, "SELECT " POOL_JSON " FROM pools ORDER BY name", 0, NULL, &rows))
        admin_json(x, 200, json_pack("{s:o}", "items", rows));
}

void admin_pool_get(struct admin_ctx *x)
{
    json_t *p = admin_fetch(x, POOL_BY_NAME, "pool named");
    struct imspool *h = p ? handle(x) : NULL;
    if (h == NULL) {
        json_decref(p);
        return;
    }
    struct imspool_stats st;
    char d[256];
    enum imspool_result r = imspool_pool_stats(h, x->param, &st, d, sizeof(d));
    waf_pools_put(x->a->pools, h);
    if (r != IMSPOOL_OK) {
        json_decref(p);
        pool_problem(x, r, d, "name");
        return;
    }
    json_object_set_new(p, "stats",
                        json_pack("{s:I, s:I, s:I, s:I}", "free", (json_int_t)st.free, "leased",
                                  (json_int_t)st.leased, "quarantined", (json_int_t)st.quarantined,
                                  "disabled", (json_int_t)st.disabled));
    admin_json(x, 200, p);
}

void admin_pools_create(struct admin_ctx *x)
{
    const json_t *b = x->body;
    const char *name = json_string_value(json_object_get(b, "name"));
    struct imspool_pool_spec spec = {.name = name,
                                     .realm = json_string_value(json_object_get(b, "realm")),
                                     .lease_ttl_s = intval(b, "lease_ttl_s", 0),
                                     .quarantine_s = intval(b, "quarantine_s", 0),
                                     .max_per_holder = intval(b, "max_per_holder", 1)};
    PGconn *c = admin_conn(x);
    struct imspool *h = NULL;
    json_t *after = NULL;
    char d[256];
    if (c == NULL || !admin_begin(x, c) || (h = handle(x)) == NULL)
        goto out;
    enum imspool_result r = imspool_pool_create(h, &spec, d, sizeof(d));
    if (r != IMSPOOL_OK) {
        if (r == IMSPOOL_ERR_DUPLICATE)
            admin_problem(x, AP_CONFLICT,
                          json_pack("[{s:s, s:s}]", "field", "name", "message",
                                    "a pool of this name exists already"),
                          "a pool named %s exists already", name);
        else
            pool_problem(x, r, d, "realm");
        goto out;
    }
    if ((after = load(x, c, name)) == NULL)
        goto out;
    audit_after(x, c, "pool.create", "pool", name, NULL, after);
    admin_location(x, "pools", name);
    admin_json(x, 201, after);
    after = NULL;
out:
    waf_pools_put(x->a->pools, h);
    admin_put(x, c);
    json_decref(after);
}

enum pool_op { POOL_UPDATE, POOL_DRAIN, POOL_DELETE };

/* A change of the pool of the path: update (from the body), drain or delete. */
static void pool_change(struct admin_ctx *x, enum pool_op op)
{
    static const char *const ACTIONS[] = {"pool.update", "pool.drain", "pool.delete"};
    const json_t *b = x->body; /* update only: absent members stay (-1) */
    struct imspool_pool_spec spec = {.name = x->param,
                                     .realm = json_string_value(json_object_get(b, "realm")),
                                     .lease_ttl_s = intval(b, "lease_ttl_s", -1),
                                     .quarantine_s = intval(b, "quarantine_s", -1),
                                     .max_per_holder = intval(b, "max_per_holder", -1)};
    PGconn *c = admin_conn(x);
    struct imspool *h = NULL;
    json_t *before = NULL, *after = NULL;
    char d[256];
    if (c == NULL || !admin_begin(x, c) || (before = load(x, c, x->param)) == NULL ||
        (h = handle(x)) == NULL)
        goto out;
    enum imspool_result r = op == POOL_UPDATE  ? imspool_pool_update(h, &spec, d, sizeof(d))
                            : op == POOL_DRAIN ? imspool_pool_drain(h, x->param, d, sizeof(d))
                                               : imspool_pool_delete(h, x->param, d, sizeof(d));
    if (r != IMSPOOL_OK) {
        pool_problem(x, r, d, op == POOL_UPDATE ? "realm" : "name");
        goto out;
    }
    if (op != POOL_DELETE && (after = load(x, c, x->param)) == NULL)
        goto out;
    audit_after(x, c, ACTIONS[op], "pool", x->param, before, after);
    if (after) {
        admin_json(x, 200, after);
        after = NULL;
    } else {
        admin_no_content(x);
    }
out:
    waf_pools_put(x->a->pools, h);
    admin_put(x, c);
    json_decref(before);
    json_decref(after);
}

void admin_pool_patch(struct admin_ctx *x)
{
    pool_change(x, POOL_UPDATE);
}

void admin_pool_drain(struct admin_ctx *x)
{
    pool_change(x, POOL_DRAIN);
}

void admin_pool_delete(struct admin_ctx *x)
{
    pool_change(x, POOL_DELETE);
}

/*
 * Refuses patterns that would make a permanent identity temporary too: an IMPU (as the
 * P-CSCF compares them) of impus, or an IMPI of ims_subscriptions. The patterns are
 * expanded here as libimspool will expand them (one {A..B} range of equal-width decimal
 * bounds); a pattern of another form is left to libimspool to refuse. false after
 * answering 409 or a failure.
 */
static bool not_permanent(struct admin_ctx *x, PGconn *c, const char *impu_pattern,
                          const char *impi_pattern)
{
    const char *params[] = {impu_pattern, impi_pattern};
    json_t *hit = NULL;
    if (!admin_query_json(
            x, c,
            "WITH pat AS (SELECT regexp_match($1, '^([^{}]*)\\{([0-9]{1,7})\\.\\.([0-9]{1,7})\\}"
            "([^{}]*)$') AS u, regexp_match($2, '^([^{}]*)\\{([0-9]{1,7})\\.\\.([0-9]{1,7})\\}"
            "([^{}]*)$') AS i), "
            " gen AS (SELECT CASE WHEN u IS NULL THEN $1 "
            "   ELSE u[1] || lpad(n::text, length(u[2]), '0') || u[4] END AS impu, "
            "  CASE WHEN i IS NULL THEN $2 "
            "   ELSE i[1] || lpad(n::text, length(i[2]), '0') || i[4] END AS impi "
            "  FROM pat, generate_series(coalesce(u[2]::int, 0), "
            "   CASE WHEN u IS NULL OR u[3]::int - u[2]::int > 1000000 THEN coalesce(u[2]::int, 0) "
            "   ELSE u[3]::int END) n) "
            "SELECT coalesce((SELECT json_build_object('field', 'impu_pattern', 'value', i.uri) "
            "  FROM impus i WHERE impu_match_key(i.uri) IN "
            "  (SELECT impu_match_key(impu) FROM gen) LIMIT 1), "
            " (SELECT json_build_object('field', 'impi_pattern', 'value', s.impi) "
            "  FROM ims_subscriptions s WHERE s.impi IN (SELECT impi FROM gen) LIMIT 1))",
            2, params, &hit))
        return false;
    if (hit == NULL)
        return true;
    const char *field = json_string_value(json_object_get(hit, "field"));
    admin_problem(x, AP_CONFLICT,
                  json_pack("[{s:s, s:s}]", "field", field, "message",
                            "names a permanent identity of a web identity's subscription"),
                  "%s %s belongs to a permanent subscription; nothing added",
                  strcmp(field, "impu_pattern") == 0 ? "IMPU" : "IMPI",
                  json_string_value(json_object_get(hit, "value")));
    json_decref(hit);
    return false;
}

void admin_pool_members_add(struct admin_ctx *x)
{
    const char *impu = json_string_value(json_object_get(x->body, "impu_pattern"));
    const char *impi = json_string_value(json_object_get(x->body, "impi_pattern"));
    PGconn *c = admin_conn(x);
    struct imspool *h = NULL;
    json_t *before = NULL;
    char d[256];
    if (c == NULL || !admin_begin(x, c) || (before = load(x, c, x->param)) == NULL ||
        !not_permanent(x, c, impu, impi) || (h = handle(x)) == NULL)
        goto out;
    long added = 0;
    enum imspool_result r = imspool_members_add(h, x->param, impu, impi, &added, d, sizeof(d));
    if (r != IMSPOOL_OK) {
        pool_problem(x, r, d, strstr(d, "IMPI") ? "impi_pattern" : "impu_pattern");
        goto out;
    }
    json_t *after = json_pack("{s:s, s:s, s:I}", "impu_pattern", impu, "impi_pattern", impi,
                              "added", (json_int_t)added);
    json_t *was = json_pack("{s:O}", "members", json_object_get(before, "members"));
    audit_after(x, c, "pool.members.add", "pool", x->param, was, after);
    json_decref(was);
    admin_json(x, 201, after);
out:
    waf_pools_put(x->a->pools, h);
    admin_put(x, c);
    json_decref(before);
}

static json_t *rfc3339(int64_t ms)
{
    if (ms == 0)
        return json_null();
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

static void lease_row(const struct imspool_lease_info *l, void *arg)
{
    json_t *items = arg;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", l->id, "holder", l->holder, "impi", l->impi,
                          "impu", l->impu);
    if (o == NULL)
        return;
    json_object_set_new(o, "created_at", rfc3339(l->created_ms));
    json_object_set_new(o, "expires_at", rfc3339(l->expires_ms));
    json_object_set_new(o, "released_at", rfc3339(l->released_ms));
    json_object_set_new(o, "release_reason",
                        l->release_reason ? json_string(l->release_reason) : json_null());
    json_array_append_new(items, o);
}

void admin_pool_leases(struct admin_ctx *x)
{
    const char *state = admin_q_str(x, "state");
    json_t *l = json_object_get(x->query, "limit");
    long limit = l ? (long)json_integer_value(l) : 100;
    struct imspool *h = handle(x);
    if (h == NULL)
        return;
    json_t *items = json_array();
    char d[256];
    enum imspool_result r = imspool_leases(h, x->param, state == NULL || strcmp(state, "open") == 0,
                                           limit, lease_row, items, d, sizeof(d));
    waf_pools_put(x->a->pools, h);
    if (r != IMSPOOL_OK) {
        json_decref(items);
        pool_problem(x, r, d, "name");
        return;
    }
    admin_json(x, 200, json_pack("{s:o}", "items", items));
}

void admin_lease_release(struct admin_ctx *x)
{
    PGconn *c = admin_conn(x);
    struct imspool *h = NULL;
    json_t *before = NULL, *after = NULL;
    const char *params[] = {x->param};
    char d[256];
    if (c == NULL || !admin_begin(x, c) ||
        (before = admin_load(x, c, LEASE_BY_ID, x->param, "lease with id")) == NULL)
        goto out;
    if (!json_is_null(json_object_get(before, "released_at"))) {
        admin_problem(x, AP_CONFLICT, NULL, "lease %s has ended already (%s)", x->param,
                      json_string_value(json_object_get(before, "release_reason")));
        goto out;
    }
    if ((h = handle(x)) == NULL)
        goto out;
    enum imspool_result r = imspool_release(h, x->param, "forced", d, sizeof(d));
    if (r != IMSPOOL_OK) {
        pool_problem(x, r, d, "id");
        goto out;
    }
    if (!admin_query_json(x, c, LEASE_BY_ID, 1, params, &after) || after == NULL)
        goto out;
    audit_after(x, c, "lease.release", "lease", x->param, before, after);
    admin_json(x, 200, after);
    after = NULL;
out:
    waf_pools_put(x->a->pools, h);
    admin_put(x, c);
    json_decref(before);
    json_decref(after);
}
