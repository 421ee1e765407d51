/*
 * The admin REST API's front: bearer authentication (our own at+jwt with scope admin),
 * the route table, query strings and bodies validated from the tables of admin_valid.c,
 * RFC 9457 problems, and GET /openapi.yaml (see admin.h, docs/openapi.yaml).
 */
#include "admin.h"

#include "form.h"
#include "wcrypto.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* docs/openapi.yaml, embedded at build time (openapi_builtin.c). */
extern const char *const waf_openapi_yaml;

#define REALM          "Bearer realm=\"waf-admin\""
#define CLOCK_LEEWAY_S 60 /* iat/nbf of a token minted by an instance whose clock is ahead */
#define PAGE_DEFAULT   50

/* ---- problems ---- */

static const struct {
    int status;
    const char *type, *title;
} PROBLEMS[] = {
    [AP_INVALID_JSON] = {400, "urn:ims-waf:problem:invalid-json", "Malformed JSON body"},
    [AP_BAD_REQUEST] = {400, "urn:ims-waf:problem:bad-request", "Bad request"},
    [AP_INVALID_TOKEN] = {401, "urn:ims-waf:problem:invalid-token",
                          "Invalid or missing access token"},
    [AP_INSUFFICIENT] = {403, "urn:ims-waf:problem:insufficient-scope", "Insufficient scope"},
    [AP_NOT_FOUND] = {404, "urn:ims-waf:problem:not-found", "No such resource"},
    [AP_NO_ROUTE] = {404, "about:blank", "Not Found"},
    [AP_METHOD] = {405, "about:blank", "Method Not Allowed"},
    [AP_CONFLICT] = {409, "urn:ims-waf:problem:conflict", "Conflict with the current state"},
    [AP_MEDIA_TYPE] = {415, "about:blank", "Unsupported Media Type"},
    [AP_VALIDATION] = {422, "urn:ims-waf:problem:validation", "Invalid request content"},
    [AP_INTERNAL] = {500, "about:blank", "Internal Server Error"},
    [AP_UNAVAILABLE] = {503, "about:blank", "Service Unavailable"},
};

void admin_problem(struct admin_ctx *x, enum admin_problem p, json_t *errors, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    json_t *j =
        json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", PROBLEMS[p].type, "title", PROBLEMS[p].title,
                  "status", PROBLEMS[p].status, "detail", detail, "request_id", x->request_id);
    if (j && errors)
        json_object_set(j, "errors", errors);
    json_decref(errors);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL) {
        waf_resp_static(x->rs, 500, "text/plain", "out of memory\n");
        return;
    }
    waf_resp_take(x->rs, PROBLEMS[p].status, "application/problem+json", s, strlen(s));
}

void admin_invalid(struct admin_ctx *x, const char *field, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *errors = json_array();
    admin_error_add(errors, field, "%s", msg);
    admin_problem(x, AP_VALIDATION, errors, "%s: %s", field, msg);
}

void admin_json(struct admin_ctx *x, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL) {
        admin_problem(x, AP_INTERNAL, NULL, "out of memory");
        return;
    }
    waf_resp_take(x->rs, status, "application/json", s, strlen(s));
}

void admin_no_content(struct admin_ctx *x)
{
    waf_resp_static(x->rs, 204, NULL, "");
}

void admin_location(struct admin_ctx *x, const char *collection, const char *id)
{
    char loc[256];
    snprintf(loc, sizeof(loc), "/admin/v1/%s/%s", collection, id);
    waf_resp_header(x->rs, "Location", loc);
}

/* ---- paging ---- */

long admin_limit(const struct admin_ctx *x)
{
    json_t *l = json_object_get(x->query, "limit");
    return l ? (long)json_integer_value(l) : PAGE_DEFAULT;
}

const char *admin_q_str(const struct admin_ctx *x, const char *name)
{
    return json_string_value(json_object_get(x->query, name));
}

