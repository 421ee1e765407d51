/*
 * Public OAuth endpoints: RFC 8414 metadata, JWKS, and the token endpoint (RFC 6749 §3.2,
 * §5) with client authentication (client_secret_basic, client_secret_post) and the
 * client_credentials grant. Tokens follow docs/token-profile.md (RFC 9068 at+jwt).
 */
#include "app.h"
#include "form.h"
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

void waf_h_token(void *app, const struct waf_req *rq, struct waf_resp *rs)
{
    struct waf_app *a = app;
    const char *ct = waf_req_header(rq, "Content-Type");
    size_t ctl = ct ? strcspn(ct, ";") : 0;
    while (ctl && ct[ctl - 1] == ' ')
        ctl--;
    if (ct == NULL || ctl != strlen("application/x-www-form-urlencoded") ||
        strncasecmp(ct, "application/x-www-form-urlencoded", ctl) != 0) {
        oauth_error(rs, 400, "invalid_request",
                    "the body must be application/x-www-form-urlencoded");
        return;
    }
    struct waf_form *f = NULL;
    char d[200];
    enum waf_form_result fr = waf_form_parse(rq->body, rq->body_len, &f, d, sizeof(d));
    if (fr != WAF_FORM_OK) {
        oauth_error(rs, 400, "invalid_request", d);
        return;
    }
    struct client_auth ca = {0};
    const char *authz = waf_req_header(rq, "Authorization");
    const char *body_id = waf_form_get(f, "client_id");
    const char *body_secret = waf_form_get(f, "client_secret");
    if (authz && !parse_basic(authz, &ca)) {
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
    const char *grant = waf_form_get(f, "grant_type");
    if (grant == NULL) {
        oauth_error(rs, 400, "invalid_request", "grant_type is required");
        goto out;
    }
    if (strcmp(grant, "client_credentials") != 0) {
        oauth_error(rs, 400, "unsupported_grant_type", "this grant type is not supported");
        goto out;
    }
    if (!ca.present) {
        oauth_error(rs, 401, "invalid_client", "client authentication is required");
        waf_resp_header(rs, "WWW-Authenticate", "Basic realm=\"waf\"");
        goto out;
    }
    const struct waf_client *c = NULL;
    enum waf_client_result cr = waf_clients_authenticate(a->clients, ca.id, ca.secret, &c);
    if (cr == WAF_CLIENT_UNAVAILABLE) {
        oauth_error(rs, 503, "temporarily_unavailable", "the client registry is unavailable");
        waf_resp_header(rs, "Retry-After", "5");
        goto out;
    }
    if (cr != WAF_CLIENT_OK) {
        oauth_error(rs, 401, "invalid_client", "client authentication failed");
        if (ca.basic)
            waf_resp_header(rs, "WWW-Authenticate", "Basic realm=\"waf\"");
        goto out;
    }
    client_credentials(a, c, f, rs);
    waf_client_put(a->clients, c);
out:
    OPENSSL_cleanse(ca.secret, sizeof(ca.secret));
    waf_form_free(f);
}
