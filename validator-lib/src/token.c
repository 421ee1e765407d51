/* Access-token claims (docs/token-profile.md) into an immutable, reference-counted token. */
#include "internal.h"

#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_CLAIM_LEN 1024

/* Claims end up in SIP headers: control characters are never acceptable. */
static bool has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

/* Writes unescaped strings into the token's arena. */
struct arena {
    char *base;
    size_t pos, cap;
};

/* Unescapes a string claim into the arena. Returns MISSING_CLAIM, BAD_CLAIM or OK (*out
 * NULL when optional and absent). */
static enum imsauth_result str_claim(const struct ims_json_object *o, const char *name,
                                     bool required, struct arena *a, const char **out, char *detail,
                                     size_t dlen)
{
    const struct ims_json_value *v = ims_json_get(o, name);
    *out = NULL;
    if (v == NULL) {
        if (!required)
            return IMSAUTH_OK;
        ims_detail(detail, dlen, "claim %s is missing", name);
        return IMSAUTH_ERR_MISSING_CLAIM;
    }
    char *d = a->base + a->pos;
    size_t n = v->type == IMS_JSON_STRING ? ims_json_string(v, d, a->cap - a->pos) : SIZE_MAX;
    if (n == 0 || n > MAX_CLAIM_LEN || has_ctl(d, n)) {
        ims_detail(detail, dlen,
                   "claim %s is not a non-empty string of at most %d bytes without control "
                   "characters",
                   name, MAX_CLAIM_LEN);
        return IMSAUTH_ERR_BAD_CLAIM;
    }
    a->pos += n + 1;
    *out = d;
    return IMSAUTH_OK;
}

static enum imsauth_result time_claim(const struct ims_json_object *o, const char *name,
                                      bool required, int64_t *out, char *detail, size_t dlen)
{
    const struct ims_json_value *v = ims_json_get(o, name);
    if (v == NULL) {
        if (!required)
            return IMSAUTH_OK;
        ims_detail(detail, dlen, "claim %s is missing", name);
        return IMSAUTH_ERR_MISSING_CLAIM;
    }
    double d;
    bool is_int;
    if (!ims_json_number(v, &d, &is_int) || !(d >= 0 && d < 1e15)) {
        ims_detail(detail, dlen, "claim %s is not a NumericDate", name);
        return IMSAUTH_ERR_BAD_CLAIM;
    }
    *out = (int64_t)floor(d);
    return IMSAUTH_OK;
}

static bool scope_has(const char *scope, const char *want)
{
    size_t wl = strlen(want);
    for (const char *p = scope; *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == wl && memcmp(p, want, wl) == 0)
            return true;
        p = e;
    }
    return false;
}

/* A plain sip:, sips: or tel: URI (addr-spec): no name-addr syntax, no whitespace. */
static bool impu_form_ok(const char *s)
{
    if (strncasecmp(s, "sip:", 4) != 0 && strncasecmp(s, "sips:", 5) != 0 &&
        strncasecmp(s, "tel:", 4) != 0)
        return false;
    return strpbrk(s, "<>\" \t") == NULL;
}

static enum imsauth_result check_audience(const struct ims_json_value *aud, const char *want,
                                          char *detail, size_t dlen)
{
    if (aud == NULL) {
        ims_detail(detail, dlen, "claim aud is missing");
        return IMSAUTH_ERR_MISSING_CLAIM;
    }
    struct ims_json_value w = {IMS_JSON_STRING, (const uint8_t *)want, strlen(want)};
    if (aud->type == IMS_JSON_STRING) {
        if (ims_json_str_equal(aud, &w))
            return IMSAUTH_OK;
    } else if (aud->type == IMS_JSON_ARRAY) {
        struct ims_json_iter it;
        struct ims_json_value e;
        bool found = false;
        ims_json_array_iter(aud, &it);
        while (ims_json_array_next(&it, &e)) {
            if (e.type != IMS_JSON_STRING) {
                ims_detail(detail, dlen, "claim aud holds a non-string");
                return IMSAUTH_ERR_BAD_CLAIM;
            }
            found = found || ims_json_str_equal(&e, &w);
        }
        if (found)
            return IMSAUTH_OK;
    } else {
        ims_detail(detail, dlen, "claim aud is neither string nor array");
        return IMSAUTH_ERR_BAD_CLAIM;
    }
    ims_detail(detail, dlen, "aud does not contain our audience");
    return IMSAUTH_ERR_WRONG_AUDIENCE;
}

static const char *json_status_text(enum ims_json_status st)
{
    switch (st) {
    case IMS_JSON_NOT_OBJECT:
        return "payload is not a JSON object";
    case IMS_JSON_DUPLICATE:
        return "payload has a duplicate member name";
    case IMS_JSON_LIMIT:
        return "payload exceeds the JSON depth or size limits";
    default:
        return "payload is not JSON";
    }
}

