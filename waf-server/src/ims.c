/* IMS identities for tokens and the lease API (see ims.h). */
#include "ims.h"

#include "clientauth.h"
#include "grants.h"
#include "wcrypto.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEASE_SCOPE "ims.lease"

enum waf_ims_result waf_ims_mapped_on(PGconn *c, int64_t wid, struct waf_ims_id *out)
{
    waf_ims_id_clear(out);
    char ids[24], state[6], d[256];
    snprintf(ids, sizeof(ids), "%lld", (long long)wid);
    const char *params[] = {ids};
    /* The default IMPU first, then the other unbarred IMPUs (64 in all at most). */
    PGresult *res = waf_db_exec(
        c,
        "SELECT s.impi, d.uri, coalesce((SELECT json_agg(o.uri ORDER BY o.id) FROM "
        "  (SELECT i.uri, i.id FROM impus i WHERE i.subscription_id = s.id AND NOT i.barred "
        "    AND i.id <> d.id ORDER BY i.id LIMIT 63) o), '[]')::text "
        "FROM identity_mappings m "
        "JOIN ims_subscriptions s ON s.id = m.subscription_id AND s.status = 'active' "
        "JOIN impus d ON d.id = m.default_impu_id AND NOT d.barred "
        "WHERE m.web_identity_id = $1::bigint ORDER BY m.created_at, m.subscription_id LIMIT 1",
        1, params, state, d, sizeof(d));
    if (res == NULL)
        return WAF_IMS_UNAVAILABLE;
    enum waf_ims_result r = WAF_IMS_UNMAPPED;
    out->web_identity_id = wid;
    snprintf(out->sub, sizeof(out->sub), "u%lld", (long long)wid);
    if (PQntuples(res) == 1) {
        out->impi = strdup(PQgetvalue(res, 0, 0));
        out->impu[out->nimpu++] = strdup(PQgetvalue(res, 0, 1));
        json_t *others = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
        size_t i;
        json_t *v;
        json_array_foreach(others, i, v)
        {
            if (out->nimpu < WAF_IMS_MAX_IMPU)
                out->impu[out->nimpu++] = strdup(json_string_value(v));
        }
        json_decref(others);
        r = WAF_IMS_FOUND;
        for (size_t k = 0; k < out->nimpu; k++)
            if (out->impu[k] == NULL)
                r = WAF_IMS_UNAVAILABLE;
        if (out->impi == NULL)
            r = WAF_IMS_UNAVAILABLE;
    }
    PQclear(res);
    return r;
}

enum waf_ims_result waf_ims_mapped(struct waf_app *a, int64_t web_identity_id,
                                   struct waf_ims_id *out)
{
    waf_ims_id_clear(out);
    PGconn *c = waf_db_get(a->db);
    if (c == NULL)
        return WAF_IMS_UNAVAILABLE;
    enum waf_ims_result r = waf_ims_mapped_on(c, web_identity_id, out);
    waf_db_put(a->db, c);
    return r;
}

enum waf_ims_result waf_ims_user(struct waf_app *a, const char *issuer, const char *subject,
                                 struct waf_ims_id *out)
{
    waf_ims_id_clear(out);
    PGconn *c = waf_db_get(a->db);
    if (c == NULL)
        return WAF_IMS_UNAVAILABLE;
    const char *params[] = {issuer, subject};
    char state[6], d[256];
    PGresult *res = waf_db_exec(c,
                                "SELECT id, status = 'active' FROM web_identities "
                                "WHERE issuer = $1 AND subject = $2",
                                2, params, state, d, sizeof(d));
    enum waf_ims_result r = WAF_IMS_UNAVAILABLE;
    if (res && PQntuples(res) == 0)
        r = WAF_IMS_NO_IDENTITY;
    else if (res && PQgetvalue(res, 0, 1)[0] != 't')
        r = WAF_IMS_DISABLED;
    else if (res)
        r = waf_ims_mapped_on(c, atoll(PQgetvalue(res, 0, 0)), out);
    PQclear(res);
    waf_db_put(a->db, c);
    return r;
}

void waf_ims_holder(const char *client_id, char kind, const char *subject, char out[200])
{
    uint8_t md[32];
    unsigned n = 0;
    char b64[WAF_B64URL_LEN(32) + 1];
    EVP_Digest(subject, strlen(subject), md, &n, EVP_sha256(), NULL);
    waf_b64url_encode(md, sizeof(md), b64);
    snprintf(out, 200, "%.128s/%c:%s", client_id, kind, b64);
}

static void from_lease(const struct imspool_lease *l, struct waf_ims_id *out)
{
    snprintf(out->lease, sizeof(out->lease), "%s", l->id);
    snprintf(out->sub, sizeof(out->sub), "lease:%s", l->id);
    out->lease_exp = l->expires_ms / 1000;
    out->impi = strdup(l->impi);
    out->impu[0] = strdup(l->impu);
    out->nimpu = 1;
}

