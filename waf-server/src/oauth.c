/*
 * Public OAuth endpoints: RFC 8414 metadata, JWKS, and the token endpoint (RFC 6749 §3.2,
 * §5) with client authentication (client_secret_basic, client_secret_post) and the
 * client_credentials grant. Tokens follow docs/token-profile.md (RFC 9068 at+jwt).
 */
#include "app.h"
#include "form.h"
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

static void json_take(struct waf_resp *rs, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL) {
        waf_resp_static(rs, 500, "text/plain", "out of memory\n");
        return;
    }
    waf_resp_take(rs, status, "application/json", s, strlen(s));
}

/* RFC 6749 §5.2 error response. */
static void oauth_error(struct waf_resp *rs, int status, const char *error, const char *desc)
{
    json_take(rs, status, json_pack("{s:s, s:s}", "error", error, "error_description", desc));
    waf_resp_header(rs, "Cache-Control", "no-store");
    waf_resp_header(rs, "Pragma", "no-cache");
}

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
    json_take(rs, db_ok && redis_ok ? 200 : 503,
              json_pack("{s:s, s:s, s:s}", "status", db_ok && redis_ok ? "ready" : "not ready",
                        "database", db_ok ? "ok" : "unreachable", "redis",
                        redis_ok ? "ok" : "unreachable"));
    waf_resp_header(rs, "Cache-Control", "no-store");
}

void waf_h_metrics(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    (void)rq;
    struct waf_app *a = app;
    char *text = waf_metrics_render(&a->metrics);
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

/* Appends s to out as a JSON string body (without quotes); false when it does not fit. */
static bool json_esc(char *out, size_t cap, size_t *len, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        const char *piece = tmp;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tmp[2] = '\0';
        } else if (c < 0x20) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", c);
        } else {
            tmp[0] = (char)c;
            tmp[1] = '\0';
        }
        size_t n = strlen(piece);
        if (*len + n >= cap)
            return false;
        memcpy(out + *len, piece, n);
        *len += n;
    }
    out[*len] = '\0';
    return true;
}

/* Appends the formatted text; false when it does not fit. */
static bool put(char *out, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool put(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len)
        return false;
    *len += (size_t)n;
    return true;
}

/* Client authentication (RFC 6749 §2.3.1): HTTP Basic with form-encoded id and secret, or
 * client_id and client_secret in the body; never both. */
struct client_auth {
    char id[129], secret[257];
    bool basic, present;
    bool malformed; /* an Authorization header that is not valid Basic credentials */
};

static bool parse_basic(const char *h, struct client_auth *ca)
{
    if (strncasecmp(h, "Basic ", 6) != 0)
        return false;
    const char *b = h + 6;
    size_t n = strlen(b);
    if (n == 0 || n > 600)
        return false;
    /* Standard base64 (RFC 7617). */
    uint8_t raw[480];
    int got = EVP_DecodeBlock(raw, (const unsigned char *)b, (int)n);
    if (got < 0)
        return false;
    size_t rl = (size_t)got;
    while (n && b[n - 1] == '=') { /* EVP_DecodeBlock counts padding as output */
        rl--;
        n--;
    }
    const uint8_t *colon = memchr(raw, ':', rl);
    if (colon == NULL)
        return false;
    size_t il, sl;
    if (waf_form_decode((const char *)raw, (size_t)(colon - raw), ca->id, sizeof(ca->id), &il) !=
            WAF_FORM_OK ||
        waf_form_decode((const char *)colon + 1, rl - (size_t)(colon - raw) - 1, ca->secret,
                        sizeof(ca->secret), &sl) != WAF_FORM_OK ||
        il == 0)
        return false;
    ca->basic = ca->present = true;
    return true;
}

static const char *const CC_PARAMS[] = {"grant_type", "scope", "client_id", "client_secret", NULL};
/* Parameters of other grants: a client_credentials request carrying one is malformed. */
static const char *const OTHER_GRANT_PARAMS[] = {
    "code",          "redirect_uri",     "code_verifier",
    "refresh_token", "subject_token",    "subject_token_type",
    "actor_token",   "actor_token_type", "requested_token_type",
    "username",      "password",         NULL};

