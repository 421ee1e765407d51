/* Access-token claims (docs/token-profile.md) into an immutable, reference-counted token. */
#include "internal.h"

#include <jansson.h>
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

/* Fetches a string claim. Returns MISSING_CLAIM, BAD_CLAIM or OK (*out may be NULL when
 * optional and absent). */
static enum imsauth_result str_claim(json_t *p, const char *name, bool required, const char **out,
                                     char *detail, size_t dlen)
{
    json_t *v = json_object_get(p, name);
    *out = NULL;
    if (v == NULL) {
        if (!required)
            return IMSAUTH_OK;
        ims_detail(detail, dlen, "claim %s is missing", name);
        return IMSAUTH_ERR_MISSING_CLAIM;
    }
    const char *s = json_string_value(v);
    size_t n = s ? json_string_length(v) : 0;
    if (s == NULL || n == 0 || n > MAX_CLAIM_LEN) {
        ims_detail(detail, dlen, "claim %s is not a non-empty string of at most %d bytes", name,
                   MAX_CLAIM_LEN);
        return IMSAUTH_ERR_BAD_CLAIM;
    }
    if (has_ctl(s, n)) {
        ims_detail(detail, dlen, "claim %s holds a control character", name);
        return IMSAUTH_ERR_BAD_CLAIM;
    }
    *out = s;
    return IMSAUTH_OK;
}

