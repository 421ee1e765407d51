/*
 * Public OAuth endpoints: RFC 8414 metadata, JWKS, health, metrics, the token endpoint
 * (RFC 6749 3.2, 5; grants dispatched to grants.h, client_credentials here), introspection
 * (RFC 7662) and revocation (RFC 7009). Tokens follow docs/token-profile.md (RFC 9068).
 */
#include "app.h"
#include "clientauth.h"
#include "form.h"
#include "grants.h"
#include "ims.h"
#include "issue.h"
#include "wredis.h"
#include "wcrypto.h"

#include <jansson.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void waf_h_healthz(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    (void)app;
    (void)rq;
    waf_resp_static(rs, 200, "application/json", "{\"status\":\"ok\"}");
}

/* Ready when PostgreSQL answers a query and Redis a PING; 503 naming what is not. */
void waf_h_readyz(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    (void)rq;
    struct waf_app *a = app;
    bool db_ok = false;
    PGconn *c = waf_db_get(a->db);
    if (c) {
        char state[6], d[128];
        PGresult *res = waf_db_exec(c, "SELECT 1", 0, NULL, state, d, sizeof(d));
        db_ok = res != NULL;
        PQclear(res);
        waf_db_put(a->db, c);
    }
    bool redis_ok = waf_redis_ping(a->redis);
    waf_json_take(rs, db_ok && redis_ok ? 200 : 503,
                  json_pack("{s:s, s:s, s:s}", "status", db_ok && redis_ok ? "ready" : "not ready",
                            "database", db_ok ? "ok" : "unreachable", "redis",
                            redis_ok ? "ok" : "unreachable"));
    waf_resp_header(rs, "Cache-Control", "no-store");
}

struct pool_names {
    char names[64][64];
    int n;
};

static void collect_pool(const struct imspool_pool_info *pool, void *arg)
{
    struct pool_names *pn = arg;
    if (pn->n < 64)
        snprintf(pn->names[pn->n++], 64, "%s", pool->name);
}

/* Gauges of the identity pools (the first 64 by name), read from PostgreSQL through
 * libimspool at scrape time; nothing when the database cannot be reached. */
static char *pool_gauges(struct waf_app *a)
{
    char d[256];
    struct imspool *p = waf_pools_get(a->pools, d, sizeof(d));
    if (p == NULL)
        return NULL;
    struct pool_names pn = {.n = 0};
    size_t cap = 512 + 64 * 4 * 120, len = 0;
    char *out = malloc(cap);
    if (out && imspool_pool_list(p, collect_pool, &pn, d, sizeof(d)) == IMSPOOL_OK) {
        len += (size_t)snprintf(out, cap,
                                "# HELP waf_pool_identities Temporary IMS identities of a pool by "
                                "state.\n# TYPE waf_pool_identities gauge\n");
        for (int i = 0; i < pn.n; i++) {
            struct imspool_stats st;
            if (imspool_pool_stats(p, pn.names[i], &st, d, sizeof(d)) != IMSPOOL_OK)
                continue;
            const char *names[] = {"free", "leased", "quarantined", "disabled"};
            long v[] = {st.free, st.leased, st.quarantined, st.disabled};
            for (int k = 0; k < 4; k++)
                len += (size_t)snprintf(out + len, cap - len,
                                        "waf_pool_identities{pool=\"%s\",state=\"%s\"} %ld\n",
                                        pn.names[i], names[k], v[k]);
        }
    } else {
        free(out);
        out = NULL;
    }
    waf_pools_put(a->pools, p);
    return out;
}

void waf_h_metrics(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    (void)rq;
    struct waf_app *a = app;
    char *text = waf_metrics_render(&a->metrics);
    char *pools = text ? pool_gauges(a) : NULL;
    if (text && pools) {
        size_t tl = strlen(text), pl = strlen(pools);
        char *both = realloc(text, tl + pl + 1);
        if (both) {
            memcpy(both + tl, pools, pl + 1);
            text = both;
        }
    }
    free(pools);
    if (text == NULL) {
        waf_resp_static(rs, 500, "text/plain", "out of memory\n");
        return;
    }
    waf_resp_take(rs, 200, "text/plain; version=0.0.4", text, strlen(text));
}

void waf_h_metadata(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    (void)rq;
    struct waf_app *a = app;
    waf_resp_text(rs, 200, "application/json", a->metadata, strlen(a->metadata));
    waf_resp_header(rs, "Cache-Control", "public, max-age=3600");
}

void waf_h_jwks(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    (void)rq;
    struct waf_app *a = app;
    char *jwks = waf_keystore_jwks(a->keys);
    if (jwks == NULL) {
        waf_resp_static(rs, 503, "application/json", "{\"error\":\"keys unavailable\"}");
        return;
    }
    waf_resp_take(rs, 200, "application/jwk-set+json", jwks, strlen(jwks));
    /* Verifiers refetch at most this often; a new key is published keys.overlap (>= this)
       before it signs. */
    waf_resp_header(rs, "Cache-Control", "public, max-age=300");
}