/* The holder's open lease in pool, into id[37]; 1 found, 0 none, -1 unavailable. */
static int open_lease_of(struct waf_app *a, PGconn *conn, const char *pool, const char *holder,
                         char id[37])
{
    PGconn *c = conn ? conn : waf_db_get(a->db);
    if (c == NULL)
        return -1;
    const char *params[] = {pool, holder};
    char state[6], d[256];
    PGresult *res = waf_db_exec(c,
                                "SELECT l.id FROM leases l JOIN pools p ON p.id = l.pool_id "
                                "WHERE p.name = $1 AND l.holder = $2 AND l.released_at IS NULL "
                                "AND l.expires_at > now() ORDER BY l.created_at DESC LIMIT 1",
                                2, params, state, d, sizeof(d));
    if (conn == NULL)
        waf_db_put(a->db, c);
    if (res == NULL)
        return -1;
    int found = PQntuples(res) == 1;
    if (found)
        snprintf(id, 37, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return found;
}

static void pool_unavailable(struct waf_resp *rs, const char *desc, long retry)
{
    char ra[24];
    snprintf(ra, sizeof(ra), "%ld", retry > 0 ? retry : 1);
    waf_oauth_error(rs, 503, "temporarily_unavailable", desc);
    waf_resp_header(rs, "Retry-After", ra);
}

bool waf_ims_lease_on(struct waf_app *a, PGconn *conn, const char *pool, const char *holder,
                      struct waf_ims_id *out, struct waf_resp *rs)
{
    waf_ims_id_clear(out);
    char d[256];
    struct imspool *p = waf_pools_get(a->pools, d, sizeof(d));
    if (p == NULL) {
        pool_unavailable(rs, "the identity pool is unavailable", 5);
        return false;
    }
    struct imspool_lease l;
    enum imspool_result r = IMSPOOL_ERR_HOLDER_CAP;
    for (int attempt = 0; attempt < 2 && r == IMSPOOL_ERR_HOLDER_CAP; attempt++) {
        r = imspool_allocate(p, pool, holder, 0, &l, d, sizeof(d));
        if (r != IMSPOOL_ERR_HOLDER_CAP)
            break;
        /* The same user again while its lease lives: renew it, same IMPU. */
        char id[37];
        int found = open_lease_of(a, conn, pool, holder, id);
        if (found < 0) {
            r = IMSPOOL_ERR_DB_UNAVAILABLE;
        } else if (found) {
            r = imspool_renew(p, id, 0, &l, d, sizeof(d));
            if (r == IMSPOOL_ERR_LEASE_RELEASED || r == IMSPOOL_ERR_LEASE_UNKNOWN)
                r = IMSPOOL_ERR_HOLDER_CAP; /* it ended meanwhile: allocate again */
        }
    }
    waf_pools_put(a->pools, p);
    switch (r) {
    case IMSPOOL_OK:
        from_lease(&l, out);
        if (out->impi && out->impu[0])
            return true;
        waf_ims_id_clear(out);
        waf_oauth_error(rs, 500, "server_error", "out of memory");
        return false;
    case IMSPOOL_ERR_POOL_EXHAUSTED:
        pool_unavailable(rs, "no temporary IMS identity is free; retry later", l.retry_after_s);
        return false;
    case IMSPOOL_ERR_POOL_DRAINING:
        pool_unavailable(rs, "the identity pool is closed for new leases", 60);
        return false;
    case IMSPOOL_ERR_HOLDER_CAP:
        waf_oauth_error(rs, 400, "invalid_grant",
                        "this user holds the most temporary identities the pool allows");
        return false;
    case IMSPOOL_ERR_POOL_UNKNOWN:
        waf_oauth_error(rs, 400, "unauthorized_client",
                        "the client's identity pool does not exist");
        return false;
    default:
        pool_unavailable(rs, "the identity pool is unavailable", 5);
        return false;
    }
}

bool waf_ims_lease(struct waf_app *a, const char *pool, const char *holder, struct waf_ims_id *out,
                   struct waf_resp *rs)
{
    return waf_ims_lease_on(a, NULL, pool, holder, out, rs);
}

int waf_ims_renew(struct waf_app *a, const char *lease_id, struct waf_ims_id *out)
{
    waf_ims_id_clear(out);
    char d[256];
    struct imspool *p = waf_pools_get(a->pools, d, sizeof(d));
    if (p == NULL)
        return -1;
    struct imspool_lease l;
    enum imspool_result r = imspool_renew(p, lease_id, 0, &l, d, sizeof(d));
    waf_pools_put(a->pools, p);
    if (r == IMSPOOL_OK) {
        from_lease(&l, out);
        return out->impi && out->impu[0] ? 1 : -1;
    }
    return r == IMSPOOL_ERR_LEASE_RELEASED || r == IMSPOOL_ERR_LEASE_UNKNOWN ? 0 : -1;
}

int waf_ims_release(struct waf_app *a, const char *lease_id, const char *reason)
{
    char d[256];
    struct imspool *p = waf_pools_get(a->pools, d, sizeof(d));
    if (p == NULL)
        return -1;
    enum imspool_result r = imspool_release(p, lease_id, reason, d, sizeof(d));
    waf_pools_put(a->pools, p);
    return r == IMSPOOL_OK || r == IMSPOOL_ERR_LEASE_RELEASED || r == IMSPOOL_ERR_LEASE_UNKNOWN ||
                   r == IMSPOOL_ERR_INVALID_ARG
               ? 0
               : -1;
}

/* A lease id as libimspool writes it: a lower-case UUID. */
static bool uuid_ok(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

/*
 * POST /leases/{id}/renew (optional ttl, seconds) and POST /leases/{id}/release (optional
 * reason): for the eP-CSCF, authenticated as a client allowed the scope ims.lease
 * (TS 24.371 7.3, 8.3: the end of a registration gives a pooled identity back).
 */
void waf_h_lease(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    struct waf_app *a = app;
    const char *rest = rq->path + strlen("/leases/");
    const char *slash = strchr(rest, '/');
    const char *op = slash ? slash + 1 : "";
    bool renew = strcmp(op, "renew") == 0, release = strcmp(op, "release") == 0;
    if (slash == NULL || (!renew && !release)) {
        waf_resp_static(rs, 404, "application/json", "{\"error\":\"not_found\"}");
        return;
    }
    struct waf_form *f = NULL;
    const struct waf_client *c = NULL;
    if (!waf_read_form(rq, rs, &f))
        return;
    char url[1400];
    snprintf(url, sizeof(url), "%s%.1200s", a->cfg->issuer, rq->path);
    if (!waf_client_authenticate(a, rq, f, url, false, rs, &c))
        goto out;
    if (!waf_client_scopes_allowed(c, LEASE_SCOPE)) {
        waf_oauth_error(rs, 403, "insufficient_scope",
                        "the client is not allowed the scope ims.lease");
        goto out;
    }
    if (!uuid_ok(rest, (size_t)(slash - rest))) {
        waf_oauth_error(rs, 404, "invalid_lease", "no such lease");
        goto out;
    }
    char id[37];
    memcpy(id, rest, 36);
    id[36] = '\0';
    long ttl = 0;
    const char *reason = "registration_ended";
    const char *t = waf_form_get(f, "ttl");
    if (renew && t) {
        char *end;
        ttl = strtol(t, &end, 10);
        if (*t < '0' || *t > '9' || *end || ttl < 1 || ttl > 604800) {
            waf_oauth_error(rs, 400, "invalid_request", "ttl must be 1..604800 seconds");
            goto out;
        }
    }
    if (release && waf_form_get(f, "reason")) {
        reason = waf_form_get(f, "reason");
        size_t n = strlen(reason);
        bool ok = n >= 1 && n <= 64;
        for (size_t i = 0; ok && i < n; i++)
            ok = (reason[i] >= 'a' && reason[i] <= 'z') || reason[i] == '_';
        if (!ok) {
            waf_oauth_error(rs, 400, "invalid_request", "reason must be 1..64 of [a-z_]");
            goto out;
        }
    }
    char d[256];
    struct imspool *p = waf_pools_get(a->pools, d, sizeof(d));
    if (p == NULL) {
        pool_unavailable(rs, "the identity pool is unavailable", 5);
        goto out;
    }
    struct imspool_lease l;
    enum imspool_result r = renew ? imspool_renew(p, id, (int)ttl, &l, d, sizeof(d))
                                  : imspool_release(p, id, reason, d, sizeof(d));
    waf_pools_put(a->pools, p);
    if (r == IMSPOOL_OK && renew) {
        int64_t now = (int64_t)time(NULL);
        waf_json_take(rs, 200,
                      json_pack("{s:s, s:s, s:s, s:I, s:I}", "lease_id", l.id, "impi", l.impi,
                                "impu", l.impu, "expires_at", (json_int_t)(l.expires_ms / 1000),
                                "expires_in", (json_int_t)(l.expires_ms / 1000 - now)));
        waf_resp_header(rs, "Cache-Control", "no-store");
    } else if (r == IMSPOOL_OK) {
        waf_json_take(rs, 200, json_pack("{s:s, s:s}", "lease_id", id, "state", "released"));
    } else if (r == IMSPOOL_ERR_LEASE_UNKNOWN) {
        waf_oauth_error(rs, 404, "invalid_lease", "no such lease");
    } else if (r == IMSPOOL_ERR_LEASE_RELEASED) {
        waf_oauth_error(rs, 409, "lease_ended", "the lease was released or has expired");
    } else if (r == IMSPOOL_ERR_INVALID_ARG) {
        waf_oauth_error(rs, 400, "invalid_request", d);
    } else {
        pool_unavailable(rs, "the identity pool is unavailable", 5);
    }
out:
    waf_client_put(a->clients, c);
    waf_form_free(f);
}
