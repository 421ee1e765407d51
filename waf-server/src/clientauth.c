/* Client authentication (see clientauth.h). */
#include "clientauth.h"

#include "issue.h"
#include "jose.h"
#include "wcrypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ASSERTION_LEEWAY_S 30

struct basic {
    char id[129], secret[257];
    bool present, malformed, header; /* header: from the Authorization header */
};

/* HTTP Basic credentials (RFC 7617, standard base64) with form-encoded id and secret. */
static bool parse_basic(const char *h, struct basic *b)
{
    if (strncasecmp(h, "Basic ", 6) != 0)
        return false;
    const char *s = h + 6;
    size_t n = strlen(s);
    if (n == 0 || n > 600)
        return false;
    uint8_t raw[480];
    int got = EVP_DecodeBlock(raw, (const unsigned char *)s, (int)n);
    if (got < 0)
        return false;
    size_t rl = (size_t)got;
    while (n && s[n - 1] == '=') { /* EVP_DecodeBlock counts padding as output */
        rl--;
        n--;
    }
    const uint8_t *colon = memchr(raw, ':', rl);
    size_t il, sl;
    bool ok = colon != NULL &&
              waf_form_decode((const char *)raw, (size_t)(colon - raw), b->id, sizeof(b->id),
                              &il) == WAF_FORM_OK &&
              waf_form_decode((const char *)colon + 1, rl - (size_t)(colon - raw) - 1, b->secret,
                              sizeof(b->secret), &sl) == WAF_FORM_OK &&
              il > 0;
    OPENSSL_cleanse(raw, sizeof(raw));
    b->present = b->header = ok;
    return ok;
}

static void read_basic(const struct waf_req *rq, struct basic *b)
{
    memset(b, 0, sizeof(*b));
    const char *authz = waf_req_header(rq, "Authorization");
    if (authz && !parse_basic(authz, b)) {
        OPENSSL_cleanse(b, sizeof(*b));
        b->malformed = true;
    }
}

/* The unverified iss of a compact JWS's payload into out; false when there is none. */
static bool assertion_iss(const char *jwt, char out[129])
{
    const char *d1 = strchr(jwt, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (d2 == NULL || (size_t)(d2 - d1 - 1) > 8192)
        return false;
    uint8_t buf[8192 / 4 * 3 + 4];
    size_t n;
    if (!waf_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, &n))
        return false;
    json_t *j = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
    const char *iss = json_string_value(json_object_get(j, "iss"));
    bool ok = iss && strlen(iss) >= 1 && strlen(iss) <= 128;
    if (ok)
        snprintf(out, 129, "%s", iss);
    json_decref(j);
    return ok;
}

bool waf_claimed_client(const struct waf_req *rq, const struct waf_form *f, char out[129])
{
    struct basic b;
    read_basic(rq, &b);
    OPENSSL_cleanse(b.secret, sizeof(b.secret));
    const char *id = b.present ? b.id : waf_form_get(f, "client_id");
    if (id && strlen(id) <= 128) {
        snprintf(out, 129, "%s", id);
        return true;
    }
    const char *as = waf_form_get(f, "client_assertion");
    return as && assertion_iss(as, out);
}

int waf_jti_consume(struct waf_app *a, const char *client_id, const char *jti, int64_t exp)
{
    PGconn *c = waf_db_get(a->db);
    if (c == NULL)
        return -1;
    char expstr[24], state[6], d[256];
    snprintf(expstr, sizeof(expstr), "%lld", (long long)exp);
    const char *params[] = {client_id, jti, expstr};
    PGresult *res = waf_db_exec(c,
                                "INSERT INTO consumed_assertions (client_id, jti, exp) "
                                "VALUES ($1, $2, to_timestamp($3::bigint)) ON CONFLICT DO NOTHING",
                                3, params, state, d, sizeof(d));
    int rc = res ? (strcmp(PQcmdTuples(res), "1") == 0) : -1;
    PQclear(res);
    /* About one call in 64 also drops records of JWTs that have expired anyway. */
    uint8_t r;
    if (rc >= 0 && RAND_bytes(&r, 1) == 1 && r < 4)
        PQclear(waf_db_exec(
            c, "DELETE FROM consumed_assertions WHERE exp < now() - interval '1 minute'", 0, NULL,
            state, d, sizeof(d)));
    waf_db_put(a->db, c);
    return rc;
}

enum waf_client_jwt_result waf_client_jwt(struct waf_app *a, const struct waf_client *c,
                                          const char *jwt, const char *extra_aud,
                                          bool client_assertion, struct waf_jwt_facts *facts,
                                          char *why, size_t why_len)
{
    snprintf(why, why_len, "the client has no registered keys");
    if (c->jwks == NULL)
        return WAF_CLIENT_JWT_REJECTED;
    char *payload = NULL, token_url[1100];
    size_t plen = 0;
    snprintf(token_url, sizeof(token_url), "%s/token", a->cfg->issuer);
    const char *auds[] = {a->cfg->issuer, token_url, extra_aud, NULL};
    struct waf_jwt_expect e = {.iss = c->client_id,
                               .aud = auds,
                               .now = (int64_t)time(NULL),
                               .max_lifetime_s = a->cfg->assertion_max_lifetime_s,
                               .leeway_s = ASSERTION_LEEWAY_S,
                               .sub_must_equal_iss = client_assertion};
    bool ok = waf_jose_verify(c->jwks, jwt, strlen(jwt), NULL, &payload, &plen, why, why_len) ==
                  WAF_JOSE_OK &&
              waf_jwt_check(payload, plen, &e, facts, why, why_len) == WAF_JOSE_OK;
    free(payload);
    if (!ok)
        return WAF_CLIENT_JWT_REJECTED;
    int fresh = waf_jti_consume(a, c->client_id, facts->jti, facts->exp);
    snprintf(why, why_len, "%s",
             fresh ? "the database is unavailable" : "used before (jti replay)");
    return fresh > 0    ? WAF_CLIENT_JWT_OK
           : fresh == 0 ? WAF_CLIENT_JWT_REPLAYED
                        : WAF_CLIENT_JWT_UNAVAILABLE;
}