/* Parameters of the token endpoint (RFC 6749, 7636, 7523, 8693). A request carrying one
 * that does not belong to its grant is malformed; unknown parameters are ignored (RFC 6749
 * 3.2). Client authentication parameters belong to every grant. */
static const char *const KNOWN_PARAMS[] = {"code",
                                           "redirect_uri",
                                           "code_verifier",
                                           "refresh_token",
                                           "subject_token",
                                           "subject_token_type",
                                           "actor_token",
                                           "actor_token_type",
                                           "requested_token_type",
                                           "username",
                                           "password",
                                           "audience",
                                           "resource",
                                           "scope",
                                           NULL};

static bool listed(const char *const *list, const char *name)
{
    for (; *list; list++)
        if (strcmp(*list, name) == 0)
            return true;
    return false;
}

bool waf_grant_params_ok(const struct waf_form *f, const char *const *allowed, const char *grant,
                         struct waf_resp *rs)
{
    for (size_t i = 0; i < waf_form_count(f); i++) {
        const char *n = waf_form_name(f, i);
        if (listed(KNOWN_PARAMS, n) && !listed(allowed, n)) {
            char d[200];
            snprintf(d, sizeof(d), "parameter %s does not belong to the %s grant", n, grant);
            waf_oauth_error(rs, 400, "invalid_request", d);
            return false;
        }
    }
    return true;
}

static void client_credentials(struct waf_app *a, const struct waf_client *c,
                               const struct waf_form *f, struct waf_resp *rs)
{
    static const char *const allowed[] = {"scope", NULL};
    if (!waf_grant_params_ok(f, allowed, "client_credentials", rs))
        return;
    if (!(c->grants & WAF_GRANT_CLIENT_CREDENTIALS)) {
        waf_oauth_error(rs, 400, "unauthorized_client",
                        "this client may not use the client_credentials grant");
        return;
    }
    const char *scope = waf_form_get(f, "scope");
    if (scope == NULL)
        scope = c->scopes; /* RFC 6749 §3.3: the client's registered scopes */
    if (!waf_client_scopes_allowed(c, scope)) {
        waf_oauth_error(rs, 400, "invalid_scope",
                        "a requested scope is not allowed for this client");
        return;
    }
    char *token = NULL;
    struct waf_issued is;
    if (!waf_mint(a, c, c->client_id, scope, NULL, &token, &is)) {
        waf_oauth_error(rs, 500, "server_error", "could not issue the token");
        return;
    }
    waf_token_response(a, token, &is, scope, NULL, NULL, false, rs);
}

/* Checks the media type and parses the form body; false after answering. */
bool waf_read_form(const struct waf_req *rq, struct waf_resp *rs, struct waf_form **f)
{
    const char *ct = waf_req_header(rq, "Content-Type");
    size_t ctl = ct ? strcspn(ct, ";") : 0;
    while (ctl && ct[ctl - 1] == ' ')
        ctl--;
    if (ct == NULL || ctl != strlen("application/x-www-form-urlencoded") ||
        strncasecmp(ct, "application/x-www-form-urlencoded", ctl) != 0) {
        waf_oauth_error(rs, 400, "invalid_request",
                        "the body must be application/x-www-form-urlencoded");
        return false;
    }
    char d[200];
    if (waf_form_parse(rq->body, rq->body_len, f, d, sizeof(d)) != WAF_FORM_OK) {
        waf_oauth_error(rs, 400, "invalid_request", d);
        return false;
    }
    return true;
}

/* 429 slow_down with Retry-After. */
static void slow_down(struct waf_resp *rs, long retry, const char *desc)
{
    char ra[24];
    snprintf(ra, sizeof(ra), "%ld", retry > 0 ? retry : 1);
    waf_json_take(rs, 429,
                  json_pack("{s:s, s:s}", "error", "slow_down", "error_description", desc));
    waf_resp_header(rs, "Retry-After", ra);
    waf_resp_header(rs, "Cache-Control", "no-store");
}

/*
 * Token requests per client IP and minute (rate.token_per_ip_per_minute), then per client
 * (rate.token_per_minute), counted in Redis under the client_id the request claims
 * (Basic, body or client assertion), authenticated or not, so that secret guessing is
 * limited too. Keys carry the issuer: deployments sharing a Redis keep their own limits.
 * While Redis is unreachable requests are not limited (fail open: issuance goes on,
 * /readyz reports the outage). false after answering 429.
 */