static bool listed(const char *const *list, const char *name)
{
    for (; *list; list++)
        if (strcmp(*list, name) == 0)
            return true;
    return false;
}

static void client_credentials(struct waf_app *a, const struct waf_client *c,
                               const struct waf_form *f, struct waf_resp *rs)
{
    for (size_t i = 0; i < waf_form_count(f); i++)
        if (listed(OTHER_GRANT_PARAMS, waf_form_name(f, i)) &&
            !listed(CC_PARAMS, waf_form_name(f, i))) {
            char d[200];
            snprintf(d, sizeof(d), "parameter %s does not belong to the client_credentials grant",
                     waf_form_name(f, i));
            oauth_error(rs, 400, "invalid_request", d);
            return;
        }
    if (!(c->grants & WAF_GRANT_CLIENT_CREDENTIALS)) {
        oauth_error(rs, 400, "unauthorized_client",
                    "this client may not use the client_credentials grant");
        return;
    }
    const char *scope = waf_form_get(f, "scope");
    if (scope == NULL)
        scope = c->scopes; /* RFC 6749 §3.3: the client's registered scopes */
    if (!waf_client_scopes_allowed(c, scope)) {
        oauth_error(rs, 400, "invalid_scope", "a requested scope is not allowed for this client");
        return;
    }
    uint8_t rnd[16];
    char jti[32];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        oauth_error(rs, 500, "server_error", "no randomness");
        return;
    }
    waf_b64url_encode(rnd, sizeof(rnd), jti);
    long lifetime = c->lifetime_s ? c->lifetime_s : a->cfg->token_lifetime_s;
    long now = (long)time(NULL);
    char claims[4096];
    size_t n = 0;
    bool ok = put(claims, sizeof(claims), &n, "{\"iss\":\"") &&
              json_esc(claims, sizeof(claims), &n, a->cfg->issuer) &&
              put(claims, sizeof(claims), &n, "\",\"sub\":\"%s\",\"aud\":\"", c->client_id) &&
              json_esc(claims, sizeof(claims), &n, c->audience) &&
              put(claims, sizeof(claims), &n,
                  "\",\"exp\":%ld,\"iat\":%ld,\"nbf\":%ld,\"jti\":\"%s\",\"client_id\":\"%s\","
                  "\"scope\":\"",
                  now + lifetime, now, now, jti, c->client_id) &&
              json_esc(claims, sizeof(claims), &n, scope) && put(claims, sizeof(claims), &n, "\"}");
    char *token = NULL;
    if (!ok || waf_keystore_sign(a->keys, claims, n, &token, NULL) != 0) {
        oauth_error(rs, 500, "server_error", "could not issue the token");
        return;
    }
    size_t cap = strlen(token) + strlen(scope) * 6 + 128, m = 0;
    char *body = malloc(cap);
    ok = body &&
         put(body, cap, &m,
             "{\"access_token\":\"%s\",\"token_type\":\"Bearer\","
             "\"expires_in\":%ld,\"scope\":\"",
             token, lifetime) &&
         json_esc(body, cap, &m, scope) && put(body, cap, &m, "\"}");
    free(token);
    if (!ok) {
        free(body);
        oauth_error(rs, 500, "server_error", "out of memory");
        return;
    }
    waf_resp_take(rs, 200, "application/json", body, m);
    waf_resp_header(rs, "Cache-Control", "no-store");
    waf_resp_header(rs, "Pragma", "no-cache");
}

/* Checks the media type and parses the form body; false after answering. */
static bool read_form(const struct waf_req *rq, struct waf_resp *rs, struct waf_form **f)
{
    const char *ct = waf_req_header(rq, "Content-Type");
    size_t ctl = ct ? strcspn(ct, ";") : 0;
    while (ctl && ct[ctl - 1] == ' ')
        ctl--;
    if (ct == NULL || ctl != strlen("application/x-www-form-urlencoded") ||
        strncasecmp(ct, "application/x-www-form-urlencoded", ctl) != 0) {
        oauth_error(rs, 400, "invalid_request",
                    "the body must be application/x-www-form-urlencoded");
        return false;
    }
    char d[200];
    if (waf_form_parse(rq->body, rq->body_len, f, d, sizeof(d)) != WAF_FORM_OK) {
        oauth_error(rs, 400, "invalid_request", d);
        return false;
    }
    return true;
}