/* Checks everything after iss/aud/times: the string claims and the IMPUs. */
static enum imsauth_result identity_claims(const struct ims_json_object *o,
                                           const struct ims_claim_policy *pol,
                                           struct imsauth_token *t, struct arena *a, char *detail,
                                           size_t dlen)
{
    enum imsauth_result r;
    if ((r = str_claim(o, "sub", true, a, &t->sub, detail, dlen)) != IMSAUTH_OK ||
        (r = str_claim(o, "jti", true, a, &t->jti, detail, dlen)) != IMSAUTH_OK ||
        (r = str_claim(o, "client_id", true, a, &t->client_id, detail, dlen)) != IMSAUTH_OK)
        return r;
    r = str_claim(o, "scope", true, a, &t->scope, detail, dlen);
    if (r == IMSAUTH_ERR_MISSING_CLAIM || (r == IMSAUTH_OK && !scope_has(t->scope, pol->scope))) {
        ims_detail(detail, dlen, "scope does not include \"%s\"", pol->scope);
        return IMSAUTH_ERR_INSUFFICIENT_SCOPE;
    }
    if (r != IMSAUTH_OK ||
        (r = str_claim(o, "impi", true, a, &t->impi, detail, dlen)) != IMSAUTH_OK ||
        (r = str_claim(o, "pool_lease", false, a, &t->pool_lease, detail, dlen)) != IMSAUTH_OK ||
        (r = str_claim(o, "wwsf", false, a, &t->wwsf, detail, dlen)) != IMSAUTH_OK)
        return r;
    const struct ims_json_value *impu = ims_json_get(o, "impu");
    if (impu == NULL) {
        ims_detail(detail, dlen, "claim impu is missing");
        return IMSAUTH_ERR_MISSING_CLAIM;
    }
    struct ims_json_iter it;
    struct ims_json_value e;
    if (impu->type == IMS_JSON_ARRAY) {
        ims_json_array_iter(impu, &it);
        while (t->n_impu < IMSAUTH_MAX_IMPU && ims_json_array_next(&it, &e)) {
            char *d = a->base + a->pos;
            size_t n =
                e.type == IMS_JSON_STRING ? ims_json_string(&e, d, a->cap - a->pos) : SIZE_MAX;
            if (n > MAX_CLAIM_LEN || has_ctl(d, n) || !impu_form_ok(d)) {
                ims_detail(detail, dlen, "impu[%zu] is not a sip:, sips: or tel: URI", t->n_impu);
                return IMSAUTH_ERR_BAD_CLAIM;
            }
            t->impu[t->n_impu++] = d;
            a->pos += n + 1;
        }
    }
    if (impu->type != IMS_JSON_ARRAY || t->n_impu == 0 || ims_json_array_next(&it, &e)) {
        ims_detail(detail, dlen, "claim impu is not an array of 1..%d URIs", IMSAUTH_MAX_IMPU);
        return IMSAUTH_ERR_BAD_CLAIM;
    }
    return IMSAUTH_OK;
}

enum imsauth_result ims_token_from_claims(const uint8_t *json, size_t len,
                                          const struct ims_claim_policy *pol,
                                          struct imsauth_token **out, char *detail, size_t dlen)
{
    struct ims_json_object o;
    enum ims_json_status st = ims_json_parse_object(json, len, &o);
    if (st != IMS_JSON_OK) {
        ims_detail(detail, dlen, "%s", json_status_text(st));
        return IMSAUTH_ERR_MALFORMED_TOKEN;
    }
    /* One block: the token, the impu pointers, then every string unescaped (never longer
       than its escaped form in the payload) with its NUL. */
    size_t ptrs = IMSAUTH_MAX_IMPU * sizeof(char *), cap = len + IMSAUTH_MAX_IMPU + 16;
    struct imsauth_token *t = malloc(sizeof(*t) + ptrs + cap);
    if (t == NULL)
        return IMSAUTH_ERR_NOMEM;
    memset(t, 0, sizeof(*t));
    atomic_init(&t->refs, 1);
    t->nbf = INT64_MIN;
    t->impu = (const char **)(void *)t->arena;
    struct arena a = {t->arena + ptrs, 0, cap};
    enum imsauth_result r = str_claim(&o, "iss", true, &a, &t->iss, detail, dlen);
    if (r == IMSAUTH_OK) {
        size_t k = 0;
        while (k < pol->n_issuers && strcmp(pol->issuers[k], t->iss) != 0)
            k++;
        if (k == pol->n_issuers) {
            ims_detail(detail, dlen, "issuer not accepted");
            r = IMSAUTH_ERR_WRONG_ISSUER;
        }
    }
    if (r == IMSAUTH_OK)
        r = check_audience(ims_json_get(&o, "aud"), pol->audience, detail, dlen);
    if (r == IMSAUTH_OK && (r = time_claim(&o, "exp", true, &t->exp, detail, dlen)) == IMSAUTH_OK &&
        (r = time_claim(&o, "iat", true, &t->iat, detail, dlen)) == IMSAUTH_OK &&
        (r = time_claim(&o, "nbf", false, &t->nbf, detail, dlen)) == IMSAUTH_OK)
        r = identity_claims(&o, pol, t, &a, detail, dlen);
    if (r != IMSAUTH_OK) {
        free(t);
        return r;
    }
    *out = t;
    return IMSAUTH_OK;
}

