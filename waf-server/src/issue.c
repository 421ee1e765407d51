/* Access tokens and token responses (see issue.h). */
#include "issue.h"

#include "wcrypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void waf_json_take(struct waf_resp *rs, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL) {
        waf_resp_static(rs, 500, "text/plain", "out of memory\n");
        return;
    }
    waf_resp_take(rs, status, "application/json", s, strlen(s));
}

void waf_oauth_error(struct waf_resp *rs, int status, const char *error, const char *desc)
{
    waf_json_take(rs, status, json_pack("{s:s, s:s}", "error", error, "error_description", desc));
    waf_resp_header(rs, "Cache-Control", "no-store");
    waf_resp_header(rs, "Pragma", "no-cache");
}

void waf_ims_id_clear(struct waf_ims_id *id)
{
    free(id->impi);
    for (size_t i = 0; i < id->nimpu; i++)
        free(id->impu[i]);
    memset(id, 0, sizeof(*id));
}

/* Appends s to out as a JSON string body (without quotes); false when it does not fit. */
static bool json_esc(char *out, size_t cap, size_t *len, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
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
        size_t n = strlen(tmp);
        if (*len + n >= cap)
            return false;
        memcpy(out + *len, tmp, n);
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

/* "name":"<escaped value>" preceded by a comma. */
static bool member(char *out, size_t cap, size_t *len, const char *name, const char *value)
{
    return put(out, cap, len, ",\"%s\":\"", name) && json_esc(out, cap, len, value) &&
           put(out, cap, len, "\"");
}

bool waf_mint(struct waf_app *a, const struct waf_client *c, const char *sub, const char *scope,
              const struct waf_ims_id *ims, char **token, struct waf_issued *out)
{
    uint8_t in[40], md[32];
    unsigned mdlen = 0;
    uint64_t count = atomic_fetch_add_explicit(&a->jti_counter, 1, memory_order_relaxed);
    memcpy(in, a->jti_seed, 32);
    memcpy(in + 32, &count, 8);
    if (EVP_Digest(in, sizeof(in), md, &mdlen, EVP_sha256(), NULL) != 1)
        return false;
    memset(out, 0, sizeof(*out));
    waf_b64url_encode(md, 16, out->jti);
    OPENSSL_cleanse(in, sizeof(in));
    long lifetime = c->lifetime_s ? c->lifetime_s : a->cfg->token_lifetime_s;
    int64_t now = (int64_t)time(NULL);
    int64_t exp = now + lifetime;
    /* A pooled identity is only ours until its lease ends. */
    if (ims && ims->lease[0] && ims->lease_exp < exp)
        exp = ims->lease_exp > now ? ims->lease_exp : now + 1;
    char claims[WAF_JWS_MAX_TOKEN];
    size_t n = 0;
    bool ok =
        put(claims, sizeof(claims), &n, "{\"iss\":\"") &&
        json_esc(claims, sizeof(claims), &n, a->cfg->issuer) &&
        put(claims, sizeof(claims), &n, "\"") && member(claims, sizeof(claims), &n, "sub", sub) &&
        member(claims, sizeof(claims), &n, "aud", c->audience) &&
        put(claims, sizeof(claims), &n, ",\"exp\":%lld,\"iat\":%lld,\"nbf\":%lld,\"jti\":\"%s\"",
            (long long)exp, (long long)now, (long long)now, out->jti) &&
        member(claims, sizeof(claims), &n, "client_id", c->client_id) &&
        member(claims, sizeof(claims), &n, "scope", scope);
    if (ok && ims) {
        ok = member(claims, sizeof(claims), &n, "impi", ims->impi) &&
             put(claims, sizeof(claims), &n, ",\"impu\":[");
        for (size_t i = 0; ok && i < ims->nimpu; i++)
            ok = put(claims, sizeof(claims), &n, i ? ",\"" : "\"") &&
                 json_esc(claims, sizeof(claims), &n, ims->impu[i]) &&
                 put(claims, sizeof(claims), &n, "\"");
        ok = ok && put(claims, sizeof(claims), &n, "]");
        if (ok && ims->lease[0])
            ok = member(claims, sizeof(claims), &n, "pool_lease", ims->lease);
        if (ok && a->cfg->wwsf_origin)
            ok = member(claims, sizeof(claims), &n, "wwsf", a->cfg->wwsf_origin);
    }
    ok = ok && put(claims, sizeof(claims), &n, "}");
    if (!ok || waf_keystore_sign(a->keys, claims, n, token, NULL) != 0)
        return false;
    out->exp = exp;
    out->expires_in = (long)(exp - now);
    return true;
}

void waf_token_response(struct waf_app *a, char *token, const struct waf_issued *is,
                        const char *scope, const struct waf_ims_id *ims, const char *refresh_token,
                        bool exchange, struct waf_resp *rs)
{
    size_t cap = strlen(token) + strlen(scope) * 6 + 512 +
                 (refresh_token ? strlen(refresh_token) : 0) +
                 (ims ? 6 * (strlen(ims->impi) + strlen(ims->impu[0])) : 0) +
                 (a->cfg->epcscf_wss_url ? 6 * strlen(a->cfg->epcscf_wss_url) : 0);
    size_t m = 0;
    char *body = malloc(cap);
    bool ok =
        body &&
        put(body, cap, &m, "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%ld",
            token, is->expires_in) &&
        member(body, cap, &m, "scope", scope);
    free(token);
    if (ok && exchange)
        ok = member(body, cap, &m, "issued_token_type",
                    "urn:ietf:params:oauth:token-type:access_token");
    if (ok && refresh_token)
        ok = member(body, cap, &m, "refresh_token", refresh_token);
    if (ok && ims) {
        ok =
            member(body, cap, &m, "impi", ims->impi) && member(body, cap, &m, "impu", ims->impu[0]);
        if (ok && ims->lease[0])
            ok = member(body, cap, &m, "pool_lease", ims->lease);
        if (ok && a->cfg->epcscf_wss_url)
            ok = member(body, cap, &m, "epcscf_wss_url", a->cfg->epcscf_wss_url);
    }
    ok = ok && put(body, cap, &m, "}");
    if (!ok) {
        free(body);
        waf_oauth_error(rs, 500, "server_error", "out of memory");
        return;
    }
    waf_resp_take(rs, 200, "application/json", body, m);
    waf_resp_header(rs, "Cache-Control", "no-store");
    waf_resp_header(rs, "Pragma", "no-cache");
}