static enum imsauth_result time_claim(json_t *p, const char *name, bool required, int64_t *out,
                                      char *detail, size_t dlen)
{
    json_t *v = json_object_get(p, name);
    if (v == NULL) {
        if (!required)
            return IMSAUTH_OK;
        ims_detail(detail, dlen, "claim %s is missing", name);
        return IMSAUTH_ERR_MISSING_CLAIM;
    }
    double d = json_number_value(v);
    if (!json_is_number(v) || !(d >= 0 && d < 1e15)) {
        ims_detail(detail, dlen, "claim %s is not a NumericDate", name);
        return IMSAUTH_ERR_BAD_CLAIM;
    }
    *out = json_is_integer(v) ? (int64_t)json_integer_value(v) : (int64_t)floor(d);
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

static enum imsauth_result check_audience(json_t *aud, const char *want, char *detail, size_t dlen)
{
    if (aud == NULL) {
        ims_detail(detail, dlen, "claim aud is missing");
        return IMSAUTH_ERR_MISSING_CLAIM;
    }
    if (json_is_string(aud)) {
        if (strcmp(json_string_value(aud), want) == 0)
            return IMSAUTH_OK;
    } else if (json_is_array(aud)) {
        size_t i;
        json_t *a;
        json_array_foreach(aud, i, a)
        {
            if (!json_is_string(a)) {
                ims_detail(detail, dlen, "claim aud holds a non-string");
                return IMSAUTH_ERR_BAD_CLAIM;
            }
            if (strcmp(json_string_value(a), want) == 0)
                return IMSAUTH_OK;
        }
    } else {
        ims_detail(detail, dlen, "claim aud is neither string nor array");
        return IMSAUTH_ERR_BAD_CLAIM;
    }
    ims_detail(detail, dlen, "aud does not contain our audience");
    return IMSAUTH_ERR_WRONG_AUDIENCE;
}

/* Copies s into the arena at *pos; returns the copy (NULL stays NULL). */
static const char *arena_put(char *arena, size_t *pos, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = arena + *pos;
    memcpy(d, s, n);
    *pos += n;
    return d;
}

enum imsauth_result ims_token_from_claims(const void *pv, const struct ims_claim_policy *pol,
                                          struct imsauth_token **out, char *detail, size_t dlen)
{
    json_t *p = (json_t *)(uintptr_t)pv;
    enum imsauth_result r;
    const char *iss, *sub, *impi, *client_id, *jti, *scope, *pool, *wwsf;
    int64_t exp = 0, iat = 0, nbf = INT64_MIN;

    if (!json_is_object(p)) {
        ims_detail(detail, dlen, "payload is not a JSON object");
        return IMSAUTH_ERR_MALFORMED_TOKEN;
    }
    if ((r = str_claim(p, "iss", true, &iss, detail, dlen)) != IMSAUTH_OK)
        return r;
    size_t k = 0;
    while (k < pol->n_issuers && strcmp(pol->issuers[k], iss) != 0)
        k++;
    if (k == pol->n_issuers) {
        ims_detail(detail, dlen, "issuer not accepted");
        return IMSAUTH_ERR_WRONG_ISSUER;
    }
    if ((r = check_audience(json_object_get(p, "aud"), pol->audience, detail, dlen)) != IMSAUTH_OK)
        return r;
    if ((r = time_claim(p, "exp", true, &exp, detail, dlen)) != IMSAUTH_OK ||
        (r = time_claim(p, "iat", true, &iat, detail, dlen)) != IMSAUTH_OK ||
        (r = time_claim(p, "nbf", false, &nbf, detail, dlen)) != IMSAUTH_OK ||
        (r = str_claim(p, "sub", true, &sub, detail, dlen)) != IMSAUTH_OK ||
        (r = str_claim(p, "jti", true, &jti, detail, dlen)) != IMSAUTH_OK ||
        (r = str_claim(p, "client_id", true, &client_id, detail, dlen)) != IMSAUTH_OK)
        return r;
    r = str_claim(p, "scope", true, &scope, detail, dlen);
    if (r == IMSAUTH_ERR_MISSING_CLAIM || (r == IMSAUTH_OK && !scope_has(scope, pol->scope))) {
        ims_detail(detail, dlen, "scope does not include \"%s\"", pol->scope);
        return IMSAUTH_ERR_INSUFFICIENT_SCOPE;
    }
    if (r != IMSAUTH_OK)
        return r;
    if ((r = str_claim(p, "impi", true, &impi, detail, dlen)) != IMSAUTH_OK ||
        (r = str_claim(p, "pool_lease", false, &pool, detail, dlen)) != IMSAUTH_OK ||
        (r = str_claim(p, "wwsf", false, &wwsf, detail, dlen)) != IMSAUTH_OK)
        return r;
    json_t *impu = json_object_get(p, "impu");
    if (impu == NULL) {
        ims_detail(detail, dlen, "claim impu is missing");
        return IMSAUTH_ERR_MISSING_CLAIM;
    }
    size_t n_impu = json_array_size(impu);
    if (!json_is_array(impu) || n_impu == 0 || n_impu > IMSAUTH_MAX_IMPU) {
        ims_detail(detail, dlen, "claim impu is not an array of 1..%d URIs", IMSAUTH_MAX_IMPU);
        return IMSAUTH_ERR_BAD_CLAIM;
    }
    size_t strings = 0;
    const char *fixed[] = {iss, sub, impi, client_id, jti, scope, pool, wwsf};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        strings += fixed[i] ? strlen(fixed[i]) + 1 : 0;
    for (size_t i = 0; i < n_impu; i++) {
        json_t *u = json_array_get(impu, i);
        const char *s = json_string_value(u);
        if (s == NULL || json_string_length(u) > MAX_CLAIM_LEN || !impu_form_ok(s) ||
            has_ctl(s, strlen(s))) {
            ims_detail(detail, dlen, "impu[%zu] is not a sip:, sips: or tel: URI", i);
            return IMSAUTH_ERR_BAD_CLAIM;
        }
        strings += strlen(s) + 1;
    }

    size_t ptrs = n_impu * sizeof(char *);
    struct imsauth_token *t = malloc(sizeof(*t) + ptrs + strings);
    if (t == NULL)
        return IMSAUTH_ERR_NOMEM;
    atomic_init(&t->refs, 1);
    t->exp = exp;
    t->iat = iat;
    t->nbf = nbf;
    t->generation = 0;
    t->impu = (const char **)(void *)t->arena;
    t->n_impu = n_impu;
    char *a = t->arena;
    size_t pos = ptrs;
    t->iss = arena_put(a, &pos, iss);
    t->sub = arena_put(a, &pos, sub);
    t->impi = arena_put(a, &pos, impi);
    t->client_id = arena_put(a, &pos, client_id);
    t->jti = arena_put(a, &pos, jti);
    t->scope = arena_put(a, &pos, scope);
    t->pool_lease = arena_put(a, &pos, pool);
    t->wwsf = arena_put(a, &pos, wwsf);
    for (size_t i = 0; i < n_impu; i++)
        t->impu[i] = arena_put(a, &pos, json_string_value(json_array_get(impu, i)));
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
    /* Parameters and headers do not take part in the identity. */
    const char *aend = ac + strcspn(ac, ";?>"), *bend = bc + strcspn(bc, ";?>");
    if (aend > ae)
        aend = ae;
    if (bend > be)
        bend = be;
    if (tel)
        return aend - ac == bend - bc && memcmp(ac, bc, (size_t)(aend - ac)) == 0;
    /* sip/sips: user part exact, host[:port] case-insensitive. */
    const char *aat = memchr(ac, '@', (size_t)(aend - ac));
    const char *bat = memchr(bc, '@', (size_t)(bend - bc));
    if ((aat == NULL) != (bat == NULL))
        return false;
    const char *ah = aat ? aat : ac, *bh = bat ? bat : bc;
    if (ah - ac != bh - bc || memcmp(ac, bc, (size_t)(ah - ac)) != 0)
        return false;
    return aend - ah == bend - bh && strncasecmp(ah, bh, (size_t)(aend - ah)) == 0;
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