/* Reduces a name-addr or addr-spec to the URI view [b, e): drops a display name and <>. */
static void uri_view(const char *s, const char **b, const char **e)
{
    const char *lt = strchr(s, '<');
    if (lt) {
        const char *gt = strchr(lt, '>');
        *b = lt + 1;
        *e = gt ? gt : lt + 1 + strlen(lt + 1);
        return;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    *b = s;
    *e = s + strlen(s);
    while (*e > *b && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
}

bool ims_uri_equal(const char *a, const char *b)
{
    const char *ab, *ae, *bb, *be;
    uri_view(a, &ab, &ae);
    uri_view(b, &bb, &be);
    const char *ac = memchr(ab, ':', (size_t)(ae - ab));
    const char *bc = memchr(bb, ':', (size_t)(be - bb));
    if (!ac || !bc || ac - ab != bc - bb || strncasecmp(ab, bb, (size_t)(ac - ab)) != 0)
        return false;
    bool tel = (ac - ab) == 3 && strncasecmp(ab, "tel", 3) == 0;
    if (tel) {
        /* Parameters do not take part in the identity. */
        size_t an = strcspn(ac, ";?>"), bn = strcspn(bc, ";?>");
        an = an < (size_t)(ae - ac) ? an : (size_t)(ae - ac);
        bn = bn < (size_t)(be - bc) ? bn : (size_t)(be - bc);
        return an == bn && memcmp(ac, bc, an) == 0;
    }
    /* sip/sips: the first '@' ends the userinfo, which may itself hold ';' and '?'
       (RFC 3261 user-unreserved; no unescaped '@' can follow it). The user part is
       compared exactly; host[:port] case-insensitively, up to its parameters. */
    const char *aat = memchr(ac, '@', (size_t)(ae - ac));
    const char *bat = memchr(bc, '@', (size_t)(be - bc));
    if ((aat == NULL) != (bat == NULL))
        return false;
    const char *ah = aat ? aat : ac, *bh = bat ? bat : bc;
    if (ah - ac != bh - bc || memcmp(ac, bc, (size_t)(ah - ac)) != 0)
        return false;
    size_t an = strcspn(ah, ";?>"), bn = strcspn(bh, ";?>");
    an = an < (size_t)(ae - ah) ? an : (size_t)(ae - ah);
    bn = bn < (size_t)(be - bh) ? bn : (size_t)(be - bh);
    return an == bn && strncasecmp(ah, bh, an) == 0;
}

IMSAUTH_API const char *imsauth_token_sub(const struct imsauth_token *t)
{
    return t->sub;
}
IMSAUTH_API const char *imsauth_token_impi(const struct imsauth_token *t)
{
    return t->impi;
}
IMSAUTH_API size_t imsauth_token_impu_count(const struct imsauth_token *t)
{
    return t->n_impu;
}
IMSAUTH_API const char *imsauth_token_impu(const struct imsauth_token *t, size_t i)
{
    return i < t->n_impu ? t->impu[i] : NULL;
}
IMSAUTH_API const char *imsauth_token_client_id(const struct imsauth_token *t)
{
    return t->client_id;
}
IMSAUTH_API const char *imsauth_token_jti(const struct imsauth_token *t)
{
    return t->jti;
}
IMSAUTH_API const char *imsauth_token_scope(const struct imsauth_token *t)
{
    return t->scope;
}
IMSAUTH_API const char *imsauth_token_iss(const struct imsauth_token *t)
{
    return t->iss;
}
IMSAUTH_API const char *imsauth_token_pool_lease(const struct imsauth_token *t)
{
    return t->pool_lease;
}
IMSAUTH_API const char *imsauth_token_wwsf(const struct imsauth_token *t)
{
    return t->wwsf;
}
IMSAUTH_API int64_t imsauth_token_exp(const struct imsauth_token *t)
{
    return t->exp;
}
IMSAUTH_API int64_t imsauth_token_iat(const struct imsauth_token *t)
{
    return t->iat;
}

IMSAUTH_API int imsauth_token_grants(const struct imsauth_token *t, const char *uri)
{
    if (t == NULL || uri == NULL)
        return 0;
    for (size_t i = 0; i < t->n_impu; i++)
        if (ims_uri_equal(t->impu[i], uri))
            return 1;
    return 0;
}

IMSAUTH_API struct imsauth_token *imsauth_token_ref(struct imsauth_token *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

IMSAUTH_API void imsauth_token_release(struct imsauth_token *t)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        free(t);
}