bool admin_cursor_get(struct admin_ctx *x, char *out, size_t len)
{
    out[0] = '\0';
    const char *c = admin_q_str(x, "cursor");
    if (c == NULL)
        return true;
    size_t n = strlen(c), got = 0;
    uint8_t *raw = malloc(n / 4 * 3 + 3);
    bool ok = raw && waf_b64url_decode(c, n, raw, &got) && got > 0 && got < len &&
              memchr(raw, 0, got) == NULL;
    if (ok) {
        memcpy(out, raw, got);
        out[got] = '\0';
    }
    free(raw);
    if (!ok)
        admin_invalid(x, "cursor", "is not a cursor from a previous page");
    return ok;
}

bool admin_cursor_id(struct admin_ctx *x, char *out, size_t len)
{
    if (!admin_cursor_get(x, out, len))
        return false;
    if (out[0] && (strspn(out, "0123456789") != strlen(out) || strlen(out) > 18)) {
        admin_invalid(x, "cursor", "is not a cursor from a previous page");
        return false;
    }
    return true;
}

json_t *admin_page(json_t *rows, long limit)
{
    json_t *page = json_object();
    if (page == NULL || rows == NULL) {
        json_decref(page);
        json_decref(rows);
        return NULL;
    }
    char *enc = NULL;
    if ((long)json_array_size(rows) > limit) {
        json_array_remove(rows, (size_t)limit);
        const char *key =
            json_string_value(json_object_get(json_array_get(rows, (size_t)limit - 1), "_cursor"));
        size_t n = key ? strlen(key) : 0;
        enc = key ? malloc(WAF_B64URL_LEN(n) + 1) : NULL;
        if (enc)
            waf_b64url_encode((const uint8_t *)key, n, enc);
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) json_object_del(row, "_cursor");
    json_object_set_new(page, "items", rows);
    json_object_set_new(page, "next_cursor", enc ? json_string(enc) : json_null());
    free(enc);
    return page;
}

/* ---- routes ---- */

static const char *check_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || s[0] == '0' || s[strspn(s, "0123456789")] != '\0')
        return "must be a positive integer";
    return NULL;
}

static const char *check_client_path(const char *s)
{
    size_t n = strlen(s);
    return n == 0 || n > 128 ? "must hold 1 to 128 characters" : admin_check_client_id(s);
}

static const char *check_pool_path(const char *s)
{
    return strlen(s) > 63 ? "must hold at most 63 characters" : admin_check_pool_name(s);
}

/* POST actions without parameters take no body, or an empty JSON object. */
const struct admin_field admin_empty_fields[] = {{NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL}};