static bool rate_ok(struct waf_app *a, const struct waf_req *rq, const struct waf_form *f,
                    struct waf_resp *rs)
{
    char key[400];
    long retry = 0;
    snprintf(key, sizeof(key), "waf:rl:%.200s:token:ip:%.64s", a->cfg->issuer, rq->client_ip);
    if (waf_redis_hit(a->redis, key, a->cfg->rate_token_per_ip_min, 60, &retry) == 0) {
        slow_down(rs, retry, "too many token requests from this address; retry later");
        return false;
    }
    char id[129];
    if (!waf_claimed_client(rq, f, id))
        return true;
    snprintf(key, sizeof(key), "waf:rl:%.200s:token:client:%.128s", a->cfg->issuer, id);
    if (waf_redis_hit(a->redis, key, a->cfg->rate_token_per_min, 60, &retry) == 0) {
        slow_down(rs, retry, "too many token requests for this client; retry later");
        return false;
    }
    return true;
}

void waf_h_token(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    struct waf_app *a = app;
    struct waf_form *f = NULL;
    if (!waf_read_form(rq, rs, &f))
        return;
    const char *grant = waf_form_get(f, "grant_type");
    const struct waf_client *c = NULL;
    char url[1100];
    snprintf(url, sizeof(url), "%s/token", a->cfg->issuer);
    bool code = grant && strcmp(grant, "authorization_code") == 0;
    bool refresh = grant && strcmp(grant, "refresh_token") == 0;
    if (!rate_ok(a, rq, f, rs))
        ;
    else if (grant == NULL)
        waf_oauth_error(rs, 400, "invalid_request", "grant_type is required");
    else if (strcmp(grant, "client_credentials") != 0 &&
             strcmp(grant, WAF_GRANT_EXCHANGE_URN) != 0 && !code && !refresh)
        waf_oauth_error(rs, 400, "unsupported_grant_type", "this grant type is not supported");
    else if (waf_client_authenticate(a, rq, f, url, code || refresh, rs, &c)) {
        if (code)
            waf_grant_authorization_code(a, c, f, rs);
        else if (refresh)
            waf_grant_refresh_token(a, c, f, rs);
        else if (strcmp(grant, "client_credentials") == 0)
            client_credentials(a, c, f, rs);
        else
            waf_grant_token_exchange(a, c, f, rs);
    }
    waf_client_put(a->clients, c);
    waf_form_free(f);
}

/* What introspection and revocation know of a token: NULL unless this WAF signed it with
 * a published key and it names this issuer. *exp gets its expiry. */
static json_t *our_token(struct waf_app *a, const char *token, int64_t *exp)
{
    char *payload = NULL;
    if (waf_keystore_verify(a->keys, token, strlen(token), &payload) != 0)
        return NULL;
    json_error_t je;
    json_t *claims = json_loads(payload, JSON_REJECT_DUPLICATES, &je);
    free(payload);
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    json_t *e = json_object_get(claims, "exp");
    if (!json_is_object(claims) || iss == NULL || strcmp(iss, a->cfg->issuer) != 0 ||
        !json_is_integer(e) || !json_is_string(json_object_get(claims, "jti"))) {
        json_decref(claims);
        return NULL;
    }
    *exp = json_integer_value(e);
    return claims;
}

/* 1 revoked, 0 not, -1 database unavailable. */
static int is_revoked(struct waf_app *a, const char *jti)
{
    PGconn *c = waf_db_get(a->db);
    if (c == NULL)
        return -1;
    const char *params[] = {jti};
    char state[6], d[256];
    PGresult *res = waf_db_exec(c, "SELECT 1 FROM revoked_tokens WHERE jti = $1", 1, params, state,
                                d, sizeof(d));
    waf_db_put(a->db, c);
    if (res == NULL)
        return -1;
    int revoked = PQntuples(res) > 0;
    PQclear(res);
    return revoked;
}

/*
 * The common start of /introspect and /revoke: the form, the calling client, the token
 * parameter and what this WAF knows of the token (*claims NULL: not one of its tokens, or
 * expired). false after answering. The caller frees *f, *caller and *claims either way.
 */
static bool about_token(struct waf_app *a, const struct waf_req *rq, bool public_ok,
                        struct waf_resp *rs, struct waf_form **f, const struct waf_client **caller,
                        json_t **claims, int64_t *exp)
{
    if (!waf_read_form(rq, rs, f))
        return false;
    char url[1100];
    snprintf(url, sizeof(url), "%s%s", a->cfg->issuer, rq->path);
    if (!waf_client_authenticate(a, rq, *f, url, public_ok, rs, caller))
        return false;
    const char *token = waf_form_get(*f, "token");
    if (token == NULL) {
        waf_oauth_error(rs, 400, "invalid_request", "token is required");
        return false;
    }
    *claims = our_token(a, token, exp);
    if (*claims && *exp <= (int64_t)time(NULL)) {
        json_decref(*claims);
        *claims = NULL;
    }
    return true;
}

