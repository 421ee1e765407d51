/*
 * GET|POST /authorize: the authorization code flow (RFC 6749 4.1) with PKCE S256 (RFC 7636)
 * and the WAF's own login page for local web identities (password_credentials).
 *
 * The client and its redirect URI are checked first (exact match with a registered URI);
 * until both are known good, errors are shown on an HTML page and never redirected (no open
 * redirector). Later errors go back to the client as RFC 6749 4.1.2.1 redirects with state
 * and iss (RFC 9207). The login form carries the request's parameters in hidden fields and
 * a CSRF token that must equal a SameSite=Strict cookie set with the page. Logins are rate
 * limited per client IP in Redis (rate.login_per_minute; 429 with Retry-After, failing open
 * without Redis like the token endpoint) and accounts lock after login.max_failures
 * consecutive failures for login.lockout seconds. The page never says whether a username
 * exists: unknown users cost a password check too, and every failure reads the same.
 */
#include "grants.h"
#include "issue.h"
#include "wcrypto.h"

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CSRF_COOKIE "waf_csrf"
#define IMS_SCOPE   "ims"

/* The validated parameters of an authorization request (borrowed from the form). */
struct areq {
    const struct waf_client *client;
    const char *redirect_uri, *state, *scope, *challenge;
};

/* ---- small text builders ---- */

struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void add(struct buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void adds(struct buf *b, const char *s)
{
    add(b, s, strlen(s));
}

/* HTML text and attribute escaping. */
static void add_html(struct buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            adds(b, "&amp;");
            break;
        case '<':
            adds(b, "&lt;");
            break;
        case '>':
            adds(b, "&gt;");
            break;
        case '"':
            adds(b, "&quot;");
            break;
        case '\'':
            adds(b, "&#39;");
            break;
        default:
            add(b, s, 1);
        }
    }
}

/* Percent-encoding of a query component (RFC 3986 unreserved characters kept). */
static void add_pct(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            add(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            add(b, e, 3);
        }
    }
}

/* ---- responses ---- */

/* redirect: the client's redirect URI the form's answer leads to (CSP form-action also
 * covers the redirect after the submission), or NULL. */
static void security_headers(struct waf_resp *rs, const char *redirect)
{
    waf_resp_header(rs, "Cache-Control", "no-store");
    char origin[300] = "";
    const char *host = redirect ? strstr(redirect, "://") : NULL;
    if (host) {
        size_t n = (size_t)(host + 3 - redirect) + strcspn(host + 3, "/?#");
        bool safe = n < sizeof(origin);
        for (size_t i = 0; safe && i < n; i++)
            safe = redirect[i] > ' ' && redirect[i] < 0x7f && redirect[i] != ';' &&
                   redirect[i] != ',' && redirect[i] != '\'' && redirect[i] != '"';
        if (safe)
            snprintf(origin, sizeof(origin), " %.*s", (int)n, redirect);
    }
    char csp[512];
    snprintf(csp, sizeof(csp),
             "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'%s; "
             "frame-ancestors 'none'; base-uri 'none'",
             origin);
    waf_resp_header(rs, "Content-Security-Policy", csp);
    waf_resp_header(rs, "X-Frame-Options", "DENY");
    waf_resp_header(rs, "Referrer-Policy", "no-referrer");
}