/* method, path, handler, body table, query table, body mode, path parameter check */
const struct admin_route admin_api_routes[] = {
    {"GET", "/admin/v1/identities", admin_identities_list, NULL, admin_identity_query, 0, NULL},
    {"POST", "/admin/v1/identities", admin_identities_create, admin_identity_fields, NULL,
     ADMIN_CREATE, NULL},
    {"GET", "/admin/v1/identities/{id}", admin_identity_get, NULL, NULL, 0, check_id},
    {"PATCH", "/admin/v1/identities/{id}", admin_identity_patch, admin_identity_fields, NULL,
     ADMIN_PATCH, check_id},
    {"DELETE", "/admin/v1/identities/{id}", admin_identity_delete, NULL, NULL, 0, check_id},

    {"GET", "/admin/v1/clients", admin_clients_list, NULL, admin_client_query, 0, NULL},
    {"POST", "/admin/v1/clients", admin_clients_create, admin_client_fields, NULL, ADMIN_CREATE,
     NULL},
    {"GET", "/admin/v1/clients/{client_id}", admin_client_get, NULL, NULL, 0, check_client_path},
    {"PATCH", "/admin/v1/clients/{client_id}", admin_client_patch, admin_client_fields, NULL,
     ADMIN_PATCH, check_client_path},
    {"DELETE", "/admin/v1/clients/{client_id}", admin_client_delete, NULL, NULL, 0,
     check_client_path},
    {"POST", "/admin/v1/clients/{client_id}/secret", admin_client_secret, admin_empty_fields, NULL,
     ADMIN_CREATE, check_client_path},

    {"GET", "/admin/v1/pools", admin_pools_list, NULL, NULL, 0, NULL},
    {"POST", "/admin/v1/pools", admin_pools_create, admin_pool_fields, NULL, ADMIN_CREATE, NULL},
    {"GET", "/admin/v1/pools/{name}", admin_pool_get, NULL, NULL, 0, check_pool_path},
    {"PATCH", "/admin/v1/pools/{name}", admin_pool_patch, admin_pool_fields, NULL, ADMIN_PATCH,
     check_pool_path},
    {"DELETE", "/admin/v1/pools/{name}", admin_pool_delete, NULL, NULL, 0, check_pool_path},
    {"POST", "/admin/v1/pools/{name}/drain", admin_pool_drain, admin_empty_fields, NULL,
     ADMIN_CREATE, check_pool_path},
    {"POST", "/admin/v1/pools/{name}/members", admin_pool_members_add, admin_members_fields, NULL,
     ADMIN_CREATE, check_pool_path},
    {"GET", "/admin/v1/pools/{name}/leases", admin_pool_leases, NULL, admin_leases_query, 0,
     check_pool_path},
    {"POST", "/admin/v1/leases/{id}/release", admin_lease_release, admin_empty_fields, NULL,
     ADMIN_CREATE, admin_check_uuid},

    {"GET", "/admin/v1/keys", admin_keys_list, NULL, NULL, 0, NULL},
    {"POST", "/admin/v1/keys/rotate", admin_keys_rotate, admin_empty_fields, NULL, ADMIN_CREATE,
     NULL},
    {"GET", "/admin/v1/revoked-tokens", admin_revoked_list, NULL, admin_revoked_query, 0, NULL},
    {"GET", "/admin/v1/audit", admin_audit_list, NULL, admin_audit_query, 0, NULL},
    {NULL, NULL, NULL, NULL, NULL, 0, NULL},
};

/* Matches path against the template; the placeholder's value goes to param[len]. */
static bool template_matches(const char *tpl, const char *path, char *param, size_t len)
{
    param[0] = '\0';
    while (*tpl && *path) {
        if (*tpl == '{') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= len)
                return false;
            memcpy(param, path, n);
            param[n] = '\0';
            path += n;
            tpl = strchr(tpl, '}');
            if (tpl == NULL)
                return false;
            tpl++;
            continue;
        }
        if (*tpl++ != *path++)
            return false;
    }
    return *tpl == '\0' && *path == '\0';
}

/* ---- authentication ---- */

static void unauthorized(struct admin_ctx *x, const char *error, const char *desc)
{
    char h[300];
    if (error)
        snprintf(h, sizeof(h), REALM ", error=\"%s\", error_description=\"%s\"", error, desc);
    else
        snprintf(h, sizeof(h), REALM);
    admin_problem(x, AP_INVALID_TOKEN, NULL, "%s", desc);
    waf_resp_header(x->rs, "WWW-Authenticate", h);
}

static bool aud_names(const json_t *aud, const char *issuer)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), issuer) == 0;
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v) if (json_is_string(v) &&
                                      strcmp(json_string_value(v), issuer) == 0) return true;
    return false;
}

/* RFC 6750 2.1: b64token. */
static bool b64token(const char *t)
{
    size_t n = strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/");
    if (n == 0)
        return false;
    return t[n + strspn(t + n, "=")] == '\0';
}