/* Reads the request's Basic credentials once (for the rate limit and authentication). */
static void read_client_auth(const struct waf_req *rq, struct client_auth *ca)
{
    memset(ca, 0, sizeof(*ca));
    const char *authz = waf_req_header(rq, "Authorization");
    if (authz && !parse_basic(authz, ca)) {
        memset(ca, 0, sizeof(*ca));
        ca->malformed = true;
    }
}

/* Authenticates the calling client (RFC 6749 2.3.1: Basic, read into *ca, or the body,
 * never both). On success *out is a referenced client (waf_client_put() it); false after
 * answering. The secret in *ca is wiped either way. */
static bool authenticate(struct waf_app *a, struct client_auth *ca_in, const struct waf_form *f,
                         struct waf_resp *rs, const struct waf_client **out)
{
    struct client_auth ca = *ca_in;
    OPENSSL_cleanse(ca_in->secret, sizeof(ca_in->secret));
    bool ok = false;
    const char *body_id = waf_form_get(f, "client_id");
    const char *body_secret = waf_form_get(f, "client_secret");
    if (ca.malformed) {
        oauth_error(rs, 401, "invalid_client", "malformed Basic client authentication");
        waf_resp_header(rs, "WWW-Authenticate", "Basic realm=\"waf\"");
        goto out;
    }
    if (ca.present && body_secret) {
        oauth_error(rs, 400, "invalid_request",
                    "more than one client authentication method (RFC 6749 2.3)");
        goto out;
    }
    if (ca.present && body_id && strcmp(body_id, ca.id) != 0) {
        oauth_error(rs, 400, "invalid_request", "client_id differs from the authenticated client");
        goto out;
    }
    if (!ca.present && body_id && body_secret) {
        if (strlen(body_id) >= sizeof(ca.id) || strlen(body_secret) >= sizeof(ca.secret)) {
            oauth_error(rs, 401, "invalid_client", "client authentication failed");
            goto out;
        }
        snprintf(ca.id, sizeof(ca.id), "%s", body_id);
        snprintf(ca.secret, sizeof(ca.secret), "%s", body_secret);
        ca.present = true;
    }
    if (!ca.present) {
        oauth_error(rs, 401, "invalid_client", "client authentication is required");
        waf_resp_header(rs, "WWW-Authenticate", "Basic realm=\"waf\"");
        goto out;
    }
    enum waf_client_result cr = waf_clients_authenticate(a->clients, ca.id, ca.secret, out);
    if (cr == WAF_CLIENT_UNAVAILABLE) {
        oauth_error(rs, 503, "temporarily_unavailable", "the client registry is unavailable");
        waf_resp_header(rs, "Retry-After", "5");
    } else if (cr != WAF_CLIENT_OK) {
        oauth_error(rs, 401, "invalid_client", "client authentication failed");
        if (ca.basic)
            waf_resp_header(rs, "WWW-Authenticate", "Basic realm=\"waf\"");
    } else {
        ok = true;
    }
out:
    OPENSSL_cleanse(ca.secret, sizeof(ca.secret));
    return ok;
}

/*
 * Token requests per client and minute (rate.token_per_minute), counted in Redis under
 * the client_id the request claims (Basic or body), authenticated or not, so that secret
 * guessing is limited too; requests naming no client count under the caller's IP. While
 * Redis is unreachable requests are not limited (fail open: issuance goes on, /readyz
 * reports the outage). false after answering 429.
 */