static const char PAGE_HEAD[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width\"><title>Sign in</title>"
    "<style>body{font-family:sans-serif;max-width:24em;margin:3em auto}label,input,button"
    "{display:block;width:100%;margin:.3em 0}.error{color:#b00}</style></head><body>";

/* The error page for requests that cannot be sent back to a client. */
static void error_page(struct waf_resp *rs, int status, const char *message)
{
    struct buf b = {0};
    adds(&b, PAGE_HEAD);
    adds(&b, "<h1>Sign-in request refused</h1><p class=\"error\" id=\"error\">");
    add_html(&b, message);
    adds(&b, "</p></body></html>");
    if (b.oom) {
        free(b.p);
        waf_resp_static(rs, 500, "text/plain", "out of memory\n");
        return;
    }
    waf_resp_take(rs, status, "text/html; charset=utf-8", b.p, b.len);
    security_headers(rs, NULL);
}

/* Sends the user back to the client: 303 to redirect_uri with params (name, value pairs,
 * NULL-terminated; NULL values skipped), state and iss appended. */
static void back_to_client(struct waf_app *a, const struct areq *r, struct waf_resp *rs,
                           const char *const *params)
{
    struct buf b = {0};
    adds(&b, r->redirect_uri);
    char sep = strchr(r->redirect_uri, '?') ? '&' : '?';
    for (size_t i = 0; params[i]; i += 2) {
        if (params[i + 1] == NULL)
            continue;
        add(&b, &sep, 1);
        sep = '&';
        adds(&b, params[i]);
        adds(&b, "=");
        add_pct(&b, params[i + 1]);
    }
    if (r->state) {
        add(&b, &sep, 1);
        sep = '&';
        adds(&b, "state=");
        add_pct(&b, r->state);
    }
    add(&b, &sep, 1);
    adds(&b, "iss=");
    add_pct(&b, a->cfg->issuer);
    if (b.oom) {
        free(b.p);
        waf_resp_static(rs, 500, "text/plain", "out of memory\n");
        return;
    }
    waf_resp_static(rs, 303, "text/plain", "");
    waf_resp_header(rs, "Location", b.p);
    waf_resp_header(rs, "Cache-Control", "no-store");
    free(b.p);
}

static void redirect_error(struct waf_app *a, const struct areq *r, struct waf_resp *rs,
                           const char *error, const char *desc)
{
    const char *params[] = {"error", error, "error_description", desc, NULL};
    back_to_client(a, r, rs, params);
}

static void hidden(struct buf *b, const char *name, const char *value)
{
    if (value == NULL)
        return;
    adds(b, "<input type=\"hidden\" name=\"");
    adds(b, name);
    adds(b, "\" value=\"");
    add_html(b, value);
    adds(b, "\">");
}

/* The login form (status 200, or 400/401/429 with message). A new CSRF token each time. */
static void login_page(struct waf_app *a, const struct areq *r, struct waf_resp *rs, int status,
                       const char *message)
{
    uint8_t rnd[32];
    char csrf[WAF_B64URL_LEN(32) + 1];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        waf_resp_static(rs, 500, "text/plain", "no randomness\n");
        return;
    }
    waf_b64url_encode(rnd, sizeof(rnd), csrf);
    struct buf b = {0};
    adds(&b, PAGE_HEAD);
    adds(&b, "<h1>Sign in</h1><p>to call with <b>");
    add_html(&b, r->client->client_id);
    adds(&b, "</b></p>");
    if (message) {
        adds(&b, "<p class=\"error\" id=\"error\">");
        add_html(&b, message);
        adds(&b, "</p>");
    }
    adds(&b, "<form method=\"post\" action=\"/authorize\">");
    hidden(&b, "response_type", "code");
    hidden(&b, "client_id", r->client->client_id);
    hidden(&b, "redirect_uri", r->redirect_uri);
    hidden(&b, "scope", r->scope);
    hidden(&b, "state", r->state);
    hidden(&b, "code_challenge", r->challenge);
    hidden(&b, "code_challenge_method", "S256");
    hidden(&b, "csrf", csrf);
    adds(&b, "<label for=\"username\">Username</label>"
             "<input id=\"username\" name=\"username\" autocomplete=\"username\" required>"
             "<label for=\"password\">Password</label>"
             "<input id=\"password\" name=\"password\" type=\"password\" "
             "autocomplete=\"current-password\" required>"
             "<button id=\"submit\" type=\"submit\">Sign in</button></form></body></html>");
    if (b.oom) {
        free(b.p);
        waf_resp_static(rs, 500, "text/plain", "out of memory\n");
        return;
    }
    waf_resp_take(rs, status, "text/html; charset=utf-8", b.p, b.len);
    security_headers(rs, r->redirect_uri);
    char cookie[200];
    snprintf(cookie, sizeof(cookie),
             CSRF_COOKIE "=%s; Path=/authorize; HttpOnly; SameSite=Strict%s", csrf,
             strncmp(a->cfg->issuer, "https:", 6) == 0 ? "; Secure" : "");
    waf_resp_header(rs, "Set-Cookie", cookie);
}