/* Verifies the bearer token; sets x->actor. false after answering 401/403/503. */
static bool authenticate(struct admin_ctx *x)
{
    const char *h = waf_req_header(x->rq, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        unauthorized(x, NULL, "a bearer access token with scope admin is required");
        return false;
    }
    const char *tok = h + 7;
    tok += strspn(tok, " ");
    size_t len = strlen(tok);
    if (len > WAF_JWS_MAX_TOKEN || !b64token(tok)) {
        unauthorized(x, "invalid_token", "the access token is malformed");
        return false;
    }
    char *payload = NULL;
    if (waf_keystore_verify(x->a->keys, tok, len, &payload) != 0) {
        unauthorized(x, "invalid_token", "the access token is not one this server signed");
        return false;
    }
    json_error_t je;
    json_t *cl = json_loads(payload, JSON_REJECT_DUPLICATES, &je);
    free(payload);
    int64_t now = (int64_t)time(NULL);
    const char *iss = json_string_value(json_object_get(cl, "iss"));
    const char *scope = json_string_value(json_object_get(cl, "scope"));
    const char *cid = json_string_value(json_object_get(cl, "client_id"));
    const char *jti = json_string_value(json_object_get(cl, "jti"));
    json_t *exp = json_object_get(cl, "exp"), *nbf = json_object_get(cl, "nbf");
    const char *why = NULL;
    if (!json_is_object(cl) || iss == NULL || strcmp(iss, x->a->cfg->issuer) != 0)
        why = "the access token is of another issuer";
    else if (!json_is_integer(exp) || json_integer_value(exp) <= now)
        why = "the access token has expired";
    else if (nbf && (!json_is_integer(nbf) || json_integer_value(nbf) > now + CLOCK_LEEWAY_S))
        why = "the access token is not valid yet";
    else if (!aud_names(json_object_get(cl, "aud"), x->a->cfg->issuer))
        why = "the access token is for another audience";
    else if (cid == NULL || jti == NULL || strlen(cid) >= sizeof(x->actor))
        why = "the access token lacks client_id or jti";
    if (why) {
        json_decref(cl);
        unauthorized(x, "invalid_token", why);
        return false;
    }
    if (scope == NULL || !waf_scope_has(scope, "admin")) {
        json_decref(cl);
        admin_problem(x, AP_INSUFFICIENT, NULL, "the access token lacks the scope admin");
        waf_resp_header(x->rs, "WWW-Authenticate",
                        REALM ", error=\"insufficient_scope\", scope=\"admin\"");
        return false;
    }
    snprintf(x->actor, sizeof(x->actor), "%s", cid);
    /* Revoked, or its client disabled, deleted or stripped of the admin scope since. */
    const char *params[] = {jti, cid};
    struct admin_dberr e;
    PGconn *c = waf_db_get(x->a->db);
    PGresult *res = c ? admin_exec(c,
                                   "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1), "
                                   " EXISTS (SELECT 1 FROM oauth_clients WHERE client_id = $2 "
                                   "  AND status = 'active'), "
                                   " EXISTS (SELECT 1 FROM oauth_clients WHERE client_id = $2 "
                                   "  AND 'admin' = ANY (scopes))",
                                   2, params, &e)
                      : NULL;
    waf_db_put(x->a->db, c);
    json_decref(cl);
    if (res == NULL) {
        admin_problem(x, AP_UNAVAILABLE, NULL, "the token's revocation cannot be checked");
        waf_resp_header(x->rs, "Retry-After", "5");
        return false;
    }
    bool revoked = PQgetvalue(res, 0, 0)[0] == 't', active = PQgetvalue(res, 0, 1)[0] == 't',
         admin = PQgetvalue(res, 0, 2)[0] == 't';
    PQclear(res);
    if (revoked || !active) {
        unauthorized(x, "invalid_token",
                     revoked ? "the access token has been revoked"
                             : "the access token's client is disabled or gone");
        return false;
    }
    if (!admin) {
        admin_problem(x, AP_INSUFFICIENT, NULL, "the token's client no longer has the scope admin");
        waf_resp_header(x->rs, "WWW-Authenticate",
                        REALM ", error=\"insufficient_scope\", scope=\"admin\"");
        return false;
    }
    return true;
}

/* ---- query strings and bodies ---- */

/* Reads the query string (strict form syntax, form.h) against table into x->query.
 * false after answering 400 or 422. */