static void invalid_client(struct waf_resp *rs, const char *desc, bool basic)
{
    waf_oauth_error(rs, 401, "invalid_client", desc);
    if (basic)
        waf_resp_header(rs, "WWW-Authenticate", "Basic realm=\"waf\"");
}

static void unavailable(struct waf_resp *rs)
{
    waf_oauth_error(rs, 503, "temporarily_unavailable", "the client registry is unavailable");
    waf_resp_header(rs, "Retry-After", "5");
}

/* private_key_jwt (RFC 7523 2.2, 3). */
static bool by_assertion(struct waf_app *a, const struct waf_form *f, const char *endpoint_url,
                         struct waf_resp *rs, const struct waf_client **out)
{
    const char *type = waf_form_get(f, "client_assertion_type");
    const char *jwt = waf_form_get(f, "client_assertion");
    const char *body_id = waf_form_get(f, "client_id");
    if (type == NULL || jwt == NULL) {
        waf_oauth_error(rs, 400, "invalid_request",
                        "client_assertion and client_assertion_type go together");
        return false;
    }
    if (strcmp(type, WAF_ASSERTION_TYPE) != 0) {
        invalid_client(rs, "unsupported client_assertion_type", false);
        return false;
    }
    char id[129];
    if (!assertion_iss(jwt, id) || (body_id && strcmp(body_id, id) != 0)) {
        invalid_client(rs, "the client assertion does not name the client", false);
        return false;
    }
    const struct waf_client *c = NULL;
    enum waf_client_result cr = waf_clients_get(a->clients, id, &c);
    if (cr == WAF_CLIENT_UNAVAILABLE) {
        unavailable(rs);
        return false;
    }
    if (cr != WAF_CLIENT_OK || c->jwks == NULL) {
        waf_client_put(a->clients, c);
        invalid_client(rs, "client authentication failed", false);
        return false;
    }
    struct waf_jwt_facts facts;
    char why[200], desc[300];
    enum waf_client_jwt_result r =
        waf_client_jwt(a, c, jwt, endpoint_url, true, &facts, why, sizeof(why));
    if (r != WAF_CLIENT_JWT_OK) {
        waf_client_put(a->clients, c);
        snprintf(desc, sizeof(desc), "client assertion rejected: %s", why);
        if (r == WAF_CLIENT_JWT_UNAVAILABLE)
            unavailable(rs);
        else
            invalid_client(rs, desc, false);
        return false;
    }
    *out = c;
    return true;
}

bool waf_client_authenticate(struct waf_app *a, const struct waf_req *rq, const struct waf_form *f,
                             const char *endpoint_url, bool public_ok, struct waf_resp *rs,
                             const struct waf_client **out)
{
    *out = NULL;
    struct basic b;
    read_basic(rq, &b);
    const char *body_id = waf_form_get(f, "client_id");
    const char *body_secret = waf_form_get(f, "client_secret");
    bool assertion =
        waf_form_get(f, "client_assertion") || waf_form_get(f, "client_assertion_type");
    bool ok = false;
    if (b.malformed) {
        invalid_client(rs, "malformed Basic client authentication", true);
        goto out;
    }
    if ((b.present ? 1 : 0) + (body_secret ? 1 : 0) + (assertion ? 1 : 0) > 1) {
        waf_oauth_error(rs, 400, "invalid_request",
                        "more than one client authentication method (RFC 6749 2.3)");
        goto out;
    }
    if (assertion) {
        ok = by_assertion(a, f, endpoint_url, rs, out);
        goto out;
    }
    if (b.present && body_id && strcmp(body_id, b.id) != 0) {
        waf_oauth_error(rs, 400, "invalid_request",
                        "client_id differs from the authenticated client");
        goto out;
    }
    if (!b.present && body_id && body_secret) {
        if (strlen(body_id) >= sizeof(b.id) || strlen(body_secret) >= sizeof(b.secret)) {
            invalid_client(rs, "client authentication failed", false);
            goto out;
        }
        snprintf(b.id, sizeof(b.id), "%s", body_id);
        snprintf(b.secret, sizeof(b.secret), "%s", body_secret);
        b.present = true;
    }
    if (!b.present) {
        if (public_ok && body_id) {
            /* A public client names itself; PKCE binds the code to it. */
            const struct waf_client *c = NULL;
            enum waf_client_result cr = waf_clients_get(a->clients, body_id, &c);
            if (cr == WAF_CLIENT_UNAVAILABLE) {
                unavailable(rs);
            } else if (cr != WAF_CLIENT_OK || c->confidential) {
                waf_client_put(a->clients, c);
                invalid_client(rs, "client authentication failed", false);
            } else {
                *out = c;
                ok = true;
            }
            goto out;
        }
        invalid_client(rs, "client authentication is required", true);
        goto out;
    }
    enum waf_client_result cr = waf_clients_authenticate(a->clients, b.id, b.secret, out);
    if (cr == WAF_CLIENT_UNAVAILABLE)
        unavailable(rs);
    else if (cr != WAF_CLIENT_OK)
        invalid_client(rs, "client authentication failed", b.header);
    else
        ok = true;
out:
    OPENSSL_cleanse(b.secret, sizeof(b.secret));
    return ok;
}