static void inactive(struct waf_resp *rs)
{
    waf_resp_static(rs, 200, "application/json", "{\"active\":false}");
    waf_resp_header(rs, "Cache-Control", "no-store");
}

/* RFC 7662: any authenticated client; revoked, expired, unknown or foreign tokens give
 * {"active":false} and nothing else. */
void waf_h_introspect(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    struct waf_app *a = app;
    struct waf_form *f = NULL;
    const struct waf_client *caller = NULL;
    json_t *claims = NULL;
    int64_t exp = 0;
    if (!about_token(a, rq, false, rs, &f, &caller, &claims, &exp))
        goto out;
    if (claims == NULL) {
        inactive(rs);
        goto out;
    }
    int rv = is_revoked(a, json_string_value(json_object_get(claims, "jti")));
    if (rv < 0) {
        waf_oauth_error(rs, 503, "temporarily_unavailable", "revocations cannot be checked");
        waf_resp_header(rs, "Retry-After", "5");
        goto out;
    }
    if (rv) {
        inactive(rs);
        goto out;
    }
    json_object_set_new(claims, "active", json_true());
    json_object_set_new(claims, "token_type", json_string("Bearer"));
    waf_json_take(rs, 200, json_incref(claims));
    waf_resp_header(rs, "Cache-Control", "no-store");
out:
    json_decref(claims);
    waf_client_put(a->clients, caller);
    waf_form_free(f);
}

/* RFC 7009: the client that got the token (or an admin client) revokes it (public clients
 * name themselves with client_id); invalid and expired tokens are answered 200 as the RFC
 * asks. A refresh token revokes its whole family. The revocation is recorded in
 * revoked_tokens and added, before the answer, to the Redis set the P-CSCFs read. */
void waf_h_revoke(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    struct waf_app *a = app;
    struct waf_form *f = NULL;
    const struct waf_client *caller = NULL;
    json_t *claims = NULL;
    int64_t exp = 0;
    if (!about_token(a, rq, true, rs, &f, &caller, &claims, &exp))
        goto out;
    if (claims == NULL) {
        /* Not one of our live access tokens: maybe a refresh token (RFC 7009 2.1). */
        if (waf_revoke_refresh(a, caller, waf_form_get(f, "token")) < 0) {
            waf_oauth_error(rs, 503, "temporarily_unavailable", "the revocation failed; try again");
            waf_resp_header(rs, "Retry-After", "1");
        } else {
            waf_resp_static(rs, 200, "application/json", "{}");
        }
        goto out;
    }
    const char *owner = json_string_value(json_object_get(claims, "client_id"));
    if ((owner == NULL || strcmp(owner, caller->client_id) != 0) &&
        !waf_client_scopes_allowed(caller, "admin")) {
        waf_oauth_error(rs, 400, "unauthorized_client", "the token was issued to another client");
        goto out;
    }
    const char *jti = json_string_value(json_object_get(claims, "jti"));
    char expstr[24], reason[200];
    snprintf(expstr, sizeof(expstr), "%lld", (long long)exp);
    snprintf(reason, sizeof(reason), "revoked by client %s", caller->client_id);
    const char *params[] = {jti, expstr, reason, owner ? owner : ""};
    PGconn *c = waf_db_get(a->db);
    char state[6], d[256];
    PGresult *res = c ? waf_db_exec(c,
                                    "INSERT INTO revoked_tokens (jti, exp, reason, client_id) "
                                    "VALUES ($1, to_timestamp($2::bigint), $3, nullif($4, '')) "
                                    "ON CONFLICT (jti) DO NOTHING",
                                    4, params, state, d, sizeof(d))
                      : NULL;
    waf_db_put(a->db, c);
    if (res == NULL || !waf_redis_revoke(a->redis, a->cfg->revoked_key, jti, exp)) {
        PQclear(res);
        waf_oauth_error(rs, 503, "temporarily_unavailable",
                        "the revocation could not be recorded everywhere; try again");
        waf_resp_header(rs, "Retry-After", "1");
        goto out;
    }
    PQclear(res);
    /* A pooled identity goes back to its pool with its token (TS 24.371 6.2.3). */
    const char *lease = json_string_value(json_object_get(claims, "pool_lease"));
    if (lease && waf_ims_release(a, lease, "revoked") != 0) {
        waf_oauth_error(rs, 503, "temporarily_unavailable",
                        "the token's pool lease could not be released; try again");
        waf_resp_header(rs, "Retry-After", "1");
        goto out;
    }
    waf_resp_static(rs, 200, "application/json", "{}");
out:
    json_decref(claims);
    waf_client_put(a->clients, caller);
    waf_form_free(f);
}