static bool read_query(struct admin_ctx *x, const struct admin_field *table)
{
    const char *qs = x->rq->query ? x->rq->query : "";
    struct waf_form *f = NULL;
    char d[200];
    if (waf_form_parse(qs, strlen(qs), &f, d, sizeof(d)) != WAF_FORM_OK) {
        admin_problem(x, AP_BAD_REQUEST, NULL, "query string: %s", d);
        return false;
    }
    json_t *errors = json_array();
    for (size_t i = 0; i < waf_form_count(f); i++) {
        const char *name = waf_form_name(f, i);
        const struct admin_field *fd = admin_field_find(table, name);
        const char *value = waf_form_get(f, name);
        if (fd == NULL)
            admin_error_add(errors, name, "unknown query parameter");
        else if (value) /* an empty value counts as omitted (RFC 6749 3.1) */
            admin_validate_param(fd, value, x->query, errors);
    }
    waf_form_free(f);
    if (json_array_size(errors) == 0) {
        json_decref(errors);
        return true;
    }
    const char *n = json_string_value(json_object_get(json_array_get(errors, 0), "field"));
    const char *m = json_string_value(json_object_get(json_array_get(errors, 0), "message"));
    admin_problem(x, AP_VALIDATION, errors, "query parameter %s: %s", n, m);
    return false;
}

/* The media type of the request, lower case, without parameters, into out; false when the
 * header is absent, unparsable or names a charset other than UTF-8. */
static bool media_type(const struct waf_req *rq, char *out, size_t len)
{
    const char *ct = waf_req_header(rq, "Content-Type");
    if (ct == NULL)
        return false;
    size_t n = strcspn(ct, ";");
    while (n && ct[n - 1] == ' ')
        n--;
    if (n == 0 || n >= len)
        return false;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)((ct[i] >= 'A' && ct[i] <= 'Z') ? ct[i] + 32 : ct[i]);
    out[n] = '\0';
    const char *cs = NULL;
    for (const char *p = ct + n; *p && cs == NULL; p++)
        if (strncasecmp(p, "charset=", 8) == 0)
            cs = p;
    if (cs) {
        cs += 8;
        if (*cs == '"')
            cs++;
        if (strncasecmp(cs, "utf-8", 5) != 0 ||
            (cs[5] && cs[5] != '"' && cs[5] != ';' && cs[5] != ' '))
            return false;
    }
    return true;
}

/* Reads and validates the body of route r into x->body; false after answering. */
static bool read_body(struct admin_ctx *x, const struct admin_route *r)
{
    const struct waf_req *rq = x->rq;
    if (r->body == NULL) {
        if (rq->body_len == 0)
            return true;
        admin_problem(x, AP_BAD_REQUEST, NULL, "%s %s takes no request body", r->method, r->path);
        return false;
    }
    bool patch = r->mode == ADMIN_PATCH;
    if (r->body == admin_empty_fields && rq->body_len == 0)
        return true;
    char mt[64];
    if (!media_type(rq, mt, sizeof(mt)) ||
        (strcmp(mt, "application/json") != 0 &&
         !(patch && strcmp(mt, "application/merge-patch+json") == 0))) {
        admin_problem(x, AP_MEDIA_TYPE, NULL,
                      patch ? "the body must be application/merge-patch+json or application/json"
                            : "the body must be application/json");
        waf_resp_header(x->rs, patch ? "Accept-Patch" : "Accept-Post",
                        patch ? "application/merge-patch+json, application/json"
                              : "application/json");
        return false;
    }
    if (rq->body_len == 0) {
        admin_problem(x, AP_INVALID_JSON, NULL, "the body is empty; a JSON object is expected");
        return false;
    }
    json_error_t je;
    x->body = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
    if (x->body == NULL) {
        admin_problem(x, AP_INVALID_JSON, NULL, "line %d, column %d: %s", je.line, je.column,
                      je.text);
        return false;
    }
    json_t *errors = json_array();
    if (!admin_validate_body(r->body, x->body, r->mode, errors)) {
        const char *f = json_string_value(json_object_get(json_array_get(errors, 0), "field"));
        const char *m = json_string_value(json_object_get(json_array_get(errors, 0), "message"));
        admin_problem(x, AP_VALIDATION, errors, "%s: %s%s", f, m,
                      json_array_size(errors) > 1 ? " (and more: see errors)" : "");
        return false;
    }
    json_decref(errors);
    return true;
}