static bool rate_ok(struct waf_app *a, const struct waf_req *rq, const struct client_auth *ca,
                    const struct waf_form *f, struct waf_resp *rs)
{
    const char *id = ca->basic ? ca->id : waf_form_get(f, "client_id");
    char key[400];
    /* Keyed by issuer too: deployments sharing a Redis keep their own limits. */
    snprintf(key, sizeof(key), "waf:rl:%.200s:token:%s:%.128s", a->cfg->issuer,
             id ? "client" : "ip", id ? id : rq->client_ip);
    long retry = 0;
    if (waf_redis_hit(a->redis, key, a->cfg->rate_token_per_min, 60, &retry) != 0)
        return true;
    char ra[24];
    snprintf(ra, sizeof(ra), "%ld", retry > 0 ? retry : 1);
    json_take(rs, 429,
              json_pack("{s:s, s:s}", "error", "slow_down", "error_description",
                        "too many token requests for this client; retry later"));
    waf_resp_header(rs, "Retry-After", ra);
    waf_resp_header(rs, "Cache-Control", "no-store");
    return false;
}

void waf_h_token(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    struct waf_app *a = app;
    struct waf_form *f = NULL;
    if (!read_form(rq, rs, &f))
        return;
    const char *grant = waf_form_get(f, "grant_type");
    const struct waf_client *c = NULL;
    struct client_auth ca;
    read_client_auth(rq, &ca);
    if (rate_ok(a, rq, &ca, f, rs)) {
        if (grant == NULL)
            oauth_error(rs, 400, "invalid_request", "grant_type is required");
        else if (strcmp(grant, "client_credentials") != 0)
            oauth_error(rs, 400, "unsupported_grant_type", "this grant type is not supported");
        else if (authenticate(a, &ca, f, rs, &c))
            client_credentials(a, c, f, rs);
    }
    OPENSSL_cleanse(ca.secret, sizeof(ca.secret));
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
static bool about_token(struct waf_app *a, const struct waf_req *rq, struct waf_resp *rs,
                        struct waf_form **f, const struct waf_client **caller, json_t **claims,
                        int64_t *exp)
{
    if (!read_form(rq, rs, f))
        return false;
    struct client_auth ca;
    read_client_auth(rq, &ca);
    if (!authenticate(a, &ca, *f, rs, caller))
        return false;
    const char *token = waf_form_get(*f, "token");
    if (token == NULL) {
        oauth_error(rs, 400, "invalid_request", "token is required");
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
    if (!about_token(a, rq, rs, &f, &caller, &claims, &exp))
        goto out;
    if (claims == NULL) {
        inactive(rs);
        goto out;
    }
    int rv = is_revoked(a, json_string_value(json_object_get(claims, "jti")));
    if (rv < 0) {
        oauth_error(rs, 503, "temporarily_unavailable", "revocations cannot be checked");
        waf_resp_header(rs, "Retry-After", "5");
        goto out;
    }
    if (rv) {
        inactive(rs);
        goto out;
    }
    json_object_set_new(claims, "active", json_true());
    json_object_set_new(claims, "token_type", json_string("Bearer"));
    json_take(rs, 200, json_incref(claims));
    waf_resp_header(rs, "Cache-Control", "no-store");
out:
    json_decref(claims);
    waf_client_put(a->clients, caller);
    waf_form_free(f);
}

/* RFC 7009: the client that got the token (or an admin client) revokes it; invalid and
 * expired tokens are answered 200 as the RFC asks. The revocation is recorded in
 * revoked_tokens and added, before the answer, to the Redis set the P-CSCFs read. */
void waf_h_revoke(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    struct waf_app *a = app;
    struct waf_form *f = NULL;
    const struct waf_client *caller = NULL;
    json_t *claims = NULL;
    int64_t exp = 0;
    if (!about_token(a, rq, rs, &f, &caller, &claims, &exp))
        goto out;
    if (claims == NULL) {
        waf_resp_static(rs, 200, "application/json", "{}");
        goto out;
    }
    const char *owner = json_string_value(json_object_get(claims, "client_id"));
    if ((owner == NULL || strcmp(owner, caller->client_id) != 0) &&
        !waf_client_scopes_allowed(caller, "admin")) {
        oauth_error(rs, 400, "unauthorized_client", "the token was issued to another client");
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
        oauth_error(rs, 503, "temporarily_unavailable",
                    "the revocation could not be recorded everywhere; try again");
        waf_resp_header(rs, "Retry-After", "1");
        goto out;
    }
    PQclear(res);
    waf_resp_static(rs, 200, "application/json", "{}");
out:
    json_decref(claims);
    waf_client_put(a->clients, caller);
    waf_form_free(f);
}