/* ---- request checks ---- */

static bool b64url43(const char *s)
{
    if (s == NULL || strlen(s) != 43)
        return false;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

/*
 * Checks the request. false after answering (error page or redirect). On success *r is
 * filled and r->client referenced (the caller puts it back).
 */
static bool check_request(struct waf_app *a, const struct waf_form *f, struct areq *r,
                          struct waf_resp *rs)
{
    memset(r, 0, sizeof(*r));
    const char *client_id = waf_form_get(f, "client_id");
    if (client_id == NULL) {
        error_page(rs, 400, "The request names no client (client_id is missing).");
        return false;
    }
    enum waf_client_result cr = waf_clients_get(a->clients, client_id, &r->client);
    if (cr == WAF_CLIENT_UNAVAILABLE) {
        error_page(rs, 503, "The service is unavailable; please try again shortly.");
        waf_resp_header(rs, "Retry-After", "5");
        return false;
    }
    if (cr != WAF_CLIENT_OK || !(r->client->grants & WAF_GRANT_CODE)) {
        waf_client_put(a->clients, r->client);
        r->client = NULL;
        error_page(rs, 400, "The client is unknown or may not use this sign-in.");
        return false;
    }
    const char *uri = waf_form_get(f, "redirect_uri");
    size_t n = 0;
    for (char **u = r->client->redirect_uris; *u; u++, n++)
        if (uri && strcmp(uri, *u) == 0)
            r->redirect_uri = *u;
    if (uri == NULL && n == 1)
        r->redirect_uri = r->client->redirect_uris[0];
    if (r->redirect_uri == NULL) {
        waf_client_put(a->clients, r->client);
        r->client = NULL;
        error_page(rs, 400, "The redirect_uri is not registered for this client.");
        return false;
    }
    /* From here the client is known and errors go back to it. */
    r->state = waf_form_get(f, "state");
    const char *rt = waf_form_get(f, "response_type");
    if (rt == NULL) {
        redirect_error(a, r, rs, "invalid_request", "response_type is required");
        return false;
    }
    if (strcmp(rt, "code") != 0) {
        redirect_error(a, r, rs, "unsupported_response_type",
                       "only response_type=code is supported");
        return false;
    }
    const char *method = waf_form_get(f, "code_challenge_method");
    r->challenge = waf_form_get(f, "code_challenge");
    if (r->challenge == NULL || method == NULL || strcmp(method, "S256") != 0) {
        redirect_error(a, r, rs, "invalid_request",
                       "PKCE with code_challenge_method S256 is required");
        return false;
    }
    if (!b64url43(r->challenge)) {
        redirect_error(a, r, rs, "invalid_request",
                       "code_challenge must be 43 base64url characters (S256)");
        return false;
    }
    r->scope = waf_form_get(f, "scope");
    if (r->scope == NULL)
        r->scope = r->client->scopes;
    if (!waf_client_scopes_allowed(r->client, r->scope) || !waf_scope_has(r->scope, IMS_SCOPE)) {
        redirect_error(a, r, rs, "invalid_scope",
                       "the scope must include ims and only scopes allowed to the client");
        return false;
    }
    return true;
}

/* ---- login ---- */

enum login { LOGIN_OK, LOGIN_FAILED, LOGIN_UNAVAILABLE };

static enum login check_password(struct waf_app *a, const char *user, const char *password,
                                 int64_t *wid)
{
    PGconn *c = waf_db_get(a->db);
    if (c == NULL)
        return LOGIN_UNAVAILABLE;
    const char *params[] = {user};
    char state[6], d[256];
    PGresult *res = waf_db_exec(c,
                                "SELECT p.web_identity_id, p.password_hash, "
                                " coalesce(p.locked_until > now(), false), w.status = 'active' "
                                "FROM password_credentials p "
                                "JOIN web_identities w ON w.id = p.web_identity_id "
                                "WHERE lower(p.username) = lower($1)",
                                1, params, state, d, sizeof(d));
    if (res == NULL) {
        waf_db_put(a->db, c);
        return LOGIN_UNAVAILABLE;
    }
    bool known = PQntuples(res) == 1;
    /* Unknown users cost a password check too, so timing does not tell them apart. */
    bool match = waf_password_verify(password, known ? PQgetvalue(res, 0, 1) : a->dummy_phc, NULL,
                                     0) == WAF_CRYPTO_OK;
    bool locked = known && PQgetvalue(res, 0, 2)[0] == 't';
    bool active = known && PQgetvalue(res, 0, 3)[0] == 't';
    enum login result = LOGIN_FAILED;
    if (known) {
        char ids[24], maxf[24], lock[24];
        snprintf(ids, sizeof(ids), "%s", PQgetvalue(res, 0, 0));
        snprintf(maxf, sizeof(maxf), "%ld", a->cfg->login_max_failures);
        snprintf(lock, sizeof(lock), "%ld", a->cfg->login_lockout_s);
        const char *p3[] = {ids, maxf, lock};
        PGresult *u = NULL;
        if (match && active && !locked) {
            u = waf_db_exec(c,
                            "UPDATE password_credentials SET failed_attempts = 0, "
                            "locked_until = NULL WHERE web_identity_id = $1::bigint",
                            1, p3, state, d, sizeof(d));
            result = u ? LOGIN_OK : LOGIN_UNAVAILABLE;
            *wid = atoll(ids);
        } else if (!locked) { /* a locked account stays as it is until the lock ends */
            /* The n-th consecutive failure locks the account and starts counting again. */
            u = waf_db_exec(c,
                            "UPDATE password_credentials SET "
                            " locked_until = CASE WHEN failed_attempts + 1 >= $2::int "
                            "  THEN now() + make_interval(secs => $3::int) ELSE locked_until END, "
                            " failed_attempts = CASE WHEN failed_attempts + 1 >= $2::int "
                            "  THEN 0 ELSE failed_attempts + 1 END "
                            "WHERE web_identity_id = $1::bigint",
                            3, p3, state, d, sizeof(d));
        }
        PQclear(u);
    }
    PQclear(res);
    waf_db_put(a->db, c);
    return result;
}

/* Stores a new code for the user and sends it to the client. */
static void issue_code(struct waf_app *a, const struct areq *r, int64_t wid, struct waf_resp *rs)
{
    uint8_t raw[32], md[32];
    char code[WAF_B64URL_LEN(32) + 1], hex[70] = "\\x", ids[24], life[24];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        redirect_error(a, r, rs, "server_error", "no randomness");
        return;
    }
    waf_b64url_encode(raw, sizeof(raw), code);
    unsigned mdlen = 0;
    EVP_Digest(code, strlen(code), md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 + 2 * i, 3, "%02x", md[i]);
    snprintf(ids, sizeof(ids), "%lld", (long long)wid);
    snprintf(life, sizeof(life), "%ld", a->cfg->code_lifetime_s);
    const char *params[] = {hex,      r->client->client_id, ids, r->redirect_uri,
                            r->scope, r->challenge,         life};
    PGconn *c = waf_db_get(a->db);
    char state[6], d[256];
    PGresult *res = c ? waf_db_exec(c,
                                    "INSERT INTO authorization_codes (code_hash, client_id, "
                                    " web_identity_id, redirect_uri, scope, code_challenge, "
                                    " expires_at) VALUES ($1::bytea, $2, $3::bigint, $4, $5, $6, "
                                    " now() + make_interval(secs => $7::int))",
                                    7, params, state, d, sizeof(d))
                      : NULL;
    waf_db_put(a->db, c);
    if (res == NULL) {
        redirect_error(a, r, rs, "temporarily_unavailable", "the service is unavailable");
        return;
    }
    PQclear(res);
    const char *out[] = {"code", code, NULL};
    back_to_client(a, r, rs, out);
    OPENSSL_cleanse(code, sizeof(code));
}