void waf_h_admin(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    struct admin_ctx x = {.a = app, .rq = rq, .rs = rs};
    const char *given = waf_req_header(rq, "X-Request-Id");
    size_t gl = given ? strlen(given) : 0;
    if (gl > 0 && gl < sizeof(x.request_id) &&
        given[strspn(given, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")] ==
            '\0') {
        memcpy(x.request_id, given, gl + 1);
    } else {
        uint8_t rnd[12];
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            memset(rnd, 0, sizeof(rnd));
        waf_b64url_encode(rnd, sizeof(rnd), x.request_id);
    }
    waf_resp_header(rs, "Cache-Control", "no-store");
    waf_resp_header(rs, "X-Request-Id", x.request_id);
    if (!authenticate(&x))
        return;

    char param[256];
    const struct admin_route *r = NULL;
    char allow[64] = "";
    for (const struct admin_route *t = admin_api_routes; t->method; t++) {
        if (!template_matches(t->path, rq->path, param, sizeof(param)))
            continue;
        if (strcmp(t->method, rq->method) == 0) {
            r = t;
            break;
        }
        size_t n = strlen(allow);
        snprintf(allow + n, sizeof(allow) - n, "%s%s", n ? ", " : "", t->method);
    }
    if (r == NULL) {
        if (allow[0]) {
            admin_problem(&x, AP_METHOD, NULL, "%s is not allowed here; use %s", rq->method, allow);
            waf_resp_header(rs, "Allow", allow);
        } else {
            admin_problem(&x, AP_NO_ROUTE, NULL, "the admin API has no resource at this path");
        }
        return;
    }
    /* Match again for the placeholder of the route found. */
    template_matches(r->path, rq->path, param, sizeof(param));
    if (r->param_check) {
        const char *why = r->param_check(param);
        if (why) {
            admin_problem(&x, AP_NOT_FOUND, NULL, "no such resource: the path parameter %s", why);
            return;
        }
        x.param = param;
    }
    x.query = json_object();
    if (read_query(&x, r->query) && read_body(&x, r))
        r->fn(&x);
    json_decref(x.query);
    json_decref(x.body);
}

void waf_h_openapi(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    (void)app;
    (void)rq;
    waf_resp_static(rs, 200, "application/yaml", waf_openapi_yaml);
    waf_resp_header(rs, "Cache-Control", "public, max-age=300");
}

/* Prints "listener METHOD path" for every route of table; the entries handled by
 * waf_h_admin are replaced by the API's routes they reach. */
void waf_routes_print(FILE *f, const char *listener, const struct waf_route *table)
{
    for (const struct waf_route *t = table; t->method; t++) {
        if (t->fn != waf_h_admin) {
            fprintf(f, "%s %s %s\n", listener, t->method, t->path);
            continue;
        }
        size_t pl = strlen(t->path) - (t->path[strlen(t->path) - 1] == '*');
        for (const struct admin_route *r = admin_api_routes; r->method; r++) {
            if (strcmp(r->method, t->method) != 0 || strncmp(r->path, t->path, pl) != 0)
                continue;
            bool earlier = false; /* reached by an earlier entry already */
            for (const struct waf_route *e = table; e < t && !earlier; e++) {
                size_t el = strlen(e->path) - (e->path[strlen(e->path) - 1] == '*');
                earlier = e->fn == waf_h_admin && strcmp(e->method, r->method) == 0 &&
                          strncmp(r->path, e->path, el) == 0;
            }
            if (!earlier)
                fprintf(f, "%s %s %s\n", listener, r->method, r->path);
        }
    }
}