/* Login attempts per client IP and minute; false after answering 429. */
static bool login_rate_ok(struct waf_app *a, const struct waf_req *rq, const struct areq *r,
                          struct waf_resp *rs)
{
    char key[400];
    snprintf(key, sizeof(key), "waf:rl:%.200s:login:ip:%.64s", a->cfg->issuer, rq->client_ip);
    long retry = 0;
    if (waf_redis_hit(a->redis, key, a->cfg->rate_login_per_min, 60, &retry) != 0)
        return true;
    login_page(a, r, rs, 429, "Too many sign-in attempts from your address; wait a minute.");
    char ra[24];
    snprintf(ra, sizeof(ra), "%ld", retry > 0 ? retry : 1);
    waf_resp_header(rs, "Retry-After", ra);
    return false;
}

static bool csrf_ok(const struct waf_req *rq, const struct waf_form *f)
{
    const char *cookie = MHD_lookup_connection_value(rq->conn, MHD_COOKIE_KIND, CSRF_COOKIE);
    const char *field = waf_form_get(f, "csrf");
    return cookie && field && strlen(cookie) == strlen(field) &&
           waf_ct_equal(cookie, field, strlen(field));
}

void waf_h_authorize(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    struct waf_app *a = app;
    bool post = strcmp(rq->method, "POST") == 0;
    struct waf_form *f = NULL;
    char d[200];
    if (post) {
        const char *ct = waf_req_header(rq, "Content-Type");
        if (ct == NULL || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
            error_page(rs, 415, "The sign-in form must be sent as a form.");
            return;
        }
    }
    const char *src = post ? rq->body : rq->query;
    size_t len = post ? rq->body_len : strlen(rq->query);
    if (waf_form_parse(src, len, &f, d, sizeof(d)) != WAF_FORM_OK) {
        char msg[260];
        snprintf(msg, sizeof(msg), "Malformed request: %s.", d);
        error_page(rs, 400, msg);
        return;
    }
    struct areq r;
    if (!check_request(a, f, &r, rs))
        goto out;
    if (!post) {
        login_page(a, &r, rs, 200, NULL);
        goto out;
    }
    if (!login_rate_ok(a, rq, &r, rs))
        goto out;
    if (!csrf_ok(rq, f)) {
        login_page(a, &r, rs, 400, "Your sign-in form expired; please try again.");
        goto out;
    }
    const char *user = waf_form_get(f, "username");
    const char *password = waf_form_get(f, "password");
    if (user == NULL || password == NULL || strlen(user) > 128 ||
        strlen(password) > WAF_PASSWORD_MAX) {
        login_page(a, &r, rs, 400, "Enter your username and password.");
        goto out;
    }
    int64_t wid = 0;
    enum login l = check_password(a, user, password, &wid);
    if (l == LOGIN_UNAVAILABLE) {
        login_page(a, &r, rs, 503, "The service is unavailable; please try again shortly.");
        waf_resp_header(rs, "Retry-After", "5");
    } else if (l == LOGIN_FAILED) {
        login_page(a, &r, rs, 401,
                   "Wrong username or password, or the account is locked for a while.");
    } else {
        issue_code(a, &r, wid, rs);
    }
out:
    if (r.client)
        waf_client_put(a->clients, r.client);
    waf_form_free(f);
}
